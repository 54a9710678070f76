"""COIN benchmark and Ego4D LTA samples, pinned on hand-written annotation files."""

from __future__ import annotations

import json

from streamvlm.data.augment import CORRECTION_PREFIX, AugmentOptions, insert_wrong_reply
from streamvlm.data.convert import benchmarks as bm
from streamvlm.data.formats import read_coin, read_lta
from streamvlm.data.jsonl import ConversationRecord
from streamvlm.model.conversation import Turn, validate_turns

COIN_JSON = {"database": {"yt": {
    "duration": 30.0, "class": "MakeTea", "subset": "testing", "recipe_type": 7, "start": 1.0, "end": 9.0,
    "annotation": [{"id": "1", "segment": [1.0, 2.0], "label": "boil water"},
                   {"id": "2", "segment": [2.2, 4.0], "label": "pour water"},
                   {"id": "3", "segment": [5.0, 6.0], "label": "add tea bag"}]}}}
CONCISE = "Format your answer concisely. No extra text output."
LIST = "Format your answer concisely, listing each action on a new line with a number prefix. No extra text output."


def test_coin_samples_golden(tmp_path):
    path = tmp_path / "COIN.json"
    path.write_text(json.dumps(COIN_JSON))
    videos = read_coin(path)
    labels = bm.coin_label_spaces(videos)
    assert labels == {"coin_steps": ["Add tea bag.", "Boil water.", "Pour water."], "coin_tasks": ["Make tea."]}
    records = {r.id: r.to_dict()
               for r in bm.coin_benchmarks(videos, labels, options=bm.BenchmarkOptions(system_prompt="S"))}
    assert sorted(records) == sorted(["yt/coin_task", "yt/coin_step/0", "yt/coin_step/1", "yt/coin_step/2",
                                      "yt/coin_next/0", "yt/coin_next/1", "yt/coin_procedure/0", "yt/coin_procedure/1",
                                      "yt/coin_procedure_goal/0", "yt/coin_procedure_goal/1"])
    assert records["yt/coin_procedure_goal/0"] == {
        "version": 1, "id": "yt/coin_procedure_goal/0", "video": "yt.mp4", "fps": 2.0, "start": 1.0,
        "conversation": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": f"To make tea, what are the next 2 actions for the video? {LIST}", "time": 1.0},
            {"role": "stream", "num_frames": 3, "time": 1.0, "learn": True},
            {"role": "assistant", "content": "1. Pour water.\n2. Add tea bag.", "time": 2.0, "learn": True},
        ],
        "meta": {"source": "coin", "video_uid": "yt", "subset": "testing", "benchmark": "coin_procedure_goal",
                 "label_space": "coin_steps", "labels": [2, 0], "answer": "1. Pour water.\n2. Add tea bag."},
    }
    step = records["yt/coin_step/1"]
    assert step["start"] == 2.5 and step["conversation"][2]["num_frames"] == 4  # frames 5..8 = 2.5 s .. 4.0 s
    assert step["meta"]["labels"] == [2] and step["conversation"][3]["content"] == "Pour water."
    assert records["yt/coin_task"]["conversation"][2]["num_frames"] == 17
    assert records["yt/coin_task"]["meta"]["labels"] == [0]
    assert records["yt/coin_procedure/1"]["conversation"][1]["content"] == \
        f"What is the next action for the video? {CONCISE}"


def test_lta_samples_golden(tmp_path):
    clips = [{"clip_uid": "c", "video_uid": "v", "action_idx": i,
              "verb": "put_(place,_leave,_drop)" if i % 2 else "take",
              "noun": "nut_(food)", "verb_label": i % 2, "noun_label": 5, "action_clip_start_sec": float(i),
              "action_clip_end_sec": i + 0.5, "clip_parent_start_sec": 10.0} for i in reversed(range(5))]
    path = tmp_path / "fho_lta_val.json"
    path.write_text(json.dumps({"clips": clips}))
    options = bm.BenchmarkOptions(system_prompt="S", lta_observed=2, lta_future=2)
    records = [r.to_dict() for r in bm.lta_samples(read_lta(path), options)]
    assert [r["id"] for r in records] == ["c/lta/1", "c/lta/2"]
    assert records[0] == {
        "version": 1, "id": "c/lta/1", "video": "v.mp4", "fps": 2.0, "start": 10.0,
        "conversation": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": f"After 4 video frames, anticipate the next 2 actions. {LIST}", "time": 10.0},
            {"role": "stream", "num_frames": 4, "time": 10.0, "learn": True},
            {"role": "assistant", "content": "1. Take nut.\n2. Put nut.", "time": 11.5, "learn": True},
        ],
        "meta": {"source": "ego4d_lta", "benchmark": "ego4d_lta", "clip_uid": "c", "last_observed_action_idx": 1,
                 "verb_labels": [0, 1], "noun_labels": [5, 5], "answer": "1. Take nut.\n2. Put nut."},
    }
    assert bm.taxonomy_word("chip_(wood,_metal)") == "chip" and bm.taxonomy_word("cutting_board") == "cutting board"


def narration_record(key: str = "r") -> ConversationRecord:
    turns = [Turn("system", "S"), Turn("stream", time=0.0, num_frames=1), Turn("user", "go", 0.0),
             Turn("assistant", "A one.", 0.0, learn=True), Turn("stream", time=0.5, num_frames=6, learn=True),
             Turn("assistant", "A two.", 3.0, learn=True)]
    return ConversationRecord(key, "v.mp4", 2.0, 0.0, turns)


def test_augmentation_is_off_by_default_and_seeded():
    record = narration_record()
    assert insert_wrong_reply(record, AugmentOptions()) is record
    outs = [insert_wrong_reply(narration_record(f"r{i}"), AugmentOptions(probability=1.0, seed=0)) for i in range(12)]
    again = [insert_wrong_reply(narration_record(f"r{i}"), AugmentOptions(probability=1.0, seed=0)) for i in range(12)]
    assert outs == again
    kinds = {o.meta["augment"] for o in outs}
    assert kinds == {"wrong_reply_corrected", "wrong_reply_ignored"}
    for out in outs:
        validate_turns(out.conversation)
        turns = out.conversation
        assert out.num_frames == record.num_frames  # same frames, split around the wrong reply
        first, wrong, second, right = turns[4:8]
        assert first.num_frames + second.num_frames == 6
        assert wrong.role == "assistant" and wrong.content == "A one." and wrong.learn is False
        assert first.learned_frames() == first.num_frames - 1  # the decision to say the wrong reply is not learned
        assert second.learn is True and wrong.time == round(0.5 + (first.num_frames - 1) / 2, 6)
        expected = CORRECTION_PREFIX + "A two." if out.meta["augment"] == "wrong_reply_corrected" else "A two."
        assert right.content == expected and right.learn is True
