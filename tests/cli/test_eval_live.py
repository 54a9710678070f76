"""``streamvlm eval-live`` end to end at tiny size: the embedded model on a tiny synthetic world,
a bounded policy and unbounded, the table, the JSON report and the plots."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from streamvlm import cli as cli_module


@pytest.fixture(autouse=True)
def eval_live_command(monkeypatch):
    """The command, also before cli.COMMANDS lists it."""
    if "eval-live" not in cli_module.COMMANDS:
        monkeypatch.setitem(cli_module.COMMANDS, "eval-live", ("eval_live", "live evaluation per time window"))


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    """Two 12-second 64-pixel test videos."""
    from streamvlm.data.synth import generate_world

    world = generate_world(tmp_path_factory.mktemp("live") / "world", 2, 9, duration=12.0, size=64, split="test",
                           workers=1, progress=False)
    return world.root


def _table(out: str, policy: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(policy))
    return [line.split() for line in lines[start + 2: start + 5]]


def test_eval_live_bounded_and_unbounded(cli, tiny_world, tmp_path):
    report_file = tmp_path / "live.json"
    result = cli("eval-live", tiny_world, "--window", "6", "--kv-budget", "256", "--compare-unbounded",
                 "--out", report_file, "--confusion", "--no-progress")
    assert result.code == 0, result.err
    assert re.search(r"^sink \d+ \+ window \d+ tokens \(--kv-budget 256\): 2 streams, 0\.4 min, 48 frames in "
                     r"[\d.]+s \([\d.]+ frames/s\); KV cache at most \d+ tokens, \d+ evicted$", result.out, re.M)
    assert re.search(r"^unbounded \(--kv-budget 0\): 2 streams, 0\.4 min, 48 frames in .*, 0 evicted$", result.out,
                     re.M)
    assert "colour: gold (rows) against the paired replies (columns)" in result.out
    report = json.loads(report_file.read_text())
    assert [r["policy"] for r in report["runs"]][1] == "unbounded"
    assert [s["duration"] for s in report["streams"]] == [12.0, 12.0]
    world = json.loads((tiny_world / "world.json").read_text())
    gold = sum(len(v["actions"]) for v in world["videos"])
    for run, policy in zip(report["runs"], ("sink", "unbounded")):
        assert run["frames"] == 48 and len(run["windows"]) == 2
        assert [w["start"] for w in run["windows"]] == [0.0, 6.0]
        rows = _table(result.out, policy)
        assert [r[0] for r in rows] == ["0-0.1", "0.1-0.2", "all"]
        overall = run["overall"]
        assert overall["narrations"] == sum(w["narrations"] for w in run["windows"]) <= gold
        assert overall["replies"] == sum(len(s["replies"]) for s in run["streams"])
        assert overall["answered"] <= overall["narrations"]
        assert overall["false_alarms"] + overall["repeats"] == overall["replies"] - overall["answered"]
        assert rows[2][1] == str(overall["narrations"]) and rows[2][7] == str(overall["replies"])
        assert all(s["answers"][0][0] == 0.0 for s in run["streams"])  # the instruction's answer, not scored
    assert report["runs"][0]["max_kv"] <= 256 < report["runs"][1]["max_kv"]


def test_eval_live_chained_with_plots(cli, tiny_world, tmp_path):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    plot, confusion = tmp_path / "quality.png", tmp_path / "confusion.png"
    result = cli("eval-live", *sorted((tiny_world / "videos").glob("*.mp4")), "--chain", "--window", "8",
                 "--kv-budget", "256", "--plot", plot, "--confusion-plot", confusion, "--no-progress")
    assert result.code == 0, result.err
    assert ": 1 stream, 0.4 min, 48 frames" in result.out
    assert [r[0] for r in _table(result.out, "sink")] == ["0-0.1", "0.1-0.3", "0.3-0.4"]
    for path in (plot, confusion):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {plot}" in result.out and f"wrote {confusion}" in result.out


def test_eval_live_same_clip_first_and_last_measures_the_drift(cli, tiny_world, tmp_path):
    """A clip played at the start of a chained stream and again at its end: the first and last
    windows hold the same frames and narrations, and the command prints and writes their difference."""
    first, second = sorted((tiny_world / "videos").glob("*.mp4"))
    other = tmp_path / "other"
    shutil.copytree(tiny_world, other)  # another world of two videos, in reverse order
    world = json.loads((other / "world.json").read_text())
    world["videos"].reverse()
    (other / "world.json").write_text(json.dumps(world))
    report_file = tmp_path / "live.json"
    result = cli("eval-live", tiny_world, other, tiny_world, "--chain", "--zip", "--window", "12",
                 "--kv-budget", "256", "--out", report_file, "--no-progress")
    assert result.code == 0, result.err
    assert ": 2 streams, 1.2 min, 144 frames" in result.out
    report = json.loads(report_file.read_text())
    assert [s["videos"] for s in report["streams"]] == [[first.stem, second.stem, first.stem],
                                                        [second.stem, first.stem, second.stem]]
    run = report["runs"][0]
    windows = run["windows"]
    assert [w["start"] for w in windows] == [0.0, 12.0, 24.0]
    assert windows[0]["narrations"] == windows[2]["narrations"] > 0
    rates = [w["rates"] for w in windows]
    assert run["drift"] == {m: None if rates[0][m] is None or rates[2][m] is None
                            else pytest.approx(100 * (rates[2][m] - rates[0][m])) for m in rates[0]}
    line = next(x for x in result.out.splitlines() if x.startswith("last window - first window (points): "))
    assert line.count(",") == 6 and "answered " in line and "false alarm " in line


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere"], "nowhere: no such file or folder"),
    (["{world}/annotations"], "not a synthetic world"),
    (["{world}", "--realtime"], "--realtime: eval-live streams offline"),
    (["{world}", "--plot", "{tmp}/curves.jpg"], "--plot {tmp}/curves.jpg: name a .png file"),
    (["{world}", "--split", "train"], "no videos to evaluate in split 'train'"),
    (["{world}", "--window", "0"], "--window"),
    (["{world}", "--zip"], "--zip: add --chain"),
    (["{world}", "{world}/videos/synth_s9_00000.mp4", "--chain", "--zip"],
     "--zip: every source needs as many videos; they hold {world} 2, {world}/videos/synth_s9_00000.mp4 1"),
])
def test_eval_live_refuses_bad_options(cli, tiny_world, tmp_path, args, message):
    args = [a.format(world=tiny_world, tmp=tmp_path) for a in args]
    result = cli("eval-live", *args, "--no-progress")
    assert result.code == 2
    assert message.format(world=tiny_world, tmp=tmp_path) in result.err


def test_plots_say_how_to_get_matplotlib(monkeypatch):
    from streamvlm.errors import UserError
    from streamvlm.evaluation import plots

    monkeypatch.setattr(plots.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^--plot: drawing plots needs matplotlib; install it with `pip install"):
        plots.require_matplotlib("--plot")


def test_eval_live_on_features_says_what_decoding_says(cli, tiny_world, tmp_path):
    features = tmp_path / "features"
    assert cli("encode", tiny_world / "videos", "--out", features, "--fps", "2").code == 0
    reports = []
    for extra in ([], ["--features", features]):
        out = tmp_path / f"live{len(reports)}.json"
        result = cli("eval-live", tiny_world, "--limit", "1", "--window", "6", "--kv-budget", "256", "--out", out,
                     "--no-progress", *extra)
        assert result.code == 0, result.err
        reports.append(json.loads(out.read_text())["runs"][0])
    decoded, from_features = reports
    assert from_features["windows"] == decoded["windows"]
    assert [s["replies"] for s in from_features["streams"]] == [s["replies"] for s in decoded["streams"]]
