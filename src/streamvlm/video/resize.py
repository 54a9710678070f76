"""The one resize of a frame to a model's input: the same on every path (narrate, encode, training,
serve, the live evaluation), done once, when the frame is decoded.

A :class:`FrameFit` (the frame encoder's ``image_size`` and ``vision.resize`` rule) gives the size
a frame is scaled to before the encoder pads it to a square; :class:`FrameResizer` scales decoded
frames (PyAV ``VideoFrame`` s) to it with FFmpeg's scaler (libswscale), so the frame encoder then
only pads and normalises. Rules:

* ``upstream``: VideoLLM-online's ffmpeg preprocessing (the released model's), ``-sws_flags bicubic
  -vf scale='if(gt(iw,ih),S,-2)':'if(gt(iw,ih),-2,S)',pad=S:S:(ow-iw)/2:(oh-ih)/2``: the width is
  ``S`` when the frame is wider than tall, else the height (squares included); the other side is
  ``round(S * other / long / 2) * 2`` with FFmpeg's rounding (to nearest, halves away from zero:
  434x768 gives 218 rows, not Python's 216). Scaled bicubic in the frame's own pixel format (YUV
  planes for video), as ffmpeg's scale filter does, then converted to RGB.
* ``streamvlm``: the long side ``S``, the other ``round(other * S / long)`` (Python's rounding),
  scaled bilinear straight to RGB: what streamvlm's own checkpoints were trained on.

Frames already at the fitted size are only converted to RGB. This module needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

ResizeRule = Literal["streamvlm", "upstream"]
RESIZE_RULES: tuple[str, ...] = ("streamvlm", "upstream")


def ffmpeg_round(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, halves away from zero, in integer
    arithmetic (FFmpeg's ``av_rescale`` with ``AV_ROUND_NEAR_INF``) for non-negative operands."""
    return (2 * numerator + denominator) // (2 * denominator)


def upstream_frame_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """``(new_h, new_w, top, left)`` of upstream's ffmpeg filter ``scale='if(gt(iw,ih),S,-2)':
    'if(gt(iw,ih),-2,S)',pad=S:S:(ow-iw)/2:(oh-ih)/2``: the short side keeps the aspect, rounded to
    an even number with FFmpeg's rounding (halves up); the pad offsets are rounded down to even
    (yuv420p chroma alignment)."""
    if w > h:
        new_w, new_h = size, max(2, ffmpeg_round(h * size, w * 2) * 2)
    else:
        new_h, new_w = size, max(2, ffmpeg_round(w * size, h * 2) * 2)
    new_h, new_w = min(new_h, size), min(new_w, size)
    top, left = ((size - new_h) // 2) & ~1, ((size - new_w) // 2) & ~1
    return new_h, new_w, top, left


def streamvlm_frame_geometry(h: int, w: int, size: int) -> tuple[int, int]:
    """``(new_h, new_w)`` of streamvlm's rule: the long side ``size``, the aspect kept (Python rounding)."""
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


@dataclass(frozen=True)
class FrameFit:
    """The size a model's frame encoder takes frames at (before padding them to ``size x size``).

    size: the encoder's square input side (``image_size``); rule: ``vision.resize``.
    """

    size: int
    rule: ResizeRule = "streamvlm"

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and self.size >= 1):
            raise ValueError(f"FrameFit.size must be a positive integer, got {self.size!r}")
        if self.rule not in RESIZE_RULES:
            raise ValueError(f"FrameFit.rule must be one of {', '.join(RESIZE_RULES)}, got {self.rule!r}")

    def shape(self, height: int, width: int) -> tuple[int, int]:
        """``(new_h, new_w)`` of a ``height x width`` frame."""
        if self.rule == "upstream":
            return upstream_frame_geometry(height, width, self.size)[:2]
        return streamvlm_frame_geometry(height, width, self.size)


class FrameResizer:
    """Decoded frames -> uint8 RGB ``[h, w, 3]`` at ``fit.shape`` (see the module doc). One per
    source: its reformatters keep FFmpeg's scaler contexts between frames."""

    def __init__(self, fit: FrameFit) -> None:
        self.fit = fit
        self._scale = VideoReformatter()
        self._rgb = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        new_h, new_w = self.fit.shape(frame.height, frame.width)
        if (new_h, new_w) == (frame.height, frame.width):
            return self._rgb.reformat(frame, format="rgb24").to_ndarray()
        if self.fit.rule == "upstream":  # scaled in its own pixel format (ffmpeg's scale filter), then RGB
            frame = self._scale.reformat(frame, width=new_w, height=new_h, interpolation="BICUBIC")
            return self._rgb.reformat(frame, format="rgb24").to_ndarray()
        return self._rgb.reformat(frame, width=new_w, height=new_h, format="rgb24",
                                  interpolation="BILINEAR").to_ndarray()
