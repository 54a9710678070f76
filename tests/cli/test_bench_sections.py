"""`streamvlm bench` sections at tiny size: --sessions (batched vs sequential), --lengths
(per-frame cost against stream length, unbounded and bounded), the direct-maths baseline, and the
thread settings every report carries."""

from __future__ import annotations

import json

import pytest

from streamvlm.cli import main


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _report(capsys, *argv: str) -> dict:
    assert main(["bench", "--preset", "tiny", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_sessions_batched_vs_sequential(capsys):
    report = _report(capsys, "--methods", "--sessions", "1", "3", "--session-frames", "3", "--threads", "1")
    assert "methods" not in report and "lengths" not in report
    rows = report["sessions"]
    assert [r["sessions"] for r in rows] == [1, 3] and all(r["frames_per_session"] == 3 for r in rows)
    for row in rows:
        for mode in ("batched", "sequential"):
            r = row[mode]
            assert r["frames_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] and r["replies"] == 0
        assert row["speedup"] == row["batched"]["frames_per_s"] / row["sequential"]["frames_per_s"]
    assert report["threads"]["torch_threads"] == 1 and report["threads"]["origin"] == "--threads"


def test_session_frames_default_to_frames_at_most_64(capsys):
    report = _report(capsys, "--methods", "--sessions", "2", "--frames", "2")
    assert report["sessions"][0]["frames_per_session"] == 2
    assert report["threads"]["origin"] in ("default", "OMP_NUM_THREADS")


def test_lengths_unbounded_and_bounded(capsys):
    report = _report(capsys, "--methods", "--lengths", "600", "300", "--length-frames", "2", "--kv-budget", "256")
    lengths = report["lengths"]
    assert lengths["frames_per_length"] == 2 and lengths["kv_budget"] == 256
    assert list(lengths["modes"]) == ["unbounded", "bounded 256"]
    unbounded, bounded = lengths["modes"]["unbounded"], lengths["modes"]["bounded 256"]
    assert [r["length"] for r in unbounded] == [300, 600]  # sorted
    assert [r["kv_tokens"] for r in unbounded] == [300, 600]  # grown to exactly the length
    assert all(r["kv_tokens"] <= 256 for r in bounded)  # the budget holds
    for rows in (unbounded, bounded):
        assert rows[0]["ratio_to_first"] == 1.0 and rows[0]["p50_ratio_to_first"] == 1.0
        for r in rows:
            assert r["ms_per_frame"] > 0 and r["p50_ms"] > 0
            assert r["append_ms_per_frame"] is None or 0 < r["append_ms_per_frame"] < 1e3 * r["ms_per_frame"]


def test_unbounded_only_with_budget_0(capsys):
    report = _report(capsys, "--methods", "--lengths", "100", "--length-frames", "1", "--kv-budget", "0")
    assert list(report["lengths"]["modes"]) == ["unbounded"]


def test_direct_maths_baseline(capsys):
    report = _report(capsys, "--methods", "direct", "--frames", "4")
    assert "methods" not in report  # direct only: no method table
    direct = report["direct"]
    assert direct["frames"] == 4 and direct["kv_tokens"] > 4 * 10
    for name in ("push_frame", "direct"):
        assert direct[name]["ms_per_frame"] > 0 and direct[name]["frames_per_s"] > 0
    assert direct["overhead"] == direct["push_frame"]["ms_per_frame"] / direct["direct"]["ms_per_frame"]


def test_all_sections_side_by_side_in_one_table_run(capsys):
    assert main(["bench", "--preset", "tiny", "--frames", "3", "--methods", "streaming", "direct",
                 "--sessions", "2", "--lengths", "200", "--length-frames", "1", "--kv-budget", "256"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("model tiny on cpu (float32); threads: torch ") and "decoder 1" in first
    for fragment in ("streaming ", "one stream, silent frames", "overhead", "batched/sequential:",
                     "per-frame cost against stream length", "bounded 256", "unbounded"):
        assert fragment in out, fragment


def test_batch_sessions_is_the_former_name_of_sessions(capsys):
    report = _report(capsys, "--methods", "--batch-sessions", "2", "--sessions", "1", "--session-frames", "2")
    assert [r["sessions"] for r in report["sessions"]] == [1, 2]


def test_unknown_method_is_refused(capsys):
    assert main(["bench", "--methods", "fast"]) == 2
    assert "--methods" in capsys.readouterr().err


def test_gpu_timing_helpers_on_cpu():
    import torch

    from streamvlm.experiments.speed import Meter, percentile, syncer

    assert syncer("cpu")() is None
    assert syncer("cuda") is torch.cuda.synchronize
    meter = Meter("cpu")
    meter.sample()
    assert meter.peak_mib() >= 0 and meter.total_mib() > 0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0 and percentile([1.0, 2.0], 0.99) == 2.0
