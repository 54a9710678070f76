"""The docs runner: every command written in README.md and docs/*.md runs, as written, at small size.

What is extracted from each document (fenced blocks, in order):

* ```bash blocks: every command line (``\\`` continuations joined, ``#`` comments dropped, ``&&``
  chains split). ``streamvlm ...`` runs in this process through :func:`streamvlm.cli.main`, in a
  temporary working folder of the document prepared with the files it names
  (:mod:`tests.docs_fixtures`), and must exit 0 (or the code a trailing ``# exit N`` comment
  states). ``torchrun ... -m streamvlm.cli ARGS`` and ``accelerate launch ... -m streamvlm.cli
  ARGS`` run ``streamvlm ARGS`` in one process. ``export VAR=VALUE`` sets the variable for the
  document's later commands (``VAR=...``: the fixture's value, e.g. the fake server's API key);
  ``echo TEXT > FILE`` writes the file. ``pip ...`` lines are not run: they must be one of the README's two
  install commands. ``python -m pytest ...`` and ``ruff check`` are not run either (this suite is
  what they run): their paths and markers are checked.
* ```text blocks: a line ``$ streamvlm ...`` is a recorded run: it runs, and every line shown
  after it must appear in its output, in order (``...`` stands for lines left out; figures
  before ``frames/s`` and wall times are not compared); a recorded ``streamvlm: error: ...``
  line means exit code 2. Other ``streamvlm ...`` lines in any block (usage synopses, the command
  log of docs/results.md) are not run: their flags must exist (train: the overrides must resolve).
* ```python blocks: their imports must resolve. Those of :data:`SERVE_CLIENT_DOCS` run too, against
  a real ``streamvlm serve`` (the embedded default model, an ephemeral port, given for the address
  ``http://127.0.0.1:8000`` they name), in the document's working folder; they must print lines of
  text (every line a label and some words).

Commands run at small size through the rewrite table :data:`REWRITES` (fewer videos and steps,
short clips, CPU instead of a GPU); the documents themselves show the real sizes. A command that
fails names the document, the line, the command as written and as run, and its stderr.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import io
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import docs_fixtures
from .docs_fixtures import REPO, SHARED

DOCS = ["README.md"] + sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))

README_INSTALL = 'pip install torch==2.13.0 && pip install -e . && streamvlm demo'
README_TEST = 'pip install torch==2.13.0 && pip install -e ".[test]" && ruff check && python -m pytest -q'
"""The README's two commands (its first block), which .ci/run and docs/testing.md repeat."""

FIXTURES: dict[str, list[str]] = {
    "README.md": ["video.mp4", "videollm-online"],
    "docs/cli.md": ["video.mp4", "requests.jsonl"],
    "docs/data-format.md": ["my.jsonl"],
    "docs/evaluation.md": ["questions.jsonl"],
    "docs/generation.md": ["narration.json", "requests.jsonl", "hub-llm"],
    "docs/training.md": ["configs"],
    "docs/serve.md": ["frame.jpg"],
    "docs/benchmarks.md": ["benchmark-data", "ovo-results", "videollm-online", "hub-llm"],
}
"""Files each document's commands expect in its working folder (see docs_fixtures.FIXTURES)."""

OPENAI_DOCS = {"docs/generation.md"}
"""Documents whose commands talk to an OpenAI-compatible server: a fake one runs on 127.0.0.1."""

SERVE_CLIENT_DOCS = {"docs/serve.md"}
"""Documents whose python blocks are clients of ``streamvlm serve``: they run against a real server."""

EXPECTED_FAILURES: dict[tuple[str, str], str] = {
}
"""(document, text in the command) -> the src/ bug that makes it fail. The command still runs; the
test fails if it starts to pass (then remove the entry)."""


# ============================================================================ the rewrite table
def _value_index(argv: list[str], flag: str) -> int | None:
    """Index of ``flag``'s value in ``argv`` (``--flag VALUE``), or None."""
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return i + 1
    return None


def cap(flag: str, limit: float, *, default: float | None = None) -> Callable[[list[str]], list[str]]:
    """At most ``limit`` for ``flag``; added when absent and the command's default is larger."""

    def change(argv: list[str]) -> list[str]:
        i = _value_index(argv, flag)
        if i is None:
            return argv + [flag, _num(limit)] if default is not None and default > limit else argv
        if _is_number(argv[i]) and float(argv[i]) > limit:
            argv = argv[:i] + [_num(limit)] + argv[i + 1:]
        return argv

    return change


def numbers(flag: str, values: list[str]) -> Callable[[list[str]], list[str]]:
    """``FLAG A B C ...`` -> ``FLAG`` + ``values`` (the same sweep at small size); absent: unchanged."""

    def change(argv: list[str]) -> list[str]:
        if flag not in argv:
            return argv
        i = argv.index(flag) + 1
        end = i
        while end < len(argv) and _is_number(argv[end]):
            end += 1
        return argv[:i] + values + argv[end:]

    return change


def replace(flag: str, old: str | None, new: str) -> Callable[[list[str]], list[str]]:
    """``flag old`` -> ``flag new`` (any value when ``old`` is None)."""

    def change(argv: list[str]) -> list[str]:
        i = _value_index(argv, flag)
        if i is not None and (old is None or argv[i] == old):
            argv = argv[:i] + [new] + argv[i + 1:]
        return argv

    return change


def drop(flag: str, *, takes_value: bool) -> Callable[[list[str]], list[str]]:
    def change(argv: list[str]) -> list[str]:
        if flag not in argv:
            return argv
        i = argv.index(flag)
        return argv[:i] + argv[i + 1 + int(takes_value):]

    return change


def add(*extra: str) -> Callable[[list[str]], list[str]]:
    def change(argv: list[str]) -> list[str]:
        return argv if extra[0] in argv else argv + list(extra)

    return change


def override(key: str, value: str, *, cap_at: float | None = None) -> Callable[[list[str]], list[str]]:
    """``streamvlm train``: set ``key=value`` (or cap an existing numeric value at ``cap_at``)."""

    def change(argv: list[str]) -> list[str]:
        for i, arg in enumerate(argv):
            if arg.startswith(key + "="):
                old = arg.partition("=")[2]
                if cap_at is not None and _is_number(old) and float(old) <= cap_at:
                    return argv
                return argv[:i] + [f"{key}={value}"] + argv[i + 1:]
        # before any --flag: `train CONFIG --print-config key=value` is refused (argparse)
        at = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
        return argv[:at] + [f"{key}={value}"] + argv[at:]

    return change


def when(condition: Callable[[list[str]], bool], *changes: Callable[[list[str]], list[str]]
         ) -> Callable[[list[str]], list[str]]:
    def change(argv: list[str]) -> list[str]:
        if condition(argv):
            for c in changes:
                argv = c(argv)
        return argv

    return change


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_benchmark_run(argv: list[str]) -> bool:
    """``benchmark NAME ...`` runs a benchmark (not score, make-synthetic or plot)."""
    return bool(argv) and argv[0] in ("ovo-bench", "streamingbench", "proactivevideoqa")


def _is_8b_recipe(argv: list[str]) -> bool:
    """``train``'s CONFIG (its first argument) names an 8B recipe."""
    return bool(argv) and "8b" in argv[0]


@dataclasses.dataclass(frozen=True)
class Rewrite:
    command: str
    """The streamvlm command it applies to (``synth``, ``data refine``, ...)."""
    change: Callable[[list[str]], list[str]]
    """The command's arguments (after the command name) -> the arguments run."""
    why: str


REWRITES: list[Rewrite] = [
    # synth: the documented worlds have 16 to 480 one-minute videos; two 20-second ones exercise
    # the same generator, annotation writers and encoder (64 px: the size of every shipped model).
    Rewrite("synth", cap("--videos", 2), "2 videos"),
    Rewrite("synth", cap("--duration", 20, default=60), "20-second videos"),
    Rewrite("synth", cap("--size", 64, default=96), "64-pixel frames"),
    # pretrain-tower: one epoch over the (already small) world is enough to write a frame-encoder folder.
    Rewrite("pretrain-tower", cap("--epochs", 1, default=3), "1 epoch"),
    Rewrite("pretrain-tower", cap("--fresh-layouts", 16), "16 fresh layouts (2 steps)"),
    # train: two optimizer steps write the same outputs (train_config.json, metrics.jsonl, a
    # checkpoint) as 600; an 8B recipe needs GPUs and the Llama-3 weights, so its config is only
    # resolved (--print-config: every key and value validated, nothing loaded).
    Rewrite("train", when(lambda a: not _is_8b_recipe(a), override("optim.max_steps", "2", cap_at=2)),
            "optim.max_steps=2"),
    Rewrite("train", when(lambda a: not _is_8b_recipe(a), override("save_every", "0")),
            "save_every=0 (only the final checkpoint)"),
    Rewrite("train", when(_is_8b_recipe, add("--print-config")), "8B recipe: --print-config only (GPU run)"),
    # bench: 8 frames per method instead of 64-128; --preset 8b --device cuda (a GPU measurement)
    # becomes the tiny preset on the CPU, and the end-to-end pass over every sample video one clip.
    Rewrite("bench", cap("--frames", 8, default=64), "8 frames"),
    Rewrite("bench", replace("--preset", "8b", "tiny"), "--preset 8b -> tiny (GPU figure)"),
    Rewrite("bench", replace("--device", None, "cpu"), "--device cpu (GPU figure)"),
    Rewrite("bench", replace("--dtype", None, "float32"), "--dtype float32 (GPU figure)"),
    Rewrite("bench", cap("--length-frames", 2, default=16), "2 frames per stream length"),
    Rewrite("bench", numbers("--lengths", ["300", "600"]), "stream lengths 300 and 600 tokens instead of 1k-16k"),
    Rewrite("bench", when(lambda a: "--serve" in a, numbers("--sessions", ["4", "8"]), cap("--seconds", 2, default=10)),
            "--serve: 4 and 8 sessions for 2 s"),
    Rewrite("bench", replace("--videos", "../shared/data/videos", "../shared/data/videos/streammind_demo3.mp4"),
            "one 6-second sample video instead of all seven"),
    # tables: --quick is the same pipeline (synth, refine, convert, pretrain-tower, encode, train,
    # eval for every row) on 4 videos of 20 s and 3 steps; the size flags would undo it.
    Rewrite("tables", add("--quick"), "--quick"),
    Rewrite("tables", drop("--videos", takes_value=True), "no --videos (--quick size)"),
    Rewrite("tables", drop("--steps", takes_value=True), "no --steps (--quick size)"),
    # build-default: the same steps on 2 videos of 10 s, 1 tower epoch, 2 alignment and 2 training steps; and
    # --install would replace the embedded model of the checkout under test: it writes beside instead.
    Rewrite("build-default", cap("--videos", 2, default=480), "2 videos"),
    Rewrite("build-default", cap("--heldout-videos", 1, default=16), "1 held-out video"),
    Rewrite("build-default", cap("--duration", 10, default=60), "10-second videos"),
    Rewrite("build-default", cap("--max-steps", 2, default=600), "2 steps"),
    Rewrite("build-default", cap("--align-steps", 2, default=300), "2 alignment steps"),
    Rewrite("demo", cap("--clips", 2), "2 clips"),
    Rewrite("build-default", cap("--tower-epochs", 1, default=3), "1 tower epoch"),
    Rewrite("build-default", cap("--tower-layouts", 16, default=43200), "16 fresh tower layouts"),
    Rewrite("build-default", cap("--live-duration", 20, default=180), "20-second live-like streams"),
    Rewrite("build-default", when(lambda a: "--install" in a, drop("--install", takes_value=False),
                                  add("--out", "installed-model")), "--install -> --out installed-model"),
    # narrate/demo with --llm: the released-adapter stand-in has random weights and replies after
    # every frame; 4-token replies run the same loader and stream in seconds instead of ~15 s.
    Rewrite("narrate", when(lambda a: "--llm" in a, cap("--max-new-tokens", 4, default=64)),
            "--max-new-tokens 4 (random-weight adapter)"),
    # benchmark: the first 3 probes of each file run the same loaders, sessions, scoring and records as
    # all of them, without the blind baseline's second pass (tests/benchmarks runs it); the released 8B
    # on a GPU becomes the random-weight adapter stand-in on the CPU, its replies cut at 4 tokens.
    Rewrite("benchmark", when(_is_benchmark_run, cap("--limit", 3, default=float("inf"))), "the first 3 probes"),
    Rewrite("benchmark", when(_is_benchmark_run, add("--no-blind")), "no blind pass"),
    Rewrite("benchmark", replace("--device", "cuda", "cpu"), "--device cpu (GPU run)"),
    Rewrite("benchmark", replace("--dtype", "bfloat16", "float32"), "--dtype float32 (GPU run)"),
    Rewrite("benchmark", when(lambda a: "--llm" in a, cap("--max-new-tokens", 4, default=99)),
            "--max-new-tokens 4 (random-weight adapter)"),
    # demo: the default 40-second clip takes ~10 s; 8 s exercises the same path.
    Rewrite("demo", when(lambda a: "--video" not in a, cap("--duration", 8, default=40)), "8-second clip"),
]
"""Per-command rewrites, applied in order. Each says, in its comment, why the small run still
checks what the documented one does. Recorded runs (``$ streamvlm ...`` followed by its output in
a ```text block) are never rewritten: their output is compared, so they run exactly as written."""


def rewrite(name: str, argv: list[str], *, recorded: bool) -> tuple[list[str], list[str]]:
    """``argv`` (after the command name) as run, and the rewrites applied."""
    applied = []
    for r in REWRITES:
        if r.command != name or recorded:
            continue
        new = r.change(list(argv))
        if new != argv:
            applied.append(r.why)
            argv = new
    return argv, applied


def resolve_checkpoints(argv: list[str], work: Path) -> list[str]:
    """``run/checkpoint-000600`` -> the run's latest checkpoint (the runner trains 2 steps, not 600)."""
    out = []
    for arg in argv:
        m = re.search(r"(?:^|=)([^=]*checkpoint-\d{6})$", arg)
        if m and not (work / m.group(1)).exists():
            folder = (work / m.group(1)).parent
            found = sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []
            if found:
                arg = arg[: m.start(1)] + str(found[-1].relative_to(work))
        out.append(arg)
    return out


# ============================================================================ extraction
@dataclasses.dataclass
class Command:
    doc: str
    line: int
    text: str
    """The command as written (one logical line, or one part of an ``&&`` chain)."""
    kind: str
    """run, pip, pytest, ruff, env, write, flags, python"""
    argv: list[str]
    expected_output: list[str] | None = None
    expected_code: int = 0
    redirect: str | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    """Variables a listed command sets for itself (``NAME=VALUE streamvlm ...``)."""

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def _blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the first content line, lines) of each fenced block."""
    lang, start, lines = None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```(\S*)", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1), number + 1, []
        elif fence:
            yield lang, start, lines
            lang = None
        elif lang is not None:
            lines.append(line)


def _logical_lines(lines: list[str], start: int) -> Iterator[tuple[int, str]]:
    """Join ``\\``-continued lines: (line number of the first, text)."""
    buf, first = "", None
    for i, line in enumerate(lines):
        if first is None:
            first = start + i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield first, buf + line
        buf, first = "", None
    if first is not None:
        yield first, buf


def _split_chain(tokens: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for t in tokens:
        if t == "&&":
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


def _classify(doc: str, line: int, tokens: list[str], text: str) -> Command:
    exit_code = 0
    redirect = None
    if ">" in tokens:
        i = tokens.index(">")
        redirect, tokens = tokens[i + 1], tokens[:i]
    if tokens[:1] == ["taskset"] and len(tokens) > 3 and tokens[1] == "-c":  # CPU pinning of a measurement:
        tokens = tokens[3:]  # the command runs unpinned here
    head = tokens[0]
    if head == "streamvlm":
        return Command(doc, line, text, "run", tokens[1:], expected_code=exit_code, redirect=redirect)
    if head in ("torchrun", "accelerate"):
        if "-m" not in tokens or tokens[tokens.index("-m") + 1] != "streamvlm.cli":
            raise AssertionError(f"{doc}:{line}: {text}: only `-m streamvlm.cli` launches are supported")
        return Command(doc, line, text, "run", tokens[tokens.index("-m") + 2:], redirect=redirect)
    if head == "pip":
        return Command(doc, line, text, "pip", tokens)
    if head == "python" and tokens[1:3] == ["-m", "pytest"]:
        return Command(doc, line, text, "pytest", tokens[3:])
    if head == "ruff":
        return Command(doc, line, text, "ruff", tokens[1:])
    if head == "export":
        return Command(doc, line, text, "env", tokens[1:])
    if head == "echo" and redirect:
        return Command(doc, line, text, "write", tokens[1:], redirect=redirect)
    raise AssertionError(f"{doc}:{line}: the docs runner does not know how to run {text!r}")


def _shell_tokens(text: str) -> tuple[list[str], int | None]:
    """Tokens of a shell line without its comment, and the exit code a ``# exit N`` comment states."""
    code = None
    m = re.search(r"#\s*exit(?: code)? (\d+)\s*$", text)
    if m:
        code = int(m.group(1))
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer), code


def extract(doc: str) -> list[Command]:
    """Every command of ``doc``, in order."""
    text = (REPO / doc).read_text(encoding="utf-8")
    commands: list[Command] = []
    for lang, start, lines in _blocks(text):
        if lang in ("bash", "sh", "shell"):
            for number, line in _logical_lines(lines, start):
                tokens, code = _shell_tokens(line)
                if not tokens:
                    continue
                parts = _split_chain(tokens)
                for part in parts:
                    command = _classify(doc, number, part, " ".join(part) if len(parts) > 1 else line.strip())
                    if code is not None and part is parts[-1]:
                        command.expected_code = code
                    commands.append(command)
        elif lang == "python":
            commands.append(Command(doc, start, "\n".join(lines), "python", []))
        else:
            commands += _text_block(doc, start, lines)
    return commands


def _text_block(doc: str, start: int, lines: list[str]) -> list[Command]:
    """Recorded runs (``$ streamvlm ...`` + output) and listed commands of a non-shell block."""
    commands: list[Command] = []
    current: Command | None = None
    exported: dict[str, str] = {}
    for number, line in _logical_lines(lines, start):
        if (export := EXPORT.match(line)) is not None and current is None:
            exported[export["name"]] = export["value"]
        elif line.startswith("$ "):
            tokens, code = _shell_tokens(line[2:])
            current = _classify(doc, number, tokens, line[2:].strip())
            current.expected_output = []
            if code is not None:
                current.expected_code = code
            commands.append(current)
        elif current is not None:
            current.expected_output.append(line)
            if line.startswith("streamvlm: error:"):
                current.expected_code = 2
        elif (listed := LISTED.match(line)) is not None:
            env = exported | dict(item.split("=", 1) for item in listed["env"].split())
            commands.append(Command(doc, number, line.strip(), "flags", listed["args"].split(), env=env))
    return commands


LISTED = re.compile(r"^(?P<env>(?:[A-Z_][A-Z0-9_]*=\S+ )*)streamvlm (?P<args>.*)$")
"""A listed (not run) command line: ``[NAME=VALUE ...] streamvlm ARGS``."""

EXPORT = re.compile(r"^export (?P<name>[A-Z_][A-Z0-9_]*)=(?P<value>\S+)$")
"""A listed ``export NAME=VALUE`` line: the variable is set for the block's later listed commands."""


ALL = [c for doc in DOCS for c in extract(doc)]


# ============================================================================ running
@dataclasses.dataclass
class DocState:
    work: Path
    env: dict[str, str]
    server: docs_fixtures.FakeOpenAI | None
    broken: str | None = None


class DocStates:
    """One working folder (and fake server) per document, made when its first command runs."""

    def __init__(self, root: Path) -> None:
        self.root, self.states = root, {}

    def __getitem__(self, doc: str) -> DocState:
        if doc not in self.states:
            work = self.root / re.sub(r"\W", "_", doc) / "work"
            docs_fixtures.install(FIXTURES.get(doc, []), self.root / "cache", work)
            server = docs_fixtures.FakeOpenAI() if doc in OPENAI_DOCS else None
            self.states[doc] = DocState(work, docs_fixtures.environment(server), server)
        return self.states[doc]


@pytest.fixture(scope="session")
def doc_states(tmp_path_factory) -> Iterator[DocStates]:
    states = DocStates(tmp_path_factory.mktemp("docs"))
    yield states
    for state in states.states.values():
        if state.server is not None:
            state.server.close()


def _run_cli(argv: list[str]) -> tuple[int, str, str, float]:
    """``streamvlm argv`` in this process: (exit code, stdout, stderr, seconds)."""
    import torch

    from streamvlm.cli import main

    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exc:  # argparse --help
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        torch.set_num_threads(threads)  # bench/tables --threads must not slow the next command
    return code, out.getvalue(), err.getvalue(), time.monotonic() - start


_VOLATILE = [(re.compile(r"\d+(\.\d+)? frames/s"), "N frames/s"), (re.compile(r" in \d+(\.\d+)? ?s\b"), " in Ns"),
             (re.compile(r"\d+(\.\d+)?x real time"), "Nx real time")]


def _mask(line: str) -> str:
    for pattern, repl in _VOLATILE:
        line = pattern.sub(repl, line)
    return line.rstrip()


def _check_recorded(expected: list[str], actual: str) -> str | None:
    """None when every recorded line (``...`` skipped) is in ``actual``, in order; else the first missing."""
    lines = [_mask(line) for line in actual.splitlines()]
    pos = 0
    for want in expected:
        if not want.strip() or want.strip() == "...":
            continue
        want = _mask(want)
        try:
            pos = lines.index(want, pos) + 1
        except ValueError:
            return want
    return None


def _failure(cmd: Command, argv: list[str], applied: list[str], code: int, out: str, err: str, why: str) -> str:
    tail = "\n".join(err.strip().splitlines()[-25:])
    return (f"{cmd.doc}:{cmd.line}: {why}\n  as written: {cmd.text}\n  as run:     streamvlm {shlex.join(argv)}"
            f"\n  rewrites:   {', '.join(applied) or 'none'}\n  exit code:  {code}\n--- stderr (end) ---\n{tail}"
            f"\n--- stdout (end) ---\n" + "\n".join(out.strip().splitlines()[-15:]))


def run_command(cmd: Command, state: DocState) -> None:
    """Run one documented streamvlm command in ``state.work``; AssertionError says what went wrong."""
    from streamvlm.cli import _split

    argv = [a.replace("$HOME", str(state.work)) for a in cmd.argv]
    if any("../shared/" in a for a in argv) and not SHARED.is_dir():
        pytest.skip(f"shared sample videos not found at {SHARED / 'data' / 'videos'}")
    name, rest = _split(argv)
    prefix = argv[: len(argv) - len(rest)]
    rest, applied = rewrite(name or "", rest, recorded=cmd.expected_output is not None)
    if cmd.text.startswith(("torchrun", "accelerate")):
        applied.insert(0, "one process instead of a distributed launch")
    if "--base-url" in rest and state.server is not None:
        rest = replace("--base-url", None, state.server.base_url)(rest)
        applied.append("--base-url -> the local fake server")
    rest = resolve_checkpoints(rest, state.work)
    argv = prefix + rest
    code, out, err, _ = _run_cli(argv)
    if cmd.redirect:
        (state.work / cmd.redirect).write_text(out, encoding="utf-8")
    if code != cmd.expected_code:
        why = f"exit code {code}, expected {cmd.expected_code}"
        raise AssertionError(_failure(cmd, argv, applied, code, out, err, why))
    if cmd.expected_output:
        missing = _check_recorded(cmd.expected_output, out + "\n" + err)
        if missing is not None:
            raise AssertionError(_failure(cmd, argv, applied, code, out, err,
                                          f"the recorded output line {missing!r} is not in the output"))


@contextlib.contextmanager
def _inside(state: DocState) -> Iterator[None]:
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(state.work)
    os.environ.update(state.env)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


# ============================================================================ static checks
def check_pip(cmd: Command) -> None:
    chains = [README_INSTALL, README_TEST]
    allowed = {" ".join(shlex.split(part))
               for chain in chains for part in chain.split(" && ") if part.startswith("pip")}
    assert " ".join(cmd.argv) in allowed, (
        f"{cmd.id}: `{cmd.text}` is not one of the README's install commands ({' / '.join(sorted(allowed))})")


def check_pytest(cmd: Command) -> None:
    """Paths exist and markers are declared (the suite itself is not re-run from inside itself)."""
    pyproject = (REPO / "pyproject.toml").read_text()
    args = cmd.argv
    for i, arg in enumerate(args):
        option = args[i - 1] if i > 0 else ""
        if option == "-m":
            for marker in re.findall(r"[A-Za-z_]+", arg):
                if marker not in ("not", "and", "or"):
                    assert re.search(rf'"{marker}:', pyproject), (
                        f"{cmd.id}: marker {marker!r} not declared in pyproject.toml")
        elif not arg.startswith("-") and option not in ("-p", "-k", "-o", "--durations"):
            assert (REPO / arg.split("::")[0]).exists(), f"{cmd.id}: {arg}: no such test path"


def check_flags(cmd: Command) -> None:
    """A listed (not run) command: its command exists, its --flags exist; train overrides resolve."""
    from streamvlm.cli import COMMANDS, GROUPS, _split, command_module
    from streamvlm.cli.flags import build_parser

    argv = [re.sub(r"^\[|\]$|\]$", "", a) for a in cmd.argv]
    name, rest = _split(argv)
    assert name in COMMANDS and name not in GROUPS, f"{cmd.id}: `{cmd.text}`: no command {name!r}"
    module = command_module(name)
    parser, _ = build_parser(f"streamvlm {name}", "", module.Options, config_file=getattr(module, "CONFIG_FILE", True))
    known = set(parser._option_string_actions)
    for token in rest:
        flag = token.strip("[]").split("=")[0]
        if flag.startswith("--"):
            assert flag in known, f"{cmd.id}: `{cmd.text}`: streamvlm {name} has no option {flag}"
    if name == "train" and rest and not rest[0].startswith("["):
        from streamvlm.train.config import load_train_config

        load_train_config(rest[0], [a for a in rest[1:] if "=" in a and not a.startswith("-")])
    if name == "serve" and "--api-key-env" in rest:
        check_serve_key_rule(cmd, module, rest)


def check_serve_key_rule(cmd: Command, module, rest: list[str]) -> None:
    """``serve ... --api-key-env NAME``: the options are valid with a key of the code's minimum
    length in NAME (``streamvlm.serve.limits.check_access``, the one key rule) and refused one
    character short of it."""
    from streamvlm.cli.flags import parse
    from streamvlm.errors import UserError
    from streamvlm.serve.limits import MIN_KEY_CHARS

    variable = rest[rest.index("--api-key-env") + 1]
    assert variable in cmd.env, f"{cmd.id}: `{cmd.text}`: {variable} is not set on the line"
    saved = os.environ.get(variable)
    try:
        os.environ[variable] = "k" * MIN_KEY_CHARS
        parse(module.Options, rest, prog="streamvlm serve")
        os.environ[variable] = "k" * (MIN_KEY_CHARS - 1)
        with pytest.raises(UserError, match=f"at least {MIN_KEY_CHARS} characters"):
            parse(module.Options, rest, prog="streamvlm serve")
    finally:
        if saved is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved


def check_python(cmd: Command) -> None:
    """Every ``import``/``from ... import`` of the block resolves."""
    tree = ast.parse(cmd.text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), (
                    f"{cmd.id}: `from {node.module} import {alias.name}`: no such name")


def run_serve_client(cmd: Command, state: DocState) -> None:
    """Run a python block against a real server; what it prints must be lines of text."""
    from streamvlm.model.loading import ModelSource, load_model
    from streamvlm.serve.app import create_app
    from streamvlm.serve.server import BackgroundServer

    printed = io.StringIO()
    with BackgroundServer(create_app(load_model(ModelSource(device="cpu")))) as server, _inside(state):
        code = compile(cmd.text.replace("http://127.0.0.1:8000", server.url), cmd.id, "exec")
        with contextlib.redirect_stdout(printed):
            exec(code, {"__name__": "__main__"})
    lines = printed.getvalue().splitlines()
    assert lines, f"{cmd.id}: the example printed nothing"
    for line in lines:  # e.g. "0.0s assistant: ..." (not a bare event type)
        assert re.fullmatch(r"\S+ \S+: \S.*", line), f"{cmd.id}: printed {line!r}, not a label and some text"


# ============================================================================ the tests
@pytest.mark.parametrize("cmd", ALL, ids=[f"{c.id}:{c.kind}" for c in ALL])
def test_documented_command(cmd: Command, doc_states) -> None:
    if cmd.kind == "pip":
        return check_pip(cmd)
    if cmd.kind == "pytest":
        return check_pytest(cmd)
    if cmd.kind == "ruff":
        assert cmd.argv == ["check"], f"{cmd.id}: `{cmd.text}`: the documented lint command is `ruff check`"
        return None
    if cmd.kind == "python":
        check_python(cmd)
        return run_serve_client(cmd, doc_states[cmd.doc]) if cmd.doc in SERVE_CLIENT_DOCS else None
    if cmd.kind == "flags":
        return check_flags(cmd)
    state = doc_states[cmd.doc]
    if cmd.kind == "env":
        for item in cmd.argv:
            key, _, value = item.partition("=")
            if value != "...":
                state.env[key] = value
            else:  # a placeholder: the fixture's value (e.g. the fake server's key), if any
                state.env.setdefault(key, "")
        return None
    if cmd.kind == "write":  # echo TEXT > FILE
        text = " ".join(cmd.argv)
        if state.server is not None:  # a documented server address -> the local fake server (as --base-url)
            text = re.sub(r"http://127\.0\.0\.1:\d+/v1", state.server.base_url, text)
        (state.work / cmd.redirect).write_text(text + "\n", encoding="utf-8")
        return None
    if state.broken:
        pytest.skip(f"an earlier command of {cmd.doc} failed ({state.broken})")
    bug = next((why for (doc, needle), why in EXPECTED_FAILURES.items() if doc == cmd.doc and needle in cmd.text), None)
    with _inside(state):
        try:
            run_command(cmd, state)
        except AssertionError:
            if bug is None:
                state.broken = cmd.id
                raise
            pytest.xfail(f"known src bug: {bug}")
    if bug is not None:
        pytest.fail(f"{cmd.id}: expected to fail ({bug}) but passed: remove it from EXPECTED_FAILURES")
    return None


def test_every_document_has_commands() -> None:
    """A document whose commands the extractor no longer finds would pass silently."""
    counted = {doc: sum(c.doc == doc and c.kind != "python" for c in ALL) for doc in DOCS}
    assert all(counted.values()), f"documents without a command: {[d for d, n in counted.items() if not n]}"


def test_readme_starts_with_the_two_commands() -> None:
    lang, _, lines = next(_blocks((REPO / "README.md").read_text()))
    commands = [line.split("#")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert lang == "bash" and commands == [README_INSTALL, README_TEST]


def test_ci_runs_the_readme_test_command() -> None:
    script = (REPO / ".ci" / "run").read_text().splitlines()
    assert script[-1] == README_TEST, ".ci/run must end with exactly the README's test command"


def test_testing_doc_repeats_the_readme_test_command() -> None:
    assert README_TEST in (REPO / "docs" / "testing.md").read_text()


def _table_commands(doc: str) -> list[str]:
    """The ``streamvlm X`` of the first column of a document's command table."""
    found = []
    for line in (REPO / doc).read_text().splitlines():
        m = re.match(r"^\| `(?:streamvlm )?([a-z-]+(?: [a-z]+)?)[ `]", line)
        if m and line.count("|") >= 3:
            found.append(m.group(1))
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md"])
def test_command_tables_list_every_command_in_help_order(doc: str) -> None:
    from streamvlm.cli import COMMANDS

    listed = [name for name in _table_commands(doc) if name.split(" ")[0] in {c.split(" ")[0] for c in COMMANDS}]
    assert listed == list(COMMANDS), f"{doc}: command table {listed} != `streamvlm --help` order {list(COMMANDS)}"


def test_every_rewrite_is_used() -> None:
    """A rewrite no documented command needs any more is dead weight: remove it."""
    from streamvlm.cli import _split

    used = set()
    for cmd in ALL:
        if cmd.kind != "run":
            continue
        name, rest = _split(cmd.argv)
        for r in REWRITES:
            if r.command == name and cmd.expected_output is None and r.change(list(rest)) != rest:
                used.add(r.why)
    assert not [r.why for r in REWRITES if r.why not in used]


def test_training_config_reference_lists_every_key() -> None:
    """docs/training.md's config reference names exactly the keys of TrainConfig's sections."""
    import typing

    from streamvlm.train.config import TrainConfig

    dc = dataclasses
    text = (REPO / "docs" / "training.md").read_text().split("## Config reference", 1)[1]
    documented = {key for line in text.splitlines() if line.startswith("| `")
                  for key in re.findall(r"`([a-z_.]+)`", line.split("|")[1])}
    hints = typing.get_type_hints(TrainConfig)
    keys = set()
    for f in dc.fields(TrainConfig):
        if dc.is_dataclass(hints[f.name]):
            keys |= {f"{f.name}.{g.name}" for g in dc.fields(hints[f.name])}
        else:
            keys.add(f.name)
    assert documented == keys, (f"missing from the table: {sorted(keys - documented)}; "
                                f"not in TrainConfig: {sorted(documented - keys)}")


if __name__ == "__main__":  # list what would run: python -m tests.test_docs
    for c in ALL:
        print(f"{c.id:28} {c.kind:7} {c.text[:100]}", file=sys.stdout)
