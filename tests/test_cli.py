"""The CLI entry point: help, and one-line errors with exit code 2 for user errors."""

import subprocess
import sys

from streamvlm import cli
from streamvlm.errors import UserError


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "streamvlm.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "streamvlm" in out.stdout


def test_user_error_exits_2_without_traceback(monkeypatch, capsys):
    def boom(args):
        raise UserError("video.mp4: not a video")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    sub = parser._subparsers._group_actions[0] if parser._subparsers else None
    p = sub.add_parser("boom") if sub else None
    p.set_defaults(_run=boom)
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "streamvlm: error: video.mp4: not a video"
