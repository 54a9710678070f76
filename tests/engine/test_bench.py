"""`streamvlm bench` runs end to end on the tiny preset and refuses the 8b preset on a CPU."""

from __future__ import annotations

import json

from streamvlm.cli import main


def test_bench_tiny_json(capsys):
    assert main(["bench", "--preset", "tiny", "--frames", "3", "--json", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    methods = {m["method"]: m for m in report["methods"]}
    assert set(methods) == {"streaming", "per-frame", "interleaved", "no-cache"}
    assert methods["streaming"]["llm_calls_per_frame"] == 1.0  # silent: one call per frame
    assert methods["per-frame"]["llm_calls_per_frame"] == 2.0
    assert methods["interleaved"]["llm_calls_per_frame"] == 11.0  # frame + reply prompt + 9 decode steps
    assert methods["streaming"]["tokens_per_frame"] < methods["per-frame"]["tokens_per_frame"]
    assert report["frame_encoding_fps"] > 0 and report["ratios"]["streaming/interleaved"] > 0


def test_bench_8b_refused_on_cpu(capsys):
    assert main(["bench", "--preset", "8b"]) == 2
    assert "GPU" in capsys.readouterr().err


def test_bench_end_to_end_on_a_video(capsys, tmp_path):
    from streamvlm.data.synth import generate_world

    world = generate_world(tmp_path / "w", 1, 3, duration=4.0, size=64, split="test", workers=1, progress=False)
    video = world.video_path(world.videos[0].uid)
    assert main(["bench", "--preset", "tiny", "--frames", "2", "--json", "--threads", "1",
                 "--videos", str(video), str(tmp_path / "w" / "videos")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    runs = report["end_to_end"]
    assert [r["video"] for r in runs] == [video.name, video.name]  # the file, then the folder's one file
    for r in runs:
        assert r["frames"] == 8 and r["seconds"] == 4.0  # 4 s at the model's 2 frames/s
        assert r["frames_per_s"] > 0 and r["times_real_time"] == r["seconds"] / r["wall_s"]
        assert r["replies"] >= 1  # the narration instruction at 0 s is answered


def test_bench_missing_video(capsys, tmp_path):
    assert main(["bench", "--preset", "tiny", "--frames", "1", "--videos", str(tmp_path / "nope.mp4")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_bench_batch_sessions_json(capsys):
    assert main(["bench", "--preset", "tiny", "--frames", "3", "--json", "--threads", "1",
                 "--batch-sessions", "1", "3"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = report["batch_sessions"]
    assert [r["sessions"] for r in rows] == [1, 3]
    for row in rows:
        for mode in ("batched", "sequential"):
            r = row[mode]
            assert r["frames_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] and r["replies"] == 0
        assert row["speedup"] == row["batched"]["frames_per_s"] / row["sequential"]["frames_per_s"]
