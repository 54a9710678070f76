"""The encoded videos of a world are a pure function of its arguments: the same bytes whatever the
process did before. (x264's AVX-512 code used to read uninitialised heap memory, so a world
generated after other work, e.g. decoding videos, could come out with different bytes and frames.)"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager

import av
import pytest

from streamvlm.data.synth import LiveOptions, generate_world

from .conftest import TINY

M_PERTURB = -6  # glibc mallopt(): fill what malloc hands out with ~byte, and freed memory with byte


def _mallopt():
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return None


@contextmanager
def _heap_garbage(byte: int):
    """Within the block, memory from malloc holds garbage (``~byte``) until written, as memory that
    earlier work in the process freed does, but the same garbage on every run."""
    mallopt = _mallopt()
    if mallopt is None or not mallopt(M_PERTURB, byte):
        pytest.skip("needs glibc's mallopt(M_PERTURB)")
    try:
        yield
    finally:
        mallopt(M_PERTURB, 0)


def _videos(world) -> list[bytes]:
    return [world.video_path(v.uid).read_bytes() for v in world.videos]


@pytest.mark.parametrize("byte", [0x01, 0xAA])  # garbage read as float32: -1.7e38, 1.5e13
def test_videos_do_not_depend_on_heap_garbage(tmp_path, byte):
    expected = _videos(generate_world(tmp_path / "clean", **TINY))
    with _heap_garbage(byte):
        again = generate_world(tmp_path / "garbage", **TINY)
    assert _videos(again) == expected


def test_videos_do_not_depend_on_what_ran_before(tmp_path):
    """The situation of the original report (rarely caught on its own: the tests above are the
    reliable ones)."""
    first = generate_world(tmp_path / "first", **TINY)
    for v in first.videos:  # other work, as in a test session: decoding, generating a stream world
        with av.open(str(first.video_path(v.uid))) as c:
            assert sum(1 for _ in c.decode(video=0)) == v.num_frames
    generate_world(tmp_path / "streams", 1, 5, duration=60.0, size=64, fps=2.0, workers=1, progress=False,
                   live=LiveOptions(live_fraction=1.0, idle_max=20.0))
    assert _videos(generate_world(tmp_path / "again", **TINY)) == _videos(first)
