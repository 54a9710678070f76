"""Hostile CLI cases that used to end in a traceback (exit 1): out-of-range seeds, outputs in
folders nothing can be written to, names too long, a full stdout, a full disk. Each is one line
naming the flag or the path, exit code 2, and no file left half-written."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from streamvlm.cli import main
from tests.cli.test_narrate_errors import one_error_line

FAST = ("--no-progress", "--max-new-tokens", "1")


def test_a_sample_seed_beyond_torch_range_is_refused_by_the_options(cli, short_clip):
    one_error_line(cli("narrate", short_clip, "--do-sample", "--sample-seed", "99999999999999999999999"),
                   "--sample-seed: should be less than 18446744073709551616")
    one_error_line(cli("narrate", short_clip, "--sample-seed", "-1"), "--sample-seed: should be greater than")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder no file can be made in)")
def test_outputs_under_proc_are_refused_before_any_work(cli, short_clip, tmp_path):
    # /proc's permission bits let root write; only creating a file there tells the truth
    videos = short_clip.parent
    one_error_line(cli("encode", videos, "--out", "/proc/x"), "--out /proc/x: cannot write in folder /proc")
    one_error_line(cli("synth", "--out", "/proc/x", "--videos", "1"), "--out /proc/x: cannot write in folder /proc")
    data = tmp_path / "train.jsonl"
    data.write_text("")
    one_error_line(cli("train", "tiny-synth", f"data.train={data}", f"data.features={tmp_path}", "data.videos=null",
                       "output_dir=/proc/x"), "output_dir /proc/x: cannot write in folder /proc")


def test_a_file_name_too_long_is_a_record_error_of_data_check(cli, tmp_path):
    data = tmp_path / "paths.jsonl"
    name = "a" * 300 + ".mp4"
    data.write_text(json.dumps({"version": 1, "id": "a", "video": name, "fps": 2,
                                "conversation": [{"role": "stream", "num_frames": 2}]}) + "\n")
    for flags, fragment in ((["--videos-root", tmp_path], "cannot access under"),
                            (["--features", tmp_path], "features: cannot access its file")):
        result = cli("data", "check", data, *flags)
        assert result.code == 2 and "Traceback" not in result.err, result.err
        assert result.err.splitlines() == [f"{data}:1: field 'video': {fragment}"
                                           f"{f' {tmp_path}' if flags[0] == '--videos-root' else ''}: "
                                           "File name too long", f"1 error(s) in {data}"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("flags", [[], ["--output", "-"]], ids=["events", "json-lines"])
def test_narrate_into_a_full_stdout(tiny_checkpoint, short_clip, capsys, monkeypatch, flags):
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        code = main(["narrate", str(short_clip), "--model", str(tiny_checkpoint), *FAST, *flags])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == "streamvlm: error: standard output: No space left on device"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_at_exit_is_one_line_too():
    # what is still buffered at the end is flushed by the command line, not by the interpreter's exit
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "streamvlm.cli", "--version"], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=30)
    assert (proc.returncode, proc.stderr) == (2, "streamvlm: error: standard output: No space left on device\n")


@contextlib.contextmanager
def file_size_limit(size: int):
    """Writes past ``size`` bytes fail with EFBIG (Python ignores SIGXFSZ): a disk that fills up."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_encode_and_synth_onto_a_full_disk(cli, tiny_checkpoint, short_clip, tmp_path):
    features = tmp_path / "features"
    with file_size_limit(4096):
        encoded = cli("encode", short_clip.parent, "--out", features, "--model", tiny_checkpoint)
    assert encoded.code == 2 and "Traceback" not in encoded.err
    target = features / f"{short_clip.name}.safetensors"
    assert encoded.err.splitlines()[-1] == f"streamvlm: error: {target}: File too large"
    assert list(features.iterdir()) == []  # no temporary file left

    world = tmp_path / "world"
    with file_size_limit(4096):
        made = cli("synth", "--out", world, "--videos", "1", "--duration", "20", "--size", "64", "--workers", "1")
    assert made.code == 2 and "Traceback" not in made.err
    last = made.err.splitlines()[-1]  # the progress bar is closed first: the error has its own line
    assert last.startswith(f"streamvlm: error: {tmp_path / '.world.partial'}/") and last.endswith(": File too large")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]  # staging folder and lock gone


def test_unexpected_os_errors_keep_their_traceback(monkeypatch):
    # a file our own code expected and did not find is a bug, not the user's environment
    from streamvlm.cli.commands import data_check

    def missing(options):
        raise FileNotFoundError(2, "No such file or directory", "/nowhere/expected.json")

    monkeypatch.setattr(data_check, "run", missing)
    with pytest.raises(FileNotFoundError):
        main(["data", "check", __file__])
