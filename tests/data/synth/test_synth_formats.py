"""The files a world writes exist and follow the real datasets' schemas."""

from __future__ import annotations

import json

import pytest

from streamvlm.data.synth import SynthWorld
from streamvlm.data.synth.formats import VERB_LABELS
from streamvlm.data.synth.vocabulary import NOUNS
from streamvlm.errors import ConfigError


def _load(world, name):
    return json.loads((world.root / "annotations" / name).read_text())


def test_layout(tiny_world):
    root = tiny_world.root
    for v in tiny_world.videos:
        assert (root / "videos" / f"{v.uid}.mp4").stat().st_size > 1000
    names = {p.name for p in (root / "annotations").iterdir()}
    expected = {"narration.json", "COIN.json", "fho_lta_taxonomy.json"}
    expected |= {f"{k}_{s}.json" for k in ("goalstep", "fho_lta") for s in ("train", "val", "test")}
    assert names == expected
    splits = json.loads((root / "splits.json").read_text())
    assert sorted(sum(splits.values(), [])) == sorted(v.uid for v in tiny_world.videos)
    for s, uids in splits.items():
        assert all(tiny_world.video(u).split == s for u in uids)


def test_world_json_round_trip(tiny_world):
    again = SynthWorld.load(tiny_world.root)
    assert again.videos == tiny_world.videos and again.options == tiny_world.options


def test_world_json_is_strict(tiny_world, tmp_path):
    data = json.loads((tiny_world.root / "world.json").read_text())
    data["videos"][0]["actions"][0]["time"] = "soon"
    (tmp_path / "world.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"videos\[0\]\.actions\[0\]\.time"):
        SynthWorld.load(tmp_path)


def test_narration_schema(tiny_world):
    data = _load(tiny_world, "narration.json")
    assert set(data) == {v.uid for v in tiny_world.videos}
    for v in tiny_world.videos:
        p1 = data[v.uid]["narration_pass_1"]
        assert len(p1["narrations"]) == len(v.actions) > 0
        for n, a in zip(p1["narrations"], v.actions):
            assert set(n) == {"timestamp_sec", "timestamp_frame", "narration_text", "annotation_uid"}
            assert n["narration_text"].startswith("#C C ") and n["narration_text"] == a.narration
            assert n["timestamp_frame"] == round(n["timestamp_sec"] * v.fps)
        (summary,) = p1["summaries"]
        assert summary["start_sec"] == 0.0 and summary["end_sec"] == v.duration
        assert summary["summary_text"].startswith("#Summary")


def test_narration_times_inside_and_increasing(tiny_world):
    data = _load(tiny_world, "narration.json")
    for v in tiny_world.videos:
        times = [n["timestamp_sec"] for n in data[v.uid]["narration_pass_1"]["narrations"]]
        assert all(0 < t < v.duration for t in times)
        assert times == sorted(times) and len(set(times)) == len(times)
        for a in v.actions:
            assert a.start < a.time < a.end <= v.duration


def test_goalstep_schema(tiny_world):
    seen = set()
    for split in ("train", "val", "test"):
        for rec in _load(tiny_world, f"goalstep_{split}.json")["videos"]:
            v = tiny_world.video(rec["video_uid"])
            assert v.split == split
            seen.add(v.uid)
            assert rec["start_time"] == 0.0 and rec["end_time"] == v.duration
            assert rec["goal_category"] == v.task and rec["goal_description"] == v.goal
            prev_end = 0.0
            for step in rec["segments"]:
                assert {"start_time", "end_time", "step_category", "step_description", "segments"} <= set(step)
                assert prev_end <= step["start_time"] < step["end_time"] <= v.duration
                prev_end = step["end_time"]
                for sub in step["segments"]:
                    assert step["start_time"] <= sub["start_time"] < sub["end_time"] <= step["end_time"]
    assert seen == {v.uid for v in tiny_world.videos}


def test_coin_schema(tiny_world):
    data = _load(tiny_world, "COIN.json")
    assert set(data["database"]) == {v.uid for v in tiny_world.videos}
    for uid, rec in data["database"].items():
        v = tiny_world.video(uid)
        assert rec["subset"] == ("training" if v.split == "train" else "testing")
        assert rec["class"] == v.goal and rec["duration"] == v.duration
        steps = data["taxonomy"][rec["class"]]["steps"]
        assert data["taxonomy"][rec["class"]]["recipe_type"] == rec["recipe_type"]
        for ann in rec["annotation"]:
            s, e = ann["segment"]
            assert rec["start"] <= s < e <= rec["end"] <= v.duration
            assert steps[ann["id"]] == ann["label"]


def test_lta_schema(tiny_world):
    tax = _load(tiny_world, "fho_lta_taxonomy.json")
    assert tax == {"verbs": list(VERB_LABELS), "nouns": list(NOUNS)}
    total = 0
    for split in ("train", "val", "test"):
        clips = _load(tiny_world, f"fho_lta_{split}.json")["clips"]
        total += len(clips)
        for c in clips:
            v = tiny_world.video(c["video_uid"])
            assert v.split == split
            a = v.actions[c["action_idx"]]
            assert tax["verbs"][c["verb_label"]] == c["verb"] and tax["nouns"][c["noun_label"]] == c["noun"]
            assert (c["action_clip_start_sec"], c["action_clip_end_sec"]) == (a.start, a.end)
            assert c["clip_uid"] and c["noun"] == a.noun
    assert total == sum(len(v.actions) for v in tiny_world.videos)
