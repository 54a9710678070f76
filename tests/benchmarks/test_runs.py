"""`streamvlm benchmark NAME ANNOTATIONS --videos DIR` with the embedded model on a tiny world: the
model and its blind baseline, offline and online, every probe written as it finishes, a re-run that
resumes, an interrupted run that loses nothing, settings that cannot be mixed."""

from __future__ import annotations

import json

import pytest
import torch

from streamvlm.benchmarks.records import RecordFile
from streamvlm.benchmarks.stream import Frames
from tests.benchmarks.conftest import cli

FAST = ("--threads", "1", "--no-progress", "--prompt", "plain")


def _records(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "header" in lines[0]
    return lines[0]["header"], lines[1:]


def test_offline_options_run_with_blind_baseline_and_chance(editions, tiny_world, tmp_path):
    out = tmp_path / "run.jsonl"
    annotations = editions / "ovo-bench/ovo_bench_new.json"
    args = ("benchmark", "ovo-bench", annotations, "--videos", tiny_world, "--answer", "options", "--out", out,
            "--tasks", "EPM", "ASI", "ACR", "ATR", "OJR", "CRR", *FAST)
    code, stdout, err = cli(*args)
    assert code == 0, err
    header, records = _records(out)
    count = sum(len(e.get("test_info", [None])) for e in json.loads(annotations.read_text())
                if e["task"] in ("EPM", "ASI", "ACR", "ATR", "OJR", "CRR"))
    assert header["mode"] == "offline" and header["answer"] == "options" and header["judge"] == "text"
    passes = {r["pass"] for r in records}
    assert passes == {"model", "blind"} and len(records) == 2 * count
    for r in records:
        assert r["score"] in (0.0, 1.0) and r["chance"] in (0.25, 0.5, 1 / 11)
        if r["kind"] == "choice":
            assert r["response"] in "ABCD"
    lines = stdout.splitlines()
    assert "--mode offline, --answer options (text), --prompt plain, judge text" in lines[0]
    assert [line.split()[0] for line in lines[3:6]] == ["model", "blind", "chance"]
    assert "Real-Time Visual Perception" in lines[1]
    # a re-run resumes: nothing is computed again, the file is unchanged
    before = out.read_text()
    code, stdout, _ = cli(*args)
    assert code == 0 and "this run: 0 frames" in stdout and out.read_text() == before
    # other settings never mix into it
    code, _, err = cli("benchmark", "ovo-bench", annotations, "--videos", tiny_world, "--out", out, "--tasks", "EPM",
                       "ASI", "ACR", "ATR", "OJR", "CRR", "--mode", "online", *FAST)
    assert code == 2 and "holds a run with other settings (answer, instruction, mode)" in err, err
    assert out.read_text() == before


def test_an_interrupted_run_keeps_its_lines_and_resumes_to_the_same_result(editions, tiny_world, tmp_path,
                                                                         monkeypatch):
    args = ("benchmark", "streamingbench", editions / "streamingbench/questions_real.json",
            editions / "streamingbench/questions_sqa.json", "--videos", tiny_world, "--limit", "6", "--answer",
            "options", *FAST)
    code, _, err = cli(*args, "--out", tmp_path / "whole.jsonl")
    assert code == 0, err
    write, written = RecordFile.write, []

    def interrupting(self, record):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(record)
        write(self, record)

    monkeypatch.setattr(RecordFile, "write", interrupting)
    code, _, err = cli(*args, "--out", tmp_path / "cut.jsonl")
    assert code == 130 and "interrupted" in err
    _, kept = _records(tmp_path / "cut.jsonl")
    assert kept == written  # every finished probe is in the file, whole
    monkeypatch.setattr(RecordFile, "write", write)
    with open(tmp_path / "cut.jsonl", "a") as f:  # a crash mid-line: the broken tail is written again
        f.write('{"pass": "model", "ke')
    code, _, err = cli(*args, "--out", tmp_path / "cut.jsonl")
    assert code == 0, err
    _, whole = _records(tmp_path / "whole.jsonl")
    _, resumed = _records(tmp_path / "cut.jsonl")
    key = lambda r: (r["pass"], r["key"])  # noqa: E731
    assert sorted(resumed, key=key) == sorted(whole, key=key)


def test_online_text_reads_forward_probes_from_what_the_model_says(editions, tiny_world, tmp_path):
    out = tmp_path / "online.jsonl"
    code, stdout, err = cli("benchmark", "ovo-bench", editions / "ovo-bench/ovo_bench_new.json", "--videos",
                            tiny_world, "--mode", "online", "--judge", "rule", "--out", out, "--no-blind",
                            "--max-new-tokens", "12", *FAST)
    assert code == 0, err
    header, records = _records(out)
    assert header["instruction"] == "Please concisely narrate the video in real time." and header["judge"] == "rule"
    rec = [r for r in records if r["task"] == "REC" and r["pass"] == "model"]
    assert rec and all(r["response"].isdigit() for r in rec)
    counts = [int(r["response"]) for r in sorted(rec, key=lambda r: (r["video"], r["time"]))]
    assert all(a <= b for a, b in zip(counts, counts[1:]) if True) or len({r["video"] for r in rec}) > 1
    assert {r["response"] for r in records if r["task"] in ("SSR", "CRR")} <= {"Yes", "No"}


def test_online_proactive_and_pauc(editions, tiny_world, tmp_path):
    code, stdout, err = cli("benchmark", "proactivevideoqa", editions / "proactivevideoqa/SYNTH/anno.json",
                            "--videos", tiny_world, "--mode", "online", "--judge", "rule", "--no-blind",
                            "--max-new-tokens", "12", "--out", tmp_path / "p.jsonl", *FAST)
    assert code == 0, err
    _, records = _records(tmp_path / "p.jsonl")
    for r in records:
        assert set(r["pauc"]) == {"0.0", "0.5", "1.0"} and len(r["pauc"]["0.5"]) == r["turns"]
        assert r["score"] == pytest.approx(sum(r["pauc"]["0.5"]) / r["turns"])
        assert all(t >= 0 for t, _ in r["response"])
    assert "silent" in stdout and "SYNTH" in stdout
    code, stdout, err = cli("benchmark", "streamingbench", editions / "streamingbench/questions_proactive.json",
                            "--videos", tiny_world, "--mode", "online", "--judge", "rule", "--limit", "1",
                            "--no-blind", "--max-new-tokens", "12", "--out", tmp_path / "s.jsonl", *FAST)
    assert code == 0, err
    _, records = _records(tmp_path / "s.jsonl")
    assert len(records) == 1 and records[0]["on_time"] in (0.0, 1.0)


def test_missing_videos_and_bad_flags_fail_before_any_model_loads(editions, tmp_path):
    code, _, err = cli("benchmark", "ovo-bench", editions / "ovo-bench/ovo_bench_new.json", "--videos", tmp_path)
    assert code == 2 and "record probe 0, field 'video': no such video under --videos" in err
    code, _, err = cli("benchmark", "ovo-bench", editions / "ovo-bench/ovo_bench_new.json")
    assert code == 2 and "--videos: required" in err
    code, _, err = cli("benchmark", "mmbench", "x.json")
    assert code == 2 and "unknown benchmark or action 'mmbench'" in err


def test_blind_frames_are_another_videos_pictures_at_this_videos_times():
    own = Frames(torch.zeros(5, 2, 3), [0.0, 0.5, 1.0, 1.5, 2.0])
    other = Frames(torch.arange(3.0)[:, None, None].expand(3, 2, 3), [0.0, 0.5, 1.0])
    blind = own.seen_through(other)
    assert blind.times == own.times and blind.embeds[:, 0, 0].tolist() == [0, 1, 2, 0, 1]
    assert [own.index_at(t) for t in (-1, 0, 0.49, 0.5, 9)] == [0, 0, 0, 1, 4]
