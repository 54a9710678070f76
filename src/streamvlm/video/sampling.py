"""Timestamp-grid sampling: for each target time k / fps (k = 0, 1, ...) keep the first frame
whose timestamp is at or after it. Times come from the frames themselves, never from a declared
frame count or frame rate, so variable frame rate, a declared fps of 0 and unknown frame counts
need no special case."""

from __future__ import annotations

import math

# Timestamps are rationals turned into floats; a frame this close below a target counts as on it.
_EPS = 1e-6


class TimestampSampler:
    """Decides frame by frame, in decoding order, which frames to emit.

    Frames whose time does not increase (timestamps going backwards or repeating) are dropped.
    Frames without a timestamp get the previous frame's time plus ``fallback_step`` seconds
    (the first such frame at the origin gets 0). When the stream jumps over several targets, the
    frame after the gap is emitted once and the targets it passed are skipped, so emitted times
    strictly increase.
    """

    def __init__(self, fps: float, fallback_step: float) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        if not (math.isfinite(fallback_step) and fallback_step > 0):
            raise ValueError(f"fallback_step must be positive, got {fallback_step}")
        self.fps = fps
        self.fallback_step = fallback_step
        self._next_target = 0  # k of the next target time k / fps
        self._last_time: float | None = None  # time of the last frame kept in the timeline

    def offer(self, time: float | None) -> float | None:
        """Returns the frame's time (seconds) if the frame is to be emitted, else None."""
        if time is None or not math.isfinite(time):
            time = 0.0 if self._last_time is None else self._last_time + self.fallback_step
        if self._last_time is not None and time <= self._last_time:
            return None
        self._last_time = time
        if time < self._next_target / self.fps - _EPS:
            return None
        self._next_target = math.floor(time * self.fps + _EPS) + 1
        return time
