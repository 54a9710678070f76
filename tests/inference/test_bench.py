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
    assert methods["interleaved"]["llm_calls_per_frame"] == 9.0
    assert methods["streaming"]["tokens_per_frame"] < methods["per-frame"]["tokens_per_frame"]
    assert report["frame_encoding_fps"] > 0 and report["ratios"]["streaming/interleaved"] > 0


def test_bench_8b_refused_on_cpu(capsys):
    assert main(["bench", "--preset", "8b"]) == 2
    assert "GPU" in capsys.readouterr().err
