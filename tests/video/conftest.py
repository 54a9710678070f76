"""Small test videos and images written with PyAV; where the shared sample videos are."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "videos"


def gray(i: int) -> int:
    """The gray level of generated frame i (frames are told apart by their brightness)."""
    return (20 + 12 * i) % 256


def write_video(path: Path, times: Sequence[float], *, codec: str = "mpeg4", width: int = 64,
                height: int = 48, rate: int = 25, options: dict[str, str] | None = None,
                container_format: str | None = None) -> Path:
    """Writes frames i at ``times[i]`` seconds (pts in a 1/1000 time base); frame i is uniform
    gray ``gray(i)``."""
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), gray(i), np.uint8),
                                               format="rgb24")
            frame.pts, frame.time_base = round(t / time_base), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# Suffix -> (encoder, pixel format) of write_image.
IMAGE_CODECS = {".png": ("png", "rgb24"), ".jpg": ("mjpeg", "yuvj420p"), ".bmp": ("bmp", "bgr24"),
                ".webp": ("libwebp", "yuv420p")}


def write_image(path: Path, level: int, size: tuple[int, int] = (8, 16), *,
                pix_fmt: str | None = None, options: dict[str, str] | None = None) -> Path:
    """Writes one uniform gray image of ``size`` (height, width); the encoder follows the suffix."""
    codec, default_pix = IMAGE_CODECS[path.suffix]
    pix = pix_fmt or default_pix
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec, rate=1, options=options or {})
        stream.height, stream.width = size
        stream.pix_fmt = pix
        frame = av.VideoFrame.from_ndarray(np.full((*size, 3), level, np.uint8), format="rgb24")
        for packet in stream.encode(frame.reformat(format=pix)):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """make_video(name, times, **write_video options) -> path under tmp_path."""

    def make(name: str, times: Sequence[float], **kwargs) -> Path:
        return write_video(tmp_path / name, times, **kwargs)

    return make


@pytest.fixture
def shared_videos() -> Path:
    if not SHARED_VIDEOS.is_dir():
        pytest.skip(f"shared sample videos not found at {SHARED_VIDEOS}")
    return SHARED_VIDEOS
