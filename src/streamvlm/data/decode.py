"""Sampling a video file at a target frame rate by timestamp, with PyAV.

Output frame ``n`` is the first decoded frame whose time is ``>= n / fps`` (a frame is repeated
when the source is slower than ``fps``). Packets that fail to decode are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import VideoError

TIME_EPS = 1e-3


@dataclass
class DecodeStats:
    frames: int = 0
    broken_packets: int = 0


def sample_frames(path: str | Path, fps: float, max_side: int | None = None,
                  stats: DecodeStats | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 RGB frames ``[H, W, 3]`` at ``fps`` (long side shrunk to ``max_side``)."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    stats = stats if stats is not None else DecodeStats()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot open video ({exc})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        base = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        index = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
                frames = packet.decode()
            except StopIteration:
                break
            except av.error.FFmpegError:
                stats.broken_packets += 1
                continue
            for frame in frames:
                if frame.time is None:
                    continue
                time = float(frame.time) - base
                if time + TIME_EPS < index / fps:
                    continue
                image = _resize(frame, max_side).to_ndarray(format="rgb24")
                while index / fps <= time + TIME_EPS:
                    stats.frames += 1
                    yield image
                    index += 1


def _resize(frame: av.VideoFrame, max_side: int | None) -> av.VideoFrame:
    if max_side is None or max(frame.width, frame.height) <= max_side:
        return frame
    scale = max_side / max(frame.width, frame.height)
    return frame.reformat(width=max(1, round(frame.width * scale)), height=max(1, round(frame.height * scale)))
