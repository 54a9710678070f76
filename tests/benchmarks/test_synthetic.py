"""Synthetic editions: the three benchmarks' published formats (read back by their loaders), each
question true to the world's ground truth."""

from __future__ import annotations

import json

from streamvlm.benchmarks import ovobench, proactivevideoqa, streamingbench
from streamvlm.data.synth import SynthWorld
from tests.benchmarks.conftest import cli


def test_make_synthetic_writes_every_edition(tiny_world, tmp_path):
    code, out, err = cli("benchmark", "make-synthetic", tiny_world, "--out", tmp_path / "ed")
    assert code == 0, err
    for relative in ("ovo-bench/ovo_bench_new.json", "streamingbench/questions_real.json",
                     "streamingbench/questions_sqa.json", "streamingbench/questions_proactive.json",
                     "proactivevideoqa/SYNTH/anno.json"):
        assert (tmp_path / "ed" / relative).is_file() and relative in out
    code, _, err = cli("benchmark", "make-synthetic", tmp_path, "--out", tmp_path / "x")
    assert code == 2 and "expected one WORLD folder made by `streamvlm synth`" in err


def test_ovo_questions_follow_the_ground_truth(tiny_world, editions):
    world = SynthWorld.load(tiny_world)
    entries = ovobench.load(editions / "ovo-bench/ovo_bench_new.json")
    tasks = {e["task"] for e in entries}
    assert {"EPM", "ASI", "ACR", "ATR", "OJR", "REC", "SSR", "CRR"} <= tasks
    for e in entries:
        spec = world.video(e["video"].split("/")[-1].removesuffix(".mp4"))
        if "options" in e:
            assert e["options"][e["gt"]] == e["answer"] and len(set(e["options"])) == 4
        if e["task"] == "ACR":  # the action under way, as its narration says it
            action = next(a for a in spec.actions if e["answer"] == f"You {a.imperative}.")
            assert action.time <= e["realtime"] <= action.end + 1
        if e["task"] == "ATR":  # the colour of the object picked up last, still in the hand
            pick = max((a for a in spec.actions if a.verb == "pick" and a.end <= e["realtime"] + 1),
                       key=lambda a: a.end)
            assert spec.object(pick.obj).colour == e["answer"]
        if e["task"] == "REC":
            picks = [a for a in spec.actions if a.verb == "pick"]
            assert len(e["end_times"]) == len(picks)
            for info in e["test_info"]:  # the official meaning: picks ended by then
                assert info["count"] == sum(end <= info["realtime"] for end in e["end_times"])
        if e["task"] == "SSR":
            for info in e["test_info"]:
                i = e["all_steps"].index(info["step"])
                assert info["type"] == int(e["start_time"][i] <= info["realtime"] <= e["end_time"][i])
        if e["task"] == "CRR":
            assert [i["type"] for i in e["test_info"]] == [int(i["realtime"] >= e["clue_time"]) for i in e["test_info"]]
            assert e["ask_time"] < e["clue_time"]


def test_streamingbench_and_proactivevideoqa_editions(tiny_world, editions):
    world = SynthWorld.load(tiny_world)
    real = streamingbench.load(editions / "streamingbench/questions_real.json")
    assert {p.task for p in real} >= {"Action Recognition", "Object Recognition", "Attribute Recognition"}
    assert all(p.truth in "ABCD" and len(p.options) == 4 for p in real)
    sqa = streamingbench.load(editions / "streamingbench/questions_sqa.json")
    assert sqa and all(p.task == "Sequential Question Answering" for p in sqa)
    proactive = streamingbench.load(editions / "streamingbench/questions_proactive.json")
    for probe in proactive:  # the expected output is the narration of an action at the expected time
        spec = world.video(probe.video.split("/")[-1].removesuffix(".mp4"))
        assert any(f"You {a.imperative}." == probe.truth["output"] and abs(a.time - probe.truth["time"]) <= 0.5
                   for a in spec.actions)
    probes = proactivevideoqa.load(editions / "proactivevideoqa/SYNTH/anno.json")
    for probe in probes:
        spec = world.video(probe.key)
        assert [a["content"] for a in probe.truth["answers"]] == [s.description[:1].upper() + s.description[1:] + "."
                                                                  for s in spec.steps]
    raw = json.loads((editions / "proactivevideoqa/SYNTH/anno.json").read_text())
    assert set(raw[0]) == {"video", "question_id", "conversation", "answer", "duration"}
