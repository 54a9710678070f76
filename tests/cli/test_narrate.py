"""``streamvlm narrate`` on good input: printed events, the events file, queries, real-time pacing."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .conftest import Result

SUMMARY = re.compile(r"^(\d+) frames in [\d.]+s \([\d.]+ frames/s\); dropped (\d+), damaged frames skipped (\d+)$")
EVENT_LINE = re.compile(r"^\((\d+\.\d)s\) (User|Assistant): ")


def summary(result: Result) -> tuple[int, int, int]:
    """(frames, dropped, damaged) from the last stdout line."""
    match = SUMMARY.match(result.lines[-1])
    assert match, result.lines[-1]
    return int(match[1]), int(match[2]), int(match[3])


def check_events(result: Result, events_file: Path) -> list[dict]:
    """Every printed event has its JSON line with exactly the documented keys; times never go back."""
    events = [json.loads(line) for line in events_file.read_text(encoding="utf-8").splitlines()]
    assert events
    for event in events:
        assert set(event) == {"time", "role", "text"}
        assert isinstance(event["time"], float) and event["role"] in ("user", "assistant")
        assert isinstance(event["text"], str)
    times = [e["time"] for e in events]
    assert times == sorted(times)
    printed = [m for m in map(EVENT_LINE.match, result.lines) if m]
    assert [(float(m[1]), m[2].lower()) for m in printed] == [(round(e["time"], 1), e["role"]) for e in events]
    return events


def test_narrate_synthetic_clip_with_query_and_output(cli, tiny_checkpoint, short_clip, tmp_path):
    out = tmp_path / "events.jsonl"
    result = cli("narrate", short_clip, "--model", tiny_checkpoint, "--query", "2.2:What am I doing?",
                 "--output", out, "--max-new-tokens", "1")
    assert result.code == 0, result.err
    events = check_events(result, out)
    users = [e for e in events if e["role"] == "user"]
    assert users == [{"time": 0.0, "role": "user", "text": "Please concisely narrate the video in real time."},
                     {"time": 2.2, "role": "user", "text": "What am I doing?"}]  # the narration instruction first
    assert result.lines.count("(2.2s) User: What am I doing?") == 1  # printed once, from the engine's event
    answer = events[events.index(users[1]) + 1]
    assert answer["role"] == "assistant" and answer["time"] == 2.2
    assert summary(result) == (12, 0, 0)  # 6 s at the model's 2 frames/s
    assert "frames/s" in result.err  # the progress bar


def test_narrate_real_video(cli, tiny_checkpoint, shared_videos, tmp_path):
    out = tmp_path / "office.jsonl"
    result = cli("narrate", shared_videos / "mmduet_office.mp4", "--model", tiny_checkpoint,
                 "--query", "4:What is here?", "--query", "9.5:And now?", "--output", out, "--max-new-tokens", "1",
                 "--no-progress", "--instruction", "")
    assert result.code == 0, result.err
    events = check_events(result, out)
    assert [(e["time"], e["text"]) for e in events if e["role"] == "user"] == \
        [(4.0, "What is here?"), (9.5, "And now?")]
    frames, dropped, damaged = summary(result)
    assert frames == 30 and dropped == 0 and damaged == 0  # 15 s at 2 frames/s
    assert result.err == ""


def test_query_after_the_end_is_reported_not_asked(cli, tiny_checkpoint, short_clip):
    result = cli("narrate", short_clip, "--model", tiny_checkpoint, "--query", "100:Still there?",
                 "--max-new-tokens", "1", "--no-progress", "--instruction", "")
    assert result.code == 0
    assert "User:" not in result.out
    assert "query at 100.0s came after the last frame; not asked: Still there?" in result.err


def test_realtime_paces_and_drops_nothing_when_the_model_keeps_up(cli, tiny_checkpoint, tmp_path):
    from streamvlm.data.synth import generate_world

    world = generate_world(tmp_path / "w", 1, 4, duration=4.0, size=64, split="test", workers=1, progress=False)
    result = cli("narrate", world.video_path(world.videos[0].uid), "--model", tiny_checkpoint, "--realtime",
                 "--fps", "2", "--max-new-tokens", "1", "--no-progress")
    assert result.code == 0, result.err
    assert summary(result) == (8, 0, 0)
    wall = float(re.search(r"frames in ([\d.]+)s", result.lines[-1])[1])
    assert wall >= 3.4  # paced by the wall clock: the frame at 3.5 s is not emitted before its time


def test_damaged_frames_are_skipped_and_counted(cli, tiny_checkpoint, shared_videos):
    result = cli("narrate", shared_videos / "Megamind_bugy.avi", "--model", tiny_checkpoint, "--max-new-tokens", "1",
                 "--no-progress")
    assert result.code == 0, result.err
    frames, dropped, damaged = summary(result)
    assert frames > 0 and dropped == 0 and damaged > 0


def _camera_clip(path: Path) -> Path:
    """A 2-second 64-pixel h264 video that no synthetic world wrote (no tag in its container)."""
    from ..helpers import write_textured_video

    return write_textured_video(path, 64, 64, frames=8, fps=4)


def test_embedded_model_says_once_what_it_knows_on_footage_it_does_not_know(cli, short_clip, tmp_path):
    from streamvlm.data.synth.marker import EMBEDDED_MODEL_NOTE

    note = f"streamvlm: {EMBEDDED_MODEL_NOTE}"
    other = _camera_clip(tmp_path / "camera.mp4")
    for argv in (("narrate", other), ("demo", "--video", other)):
        result = cli(*argv, "--no-progress", "--max-new-tokens", "2")
        assert result.code == 0, result.err
        assert result.err.splitlines().count(note) == 1 and note not in result.out, argv
    result = cli("narrate", short_clip, "--no-progress", "--max-new-tokens", "2")  # the world's own video
    assert result.code == 0 and EMBEDDED_MODEL_NOTE not in result.err + result.out


def test_a_model_of_ones_own_gets_no_note(cli, tiny_checkpoint, tmp_path):
    from streamvlm.data.synth.marker import EMBEDDED_MODEL_NOTE

    result = cli("narrate", _camera_clip(tmp_path / "camera.mp4"), "--model", tiny_checkpoint, "--no-progress",
                 "--max-new-tokens", "1")
    assert result.code == 0 and EMBEDDED_MODEL_NOTE not in result.err + result.out
