"""The CLI entry point: the command table, help built from the option fields, one-line errors with
exit code 2, exit code 130 on Ctrl-C, and a fast start (no torch or transformers before a model
is needed)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest

from streamvlm import cli
from streamvlm.cli.flags import build_parser, field_docs
from streamvlm.errors import UserError
from streamvlm.settings import unwrap_type


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_top_level_help_lists_every_command_with_its_summary(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, summary) in cli.COMMANDS.items():
        assert f"  {name}" in out and summary in out
    assert cli.main(["--version"]) == 0 and capsys.readouterr().out.startswith("streamvlm 0.")
    assert cli.main(["data"]) == 0 and "data convert" in capsys.readouterr().out


def _fields(cls: type) -> list[tuple[type, dataclasses.Field]]:
    """Every (owner class, field) of an options class, nested settings included."""
    out = []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        inner = unwrap_type(hints[f.name])
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            out += _fields(inner)
        else:
            out.append((cls, f))
    return out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_option_is_documented_and_shown_in_help(name, capsys):
    module = cli.command_module(name)
    for owner, f in _fields(module.Options):
        assert field_docs(owner).get(f.name), f"{owner.__name__}.{f.name} has no docstring"
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*name.split(), "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: streamvlm {name} ")
    for owner, f in _fields(module.Options):
        first_words = " ".join(field_docs(owner)[f.name].split()[:3])
        assert first_words in " ".join(out.split()), (f.name, first_words)


def test_building_every_parser_imports_neither_torch_nor_transformers():
    code = """
import sys
from streamvlm import cli
from streamvlm.cli.flags import build_parser
for name in cli.COMMANDS:
    build_parser(name, "", cli.command_module(name).Options)
heavy = sorted(m for m in ("torch", "transformers", "peft", "accelerate", "av", "safetensors") if m in sys.modules)
print(heavy)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [
    ["narrate", "/nonexistent/clip.mp4"],
    ["narrate", "clip.mp4", "--fps", "nan"],
    ["eval", "missing.jsonl", "--features", "."],
    ["train", "tiny-synth", "optim.lr=-1"],
    ["encode", ".", "--out", "/dev/null"],
    ["demo", "--duration", "1"],
    ["bench", "--frames", "0"],
])
def test_user_errors_are_found_before_torch_is_imported(argv):
    code = f"""
import sys
from streamvlm.cli import main
code = main({argv!r})
print(code, "torch" in sys.modules, "transformers" in sys.modules)
"""
    result = run_python(code)
    assert result.stdout.split() == ["2", "False", "False"], result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("streamvlm: error: ")


def test_user_error_exits_2_with_one_line_and_no_traceback(monkeypatch, capsys):
    module = cli.command_module("synth")

    def boom(options):
        raise UserError("video.mp4: not a video")

    monkeypatch.setattr(module, "run", boom)
    assert cli.main(["synth", "--out", "x", "--videos", "1"]) == 2
    assert capsys.readouterr().err == "streamvlm: error: video.mp4: not a video\n"


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    module = cli.command_module("synth")

    def interrupted(options):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    assert cli.main(["synth", "--out", "x", "--videos", "1"]) == 130
    assert capsys.readouterr().err == "streamvlm: interrupted\n"


def test_usage_errors_are_one_line(capsys):
    for argv, fragment in ((["bogus"], "unknown command 'bogus'"), (["data", "bogus"], "unknown command 'data bogus'"),
                           (["narrate"], "the following arguments are required: SOURCE"),
                           (["synth", "--out", "x", "--videos", "1", "--bogus"], "unrecognized arguments: --bogus"),
                           (["--bogus"], "unknown option --bogus")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err, err


def test_config_file_and_print_config(tmp_path, capsys):
    import json

    options = tmp_path / "synth.json"
    options.write_text(json.dumps({"out": "w", "world": {"num_videos": 3, "seed": 5}}))
    assert cli.main(["synth", "--config", str(options), "--seed", "9", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["world"] == {**printed["world"], "num_videos": 3, "seed": 9}  # flags win over the file
    options.write_text(json.dumps({"out": "w", "world": {"num_videos": 0}}))
    assert cli.main(["synth", "--config", str(options)]) == 2
    assert f"{options}: --videos: should be greater than or equal to 1" in capsys.readouterr().err


def test_parser_flags_follow_the_fields():
    from streamvlm.cli.commands.narrate import Options

    parser, flags = build_parser("streamvlm narrate", "", Options)
    names = {f.name for f in flags}
    assert {"SOURCE", "--model", "--threshold", "--kv-budget", "--query", "--no-progress", "--sample-seed"} <= names
    assert vars(parser.parse_args(["x", "--no-progress"]))["no_progress"] is True
    assert "no_progress" not in vars(parser.parse_args(["x"]))  # absent: the field's own default applies
