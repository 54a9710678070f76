"""``streamvlm synth`` on the command line."""

from __future__ import annotations

import json

import pytest

from streamvlm.cli import main
from streamvlm.errors import UserError


def test_cli_writes_a_world(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["synth", "--out", str(out), "--videos", "2", "--seed", "3", "--duration", "5", "--size", "32",
            "--fps", "4", "--workers", "2"]
    assert main(args) == 0
    assert "wrote 2 videos" in capsys.readouterr().out
    world = json.loads((out / "world.json").read_text())
    assert world["options"]["num_videos"] == 2 and len(list((out / "videos").glob("*.mp4"))) == 2
    assert main(args) == 2  # not empty
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--videos", "1"]) == 0
    assert len(list((out / "videos").glob("*.mp4"))) == 1


@pytest.mark.parametrize("bad", [["--videos", "0"], ["--videos", "-3"], ["--size", "33"], ["--fps", "0"],
                                 ["--duration", "1"], ["--seed", "-1"], ["--workers", "0"]])
def test_cli_refuses_bad_arguments(tmp_path, capsys, bad):
    args = ["synth", "--out", str(tmp_path / "w"), "--videos", "1", "--duration", "5"] + bad
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamvlm: error:") and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_cli_refuses_a_file_as_out_dir(tmp_path):
    (tmp_path / "f").write_text("x")
    assert main(["synth", "--out", str(tmp_path / "f"), "--videos", "1"]) == 2


def test_a_failed_overwrite_keeps_the_world_already_there(tmp_path, monkeypatch):
    from streamvlm.data.synth import generate as gen

    out = tmp_path / "world"
    assert main(["synth", "--out", str(out), "--videos", "1", "--duration", "4", "--size", "32", "--workers", "1"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(spec, path, crf=18):
        raise UserError("disk full")

    monkeypatch.setattr(gen, "write_video", broken)
    assert main(["synth", "--out", str(out), "--videos", "2", "--duration", "4", "--size", "32", "--workers", "1",
                 "--overwrite"]) == 2
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["world"]  # the staging folder is gone too
