"""Nothing is lost: outputs that are inputs, devices or FIFOs are refused before any work; an
existing file is replaced only by a run that produced its content; Ctrl-C at any moment prints
one line, exits 130 and leaves whole files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from streamvlm.errors import UserError

from .test_narrate_errors import one_error_line


def test_output_that_is_the_source_video_is_refused_and_the_video_kept(cli, tiny_checkpoint, short_clip):
    before = short_clip.read_bytes()
    one_error_line(cli("narrate", short_clip, "--model", tiny_checkpoint, "--output", short_clip),
                   "is also an input of this run")
    assert short_clip.read_bytes() == before


def test_devices_and_fifos_are_refused_without_hanging(cli, tiny_checkpoint, short_clip, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in ("/dev/full", fifo, tmp_path):
        result = cli("narrate", short_clip, "--model", tiny_checkpoint, "--output", target)
        one_error_line(result, f"--output {target}")
        assert result.seconds < 1.0


def test_a_run_that_fails_leaves_the_existing_output_untouched(cli, tiny_checkpoint, short_clip, tmp_path,
                                                               monkeypatch):
    from streamvlm.engine.assistant import LiveAssistant

    out = tmp_path / "events.jsonl"
    out.write_text('{"time": 1.0, "role": "assistant", "text": "an earlier run"}\n')
    before = out.read_text()
    pushed = []
    original = LiveAssistant.push_frame

    def failing(self, frame, time):
        pushed.append(time)
        if len(pushed) == 4:
            raise UserError("the stream broke")
        return original(self, frame, time)

    monkeypatch.setattr(LiveAssistant, "push_frame", failing)
    result = cli("narrate", short_clip, "--model", tiny_checkpoint, "--output", out, "--max-new-tokens", "1",
                 "--no-progress")
    assert result.code == 2 and "the stream broke" in result.err
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]


def test_data_convert_refuses_to_overwrite_its_input_or_a_device(cli, tmp_path):
    annotations = tmp_path / "narration.json"
    annotations.write_text(json.dumps({}))
    (tmp_path / "videos").mkdir()
    before = annotations.read_text()
    one_error_line(cli("data", "convert", "narration", annotations, "--videos-root", tmp_path / "videos",
                       "--out", annotations), "--out", "is also an input")
    assert annotations.read_text() == before
    one_error_line(cli("data", "convert", "narration", annotations, "--videos-root", tmp_path / "videos",
                       "--out", "/dev/null"), "--out /dev/null: is a device")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def _spawn(*argv) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "streamvlm.cli", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _handles_sigint(pid: int) -> bool:
    """Python has installed its SIGINT handler (before that, the signal would simply kill it)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    return bool(caught & (1 << (signal.SIGINT - 1)))


def test_ctrl_c_while_starting_up_is_one_line_and_130(tiny_checkpoint, short_clip):
    proc = _spawn("narrate", short_clip, "--model", tiny_checkpoint, "--no-progress")
    deadline = time.monotonic() + 30
    while not _handles_sigint(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # inside the options check or the torch / model import (loading takes seconds)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "streamvlm: interrupted\n"


def test_ctrl_c_while_streaming_keeps_the_events_so_far_beside_the_output(tiny_checkpoint, tmp_path):
    from streamvlm.data.synth import generate_world

    world = generate_world(tmp_path / "w", 1, 5, duration=60.0, size=64, split="test", workers=1, progress=False)
    out = tmp_path / "events.jsonl"
    out.write_text("an earlier run\n")
    proc = _spawn("narrate", world.video_path(world.videos[0].uid), "--model", tiny_checkpoint, "--output", out,
                  "--realtime", "--max-new-tokens", "1", "--no-progress")
    first = proc.stdout.readline()  # the first event: streaming has begun
    assert first.startswith("(0.0s) User:"), first + proc.stderr.read()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    partial = tmp_path / "events.jsonl.partial"
    assert err.strip().splitlines()[-1] == (f"streamvlm: interrupted; the events so far are in {partial} "
                                            f"({out} left as before)") and "Traceback" not in err
    assert out.read_text() == "an earlier run\n"
    events = [json.loads(line) for line in partial.read_text().splitlines()]  # every line whole
    assert events[0]["role"] == "user" and all(set(e) == {"time", "role", "text"} for e in events)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
