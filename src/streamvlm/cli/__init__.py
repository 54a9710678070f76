"""The ``streamvlm`` command line.

Each command is a module of :mod:`streamvlm.cli.commands` with an ``Options`` settings dataclass (its
flags, see :mod:`streamvlm.cli.flags`) and ``run(options) -> int``; the table below names them,
so ``streamvlm --help`` imports no command and ``streamvlm COMMAND ...`` imports only its own.
Command modules import torch and the model only inside ``run``, once the options are valid: help
and every error in the options come back in well under a second.

Expected failures (:class:`~streamvlm.errors.UserError`) print one line and exit with code 2, and
so do the input/output failures of the system (a full disk, a read-only folder, a name too long,
permission denied: :data:`IO_ERRNOS`), naming the path; Ctrl-C prints one line and exits with
code 130. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

from .. import __version__
from ..errors import StreamvlmWarning, UserError
from ..outputs import STDOUT, stdout_error

PROG = "streamvlm"

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "watch a new synthetic clip with the model: live narration beside the ground truth, "
                     "then its scores"),
    "narrate": ("narrate", "narrate a video file, webcam, network stream or image folder live"),
    "serve": ("serve", "serve live streams: WebSocket protocol, video uploads, a browser app with webcam, metrics"),
    "bench": ("bench", "measure streaming inference speed and memory against per-frame and interleaved decoding"),
    "synth": ("synth", "generate a synthetic egocentric activity world: videos with Ego4D / COIN annotations"),
    "data check": ("data_check", "validate a conversation JSONL file (fields, turns, times, video paths, features)"),
    "data convert": ("data_convert", "convert Ego4D / COIN annotations to conversation JSONL (docs/data-format.md)"),
    "data refine": ("data_refine", "rewrite Ego4D narrations ('#C C picks up the knife') as 'You pick up the knife.'"),
    "data livechat": ("data_livechat", "write live-chat assistant replies for a JSONL of requests"),
    "pretrain-tower": ("pretrain_tower", "pretrain a small vision tower on a synthetic world's frames"),
    "encode": ("encode", "pre-extract frame tokens for every video under a folder (one safetensors file each)"),
    "train": ("train", "train a model from a recipe config (a JSON file or a shipped recipe), key=value overrides"),
    "eval": ("eval", "evaluate a model: LM-PPL, TimeDiff, Fluency, LM-correctness (and COIN / Ego4D LTA)"),
    "eval-live": ("eval_live", "stream synthetic clips through a model as in use (its own replies, a KV policy) "
                               "and score them per time window"),
    "probe": ("probe", "how much of what the narrations say a linear probe reads from the frame tokens"),
    "benchmark": ("benchmark", "OVO-Bench, StreamingBench, ProactiveVideoQA: offline and online, official scoring"),
    "tables": ("tables", "reproduce the paper's ablation tables at CPU scale on the synthetic world"),
    "build-default": ("build_default", "rebuild the embedded default model from scratch"),
}
"""Command name -> (module in streamvlm.cli.commands, one-line help)."""

GROUPS = {"data": "annotation files: convert, validate, refine with an LLM, write live-chat replies"}


def command_module(name: str) -> ModuleType:
    """The module of command ``name`` (e.g. ``"data convert"``)."""
    return importlib.import_module(f"streamvlm.cli.commands.{COMMANDS[name][0]}")


def _usage(group: str | None = None) -> str:
    names = [n for n in COMMANDS if (n.split(" ")[0] == group if group else True)]
    width = max(len(n) for n in names) + 2
    head = f"usage: {PROG} {group + ' ' if group else ''}COMMAND [options]   ({PROG} COMMAND --help for its options)"
    lines = [head, ""]
    if not group:
        lines += ["Online video language models: narrate and answer over live video streams.", ""]
    lines += ["commands:"] + [f"  {n:<{width}}{COMMANDS[n][1]}" for n in names]
    if not group:
        lines += ["", "options:", "  -h, --help  show this help and exit", "  --version   print the version and exit"]
    return "\n".join(lines) + "\n"


def _write_out(text: str) -> None:
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise stdout_error(exc) from None


def _split(argv: list[str]) -> tuple[str | None, list[str]]:
    """(command name, its arguments) from the command line; None when no command is named."""
    if not argv or argv[0].startswith("-"):
        return None, argv
    if argv[0] in GROUPS:
        if len(argv) > 1 and f"{argv[0]} {argv[1]}" in COMMANDS:
            return f"{argv[0]} {argv[1]}", argv[2:]
        return argv[0], argv[1:]
    return argv[0], argv[1:]


def _dispatch(argv: list[str]) -> int:
    from .flags import UsageError, parse

    name, rest = _split(argv)
    if name is None:
        if rest[:1] == ["--version"]:
            _write_out(f"{PROG} {__version__}\n")
            return 0
        if rest and rest[0] not in ("-h", "--help"):
            raise UsageError(f"unknown option {rest[0]} (see `{PROG} --help`)")
        _write_out(_usage())
        return 0
    if name in GROUPS:
        if not rest or rest[0] in ("-h", "--help"):
            _write_out(_usage(name))
            return 0
        raise UsageError(f"unknown command '{name} {rest[0]}' (see `{PROG} {name} --help`)")
    if name not in COMMANDS:
        raise UsageError(f"unknown command '{name}' (see `{PROG} --help`)")
    module = command_module(name)
    options = parse(module.Options, rest, prog=f"{PROG} {name}", description=COMMANDS[name][1],
                    config_file=getattr(module, "CONFIG_FILE", True),
                    print_config=getattr(module, "print_config", None))
    if options is None:  # --print-config
        return 0
    return int(module.run(options) or 0)


IO_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                       errno.ENAMETOOLONG, errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EMFILE,
                       errno.ENFILE, errno.EXDEV})
"""OSError numbers the environment causes (disk, permissions, names, limits): one line and exit 2.
Others (ENOENT above all: a file our own code expected) keep their traceback."""


def _name(filename: object) -> str:
    return os.fsdecode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else str(filename)


def _io_error(exc: OSError) -> str:
    """``PATH: reason`` (``A -> B: reason`` for a rename) of a system input/output failure."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return f"input/output failed: {reason}"
    where = _name(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {_name(exc.filename2)}"
    return f"{where}: {reason}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush neither fails nor prints."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no usable file descriptor (a captured stream)
        pass


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, StreamvlmWarning):
        print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", StreamvlmWarning)
            warnings.showwarning = _show_warning
            code = _dispatch(argv)
            try:  # a full disk under stdout fails here, not in the interpreter's last flush
                sys.stdout.flush()
            except OSError as exc:
                raise stdout_error(exc) from None
            return code
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # its message, if any, says what the run kept
        print(f"{PROG}: interrupted" + (f"; {exc}" if str(exc) else ""), file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:  # stdout closed early (e.g. piped into `head`): not an error of ours
        _silence_stdout()
        return 141
    except OSError as exc:
        if exc.errno not in IO_ERRNOS:
            raise
        if exc.filename == STDOUT:
            _silence_stdout()
        else:
            try:
                sys.stdout.flush()
            except OSError:
                _silence_stdout()
        print(f"{PROG}: error: {_io_error(exc)}", file=sys.stderr, flush=True)
        return 2


def entry_point() -> None:
    """The console script: Ctrl-C while Python itself starts up also exits 130 without a traceback."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late Ctrl-C during teardown changes nothing
    if code == 130:  # interrupted: what the run keeps is written; leave now, without the interpreter's
        for stream in (sys.stdout, sys.stderr):  # teardown (threads of a half-done start, imports cut
            try:  # short), which can turn the exit into a death by SIGINT
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)
