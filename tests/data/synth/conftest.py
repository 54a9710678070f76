"""A tiny synthetic world (3 videos of 10 s at 64 px), generated once per test session."""

from __future__ import annotations

import pytest

from streamvlm.data.synth import generate_world

TINY = dict(num_videos=3, seed=7, duration=10.0, size=64, fps=8.0, workers=1, progress=False)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "world"
    return generate_world(root, **TINY)
