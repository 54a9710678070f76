"""Ego4D narration.json -> streaming narration dialogues, pinned on a hand-written file."""

from __future__ import annotations

import json

from streamvlm.data.convert.narration import (
    ACKNOWLEDGEMENT,
    NarrationOptions,
    clean_narration,
    convert_narration,
    load_refined,
)
from streamvlm.data.convert.templates import NARRATION_INSTRUCTIONS
from streamvlm.data.formats import read_narration

NARRATION_JSON = {
    "vid_a": {
        "narration_pass_1": {"narrations": [
            {"timestamp_sec": 3.1, "timestamp_frame": 93, "narration_text": "#O man X opens the door.",
             "annotation_uid": "a3"},
            {"timestamp_sec": 1.2, "timestamp_frame": 36, "narration_text": "#C C picks up the knife",
             "annotation_uid": "a1"},
            {"timestamp_sec": 1.4, "timestamp_frame": 42, "narration_text": "#C C picks up the knife",
             "annotation_uid": "a2"},
            {"timestamp_sec": 1.3, "timestamp_frame": 39, "narration_text": "#C C looks at the board",
             "annotation_uid": "a4"},
            {"timestamp_sec": 4.0, "timestamp_frame": 120, "narration_text": "#unsure", "annotation_uid": "a5"},
            {"timestamp_sec": 301.0, "timestamp_frame": 9030, "narration_text": "#C C cuts the onion",
             "annotation_uid": "a6"},
        ], "summaries": [{"start_sec": 0.0, "end_sec": 300.0, "summary_text": "C cooks"}]},
        "narration_pass_2": {"narrations": [
            {"timestamp_sec": 0.0, "timestamp_frame": 0, "narration_text": "#c c walks #Unsure",
             "annotation_uid": "a7"},
        ]},
    },
    "vid_b": {"narration_pass_1": {"narrations": [
        {"timestamp_sec": 2.0, "timestamp_frame": 60, "narration_text": "#C C stands", "annotation_uid": "b1"},
        {"timestamp_sec": 5.25, "timestamp_frame": 157, "narration_text": "#C C sits", "annotation_uid": "b2"},
    ]}},
}
SYS = "SYS"
INSTR = "Please concisely narrate the video in real time."


def convert(tmp_path, **kwargs):
    path = tmp_path / "narration.json"
    path.write_text(json.dumps(NARRATION_JSON))
    options = NarrationOptions(system_prompt=SYS, instruction=INSTR, **kwargs)
    return [r.to_dict() for r in convert_narration(read_narration(path), options)]


def test_clean_narration_tags():
    assert clean_narration("#C C picks up the knife") == "C picks up the knife."
    assert clean_narration("#O man X opens the door.") == "Man X opens the door."
    assert clean_narration("#c c walks #Unsure") == "C walks."
    assert clean_narration("#unsure") is None
    assert clean_narration("  #C   C  waits ,") == "C waits."


def test_narration_dialogues_golden(tmp_path):
    records = convert(tmp_path)
    assert [r["id"] for r in records] == [
        "vid_a/narration_pass_1/0", "vid_a/narration_pass_1/1", "vid_a/narration_pass_2/0", "vid_b/narration_pass_1/0"]
    # 1.2 s and 1.3 s and 1.4 s all land on frame 3 (1.5 s at 2 fps): the repeated text is kept once,
    # the other text joined; 3.1 s -> frame 7 (3.5 s); "#unsure" alone is dropped; 301 s is the next window.
    assert records[0] == {
        "version": 1, "id": "vid_a/narration_pass_1/0", "video": "vid_a.mp4", "fps": 2.0, "start": 1.5,
        "conversation": [
            {"role": "system", "content": SYS},
            {"role": "stream", "num_frames": 1, "time": 1.5},
            {"role": "user", "content": INSTR, "time": 1.5},
            {"role": "assistant", "content": "C picks up the knife. C looks at the board.", "time": 1.5, "learn": True},
            {"role": "stream", "num_frames": 4, "time": 2.0, "learn": True},
            {"role": "assistant", "content": "Man X opens the door.", "time": 3.5, "learn": True},
        ],
        "meta": {"source": "ego4d_narration", "video_uid": "vid_a", "pass": "narration_pass_1", "window": [0.0, 300.0]},
    }
    assert records[1]["start"] == 301.0 and records[1]["conversation"][1:] == [
        {"role": "stream", "num_frames": 1, "time": 301.0},
        {"role": "user", "content": INSTR, "time": 301.0},
        {"role": "assistant", "content": "C cuts the onion.", "time": 301.0, "learn": True},
    ]
    assert records[2]["conversation"][3]["content"] == "C walks."
    # 5.25 s -> frame 11 (ceil of 10.5): the reply comes at the first frame at or after the narration.
    assert records[3]["conversation"][1:] == [
        {"role": "stream", "num_frames": 1, "time": 2.0},
        {"role": "user", "content": INSTR, "time": 2.0},
        {"role": "assistant", "content": "C stands.", "time": 2.0, "learn": True},
        {"role": "stream", "num_frames": 7, "time": 2.5, "learn": True},
        {"role": "assistant", "content": "C sits.", "time": 5.5, "learn": True},
    ]


def test_fps_changes_frame_placement(tmp_path):
    record = convert(tmp_path, fps=4.0)[3]
    assert record["start"] == 2.0
    assert record["conversation"][4] == {"role": "stream", "num_frames": 13, "time": 2.25, "learn": True}
    assert record["conversation"][5]["time"] == 5.25


def test_refined_texts_replace_raw_ones(tmp_path):
    refined_file = tmp_path / "refined.json"
    refined_file.write_text(json.dumps({"b1": "You stand up.", "b2": " You  sit down. "}))
    refined = load_refined(refined_file)
    path = tmp_path / "narration.json"
    path.write_text(json.dumps(NARRATION_JSON))
    record = list(convert_narration(read_narration(path), NarrationOptions(system_prompt=SYS), refined))[-1]
    assert [t["content"] for t in record.to_dict()["conversation"] if t["role"] == "assistant"] == [
        "You stand up.", "You sit down."]


def test_seeded_instruction_from_the_library(tmp_path):
    path = tmp_path / "narration.json"
    path.write_text(json.dumps(NARRATION_JSON))
    videos = read_narration(path)
    first = [r.conversation[2].content for r in convert_narration(videos, NarrationOptions(seed=1))]
    again = [r.conversation[2].content for r in convert_narration(videos, NarrationOptions(seed=1))]
    assert first == again and set(first) <= set(NARRATION_INSTRUCTIONS)
    others = [[r.conversation[2].content for r in convert_narration(videos, NarrationOptions(seed=s))]
              for s in range(2, 6)]
    assert any(o != first for o in others)


def test_idle_start_asks_at_the_window_start_and_learns_the_silence_before_the_first_narration(tmp_path):
    records = convert(tmp_path, idle_start=1.0)
    # vid_b's first narration is at 2.0 s (frame 4): asked at frame 0, acknowledged, then 4 silent
    # frames learned up to the narration's frame.
    assert records[3]["start"] == 0.0 and records[3]["conversation"][1:] == [
        {"role": "stream", "num_frames": 1, "time": 0.0},
        {"role": "user", "content": INSTR, "time": 0.0},
        {"role": "assistant", "content": ACKNOWLEDGEMENT, "time": 0.0, "learn": True},
        {"role": "stream", "num_frames": 4, "time": 0.5, "learn": True},
        {"role": "assistant", "content": "C stands.", "time": 2.0, "learn": True},
        {"role": "stream", "num_frames": 7, "time": 2.5, "learn": True},
        {"role": "assistant", "content": "C sits.", "time": 5.5, "learn": True},
    ]
    # the second window of vid_a starts at 300 s and its narration is at 301 s: asked at 300 s
    assert records[1]["start"] == 300.0 and records[1]["conversation"][2]["time"] == 300.0
    # a narration on the window's first frame leaves nothing to wait for: asked there, as before
    assert records[2]["conversation"][1:4] == [
        {"role": "stream", "num_frames": 1, "time": 0.0},
        {"role": "user", "content": INSTR, "time": 0.0},
        {"role": "assistant", "content": "C walks.", "time": 0.0, "learn": True},
    ]


def test_idle_start_share_is_seeded_and_leaves_the_rest_unchanged(tmp_path):
    path = tmp_path / "narration.json"
    notes = {f"v{i}": {"narration_pass_1": {"narrations": [
        {"timestamp_sec": 5.0, "timestamp_frame": 150, "narration_text": "#C C sits", "annotation_uid": f"u{i}"}]}}
        for i in range(40)}
    path.write_text(json.dumps(notes))
    videos = read_narration(path)
    plain = [r.to_dict() for r in convert_narration(videos, NarrationOptions(seed=3))]
    half = [r.to_dict() for r in convert_narration(videos, NarrationOptions(seed=3, idle_start=0.5))]
    assert half == [r.to_dict() for r in convert_narration(videos, NarrationOptions(seed=3, idle_start=0.5))]
    asked_early = [h["start"] == 0.0 for h in half]
    assert 10 <= sum(asked_early) <= 30
    assert all(h == p for h, p, early in zip(half, plain, asked_early) if not early)
    assert all(h["conversation"][2]["content"] == p["conversation"][2]["content"]  # the same instruction
               for h, p in zip(half, plain))
