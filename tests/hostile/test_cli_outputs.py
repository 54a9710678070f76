"""Files a run must not lose or change: its own inputs (config, model files), one output written
twice, a folder `synth --overwrite` did not make, the previous output of an interrupted run, a
world two runs generate at once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from streamvlm.cli import main
from tests.cli.test_narrate_errors import one_error_line

FAST = ("--no-progress", "--max-new-tokens", "1")


def test_the_config_file_is_an_input(cli, tiny_checkpoint, short_clip, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"output": str(config), "model": {"model": str(tiny_checkpoint)}}))
    before = config.read_text()
    one_error_line(cli("narrate", short_clip, "--config", config, *FAST),
                   f"--output {config}: is also an input of this run")
    assert config.read_text() == before


def test_a_base_config_is_an_input_too(cli, tiny_checkpoint, short_clip, tmp_path):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"model": {"model": str(tiny_checkpoint)}}))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"base": str(base), "output": str(base)}))
    before = base.read_text()
    one_error_line(cli("narrate", short_clip, "--config", config, *FAST),
                   f"--output {base}: is also an input of this run")
    assert base.read_text() == before


def test_the_model_files_are_inputs(cli, tiny_checkpoint, short_clip, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    before = (model / "config.json").read_bytes()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        one_error_line(cli("narrate", short_clip, "--model", model, "--output", model / name, *FAST),
                       "is also an input of this run")
    assert (model / "config.json").read_bytes() == before
    assert cli("narrate", short_clip, "--model", model, "--output", model / "events.jsonl", *FAST).code == 0


def test_two_outputs_of_one_run_must_differ(cli, tiny_checkpoint, short_clip, tmp_path):
    same = tmp_path / "same.vtt"
    one_error_line(cli("narrate", short_clip, "--model", tiny_checkpoint, "--output", same, "--subtitles", same, *FAST),
                   f"--subtitles {same}: is also --output {same}; two outputs of a run must differ")
    assert not same.exists()


def _synth(out, *flags) -> list[str]:
    return ["synth", "--out", str(out), "--videos", "1", "--duration", "4", "--size", "32", "--workers", "1", *flags]


def test_overwrite_replaces_only_what_synth_wrote(cli, tmp_path):
    mine = tmp_path / "ow" / "videos" / "mine.mp4"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own video")
    world_json = tmp_path / "ow" / "world.json"
    world_json.write_text('{"not": "a world"}')
    one_error_line(cli(*_synth(tmp_path / "ow", "--overwrite")), "its world.json is not a world of `streamvlm synth`")
    world_json.unlink()
    one_error_line(cli(*_synth(tmp_path / "ow", "--overwrite")), "holds no world.json")
    assert mine.read_bytes() == b"my own video"

    out = tmp_path / "world"
    assert cli(*_synth(out, "--seed", "1")).code == 0
    (out / "videos" / "mine.mp4").write_bytes(b"my own video")
    (out / "notes.txt").write_text("mine too")
    assert cli(*_synth(out, "--seed", "2", "--overwrite")).code == 0
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["mine.mp4", "synth_s2_00000.mp4"]
    assert (out / "notes.txt").read_text() == "mine too" and json.loads((out / "world.json").read_text())[
        "options"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ow", "world"]  # no staging folder, no lock


def test_overwrite_never_replaces_a_file_the_old_world_did_not_write(cli, tmp_path):
    out = tmp_path / "world"
    assert cli(*_synth(out, "--seed", "1")).code == 0
    foreign = out / "videos" / "synth_s2_00000.mp4"  # the name seed 2 writes, but not a file of seed 1's world
    foreign.write_bytes(b"mine")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    one_error_line(cli(*_synth(out, "--seed", "2", "--overwrite")), "videos/synth_s2_00000.mp4 is there")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_two_synth_runs_into_one_folder(tmp_path, capsys):
    out = tmp_path / "csy"
    first = subprocess.Popen([sys.executable, "-m", "streamvlm.cli", "synth", "--out", str(out), "--videos", "3",
                              "--seed", "1", "--duration", "20", "--size", "32", "--workers", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staging = tmp_path / ".csy.partial"
    deadline = time.monotonic() + 30
    while not staging.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert first.poll() is None, "the first run ended before the second could start"
    second = main(["synth", "--out", str(out), "--videos", "2", "--seed", "2", "--duration", "4", "--size", "32",
                   "--workers", "1"])
    err = capsys.readouterr().err
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert second == 2 and "another process is generating a world there" in err
    world = json.loads((out / "world.json").read_text())
    assert world["options"]["seed"] == 1  # the first run's world, whole
    assert sorted(p.name for p in (out / "videos").iterdir()) == [f"synth_s1_0000{i}.mp4" for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csy"]


def test_a_lock_left_by_a_killed_run_is_not_stale(cli, tmp_path):
    # the lock is an flock, which the system drops with its process: the file alone holds nothing
    (tmp_path / ".world.lock").write_text("")
    assert cli(*_synth(tmp_path / "world")).code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]


def test_ctrl_c_keeps_the_previous_output_and_the_partial_run_beside_it(cli, tiny_checkpoint, short_clip, tmp_path,
                                                                        monkeypatch):
    from streamvlm.engine.console import EventPrinter

    out, subtitles = tmp_path / "keep.jsonl", tmp_path / "keep.vtt"
    out.write_text('{"time": 0.0, "role": "user", "text": "an earlier, complete run"}\n')
    before = out.read_text()
    original = EventPrinter.__call__

    def ctrl_c_at_the_fourth_event(self, time, role, text):
        if self.events == 3:
            raise KeyboardInterrupt  # as Ctrl-C does, in the main thread, between two events
        original(self, time, role, text)

    monkeypatch.setattr(EventPrinter, "__call__", ctrl_c_at_the_fourth_event)
    result = cli("narrate", short_clip, "--model", tiny_checkpoint, "--output", out, "--subtitles", subtitles,
                 "--threshold", "1", *FAST)
    partial, partial_subtitles = tmp_path / "keep.jsonl.partial", tmp_path / "keep.vtt.partial"
    assert result.code == 130 and result.err.splitlines() == [
        f"streamvlm: interrupted; the events so far are in {partial}, {partial_subtitles} "
        f"({out}, {subtitles} left as before)"]
    assert out.read_text() == before and not subtitles.exists()
    events = [json.loads(line) for line in partial.read_text().splitlines()]
    assert len(events) == 3 and events[0]["role"] == "user"
    assert partial_subtitles.read_text().startswith("WEBVTT")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl", "keep.jsonl.partial", "keep.vtt.partial"]

    result = cli("narrate", short_clip, "--model", tiny_checkpoint, "--output", out, "--threshold", "1", *FAST)
    assert result.code == 130 and partial.read_text().count("\n") == 3  # the next interrupted run's own
    monkeypatch.setattr(EventPrinter, "__call__", original)
    assert cli("narrate", short_clip, "--model", tiny_checkpoint, "--output", out, *FAST).code == 0
    assert out.read_text() != before  # a run that ends replaces it
