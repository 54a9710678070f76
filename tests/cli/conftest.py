"""Fixtures of the command tests: a tiny saved checkpoint, a short synthetic clip, small broken
files, and a runner of the real CLI (in-process, or as a subprocess)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamvlm.cli import main
from streamvlm.model.checkpoint import save_pretrained

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "videos"


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random tiny StreamVLM saved with ``save_pretrained`` (it speaks at almost every frame)."""
    import torch

    from streamvlm.model.presets import tiny_config, train_tokenizer
    from streamvlm.model.vlm import StreamVLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny") / "checkpoint"
    save_pretrained(StreamVLM.from_config(tiny_config(), train_tokenizer()), folder)
    return folder


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory) -> Path:
    """A 6-second 64-pixel synthetic video (h264, 8 fps)."""
    from streamvlm.data.synth import generate_world

    world = generate_world(tmp_path_factory.mktemp("clip") / "world", 1, 3, duration=6.0, size=64,
                           split="test", workers=1, progress=False)
    return world.video_path(world.videos[0].uid)


@pytest.fixture
def shared_videos() -> Path:
    if not SHARED_VIDEOS.is_dir():
        pytest.skip(f"shared sample videos not found at {SHARED_VIDEOS}")
    return SHARED_VIDEOS


@pytest.fixture
def cli(capsys):
    """cli(*argv) -> Result: runs ``streamvlm argv`` in this process."""

    def run(*argv: object) -> Result:
        capsys.readouterr()
        start = time.monotonic()
        code = main([str(a) for a in argv])
        seconds = time.monotonic() - start
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err, seconds)

    return run


def run_subprocess(*argv: object, timeout: float = 60.0) -> Result:
    """``python -m streamvlm.cli argv`` in a child process (a hang fails the test at ``timeout``)."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streamvlm.cli", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
