"""Fixtures of the benchmark tests: a tiny synthetic world (two 20-second clips) and its editions,
and a way to run the CLI in this process."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these tests run thousands of tiny forwards, which thread hand-offs (and a
    shared CPU) slow down many times over."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from streamvlm.data.synth import generate_world

    out = tmp_path_factory.mktemp("bench") / "world"
    generate_world(out, 2, 5, duration=20, size=64, split="test", workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def editions(tiny_world, tmp_path_factory) -> Path:
    from streamvlm.benchmarks.synthetic import make_editions

    out = tmp_path_factory.mktemp("editions")
    make_editions(tiny_world, out)
    return out


def cli(*argv: str) -> tuple[int, str, str]:
    """``streamvlm ARGV`` in this process: (exit code, stdout, stderr)."""
    from streamvlm.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
