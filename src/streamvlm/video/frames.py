"""What a video source emits: sampled frames and decode counters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One sampled frame.

    time: video time in seconds, from the frame's timestamp relative to the stream start;
        strictly increasing along a source.
    index: position among the sampled frames (0, 1, 2, ...), without gaps.
    image: uint8 RGB pixels [H, W, 3].
    """

    time: float
    index: int
    image: np.ndarray


@dataclass
class DecodeStats:
    """Counters of one source, updated while it is read.

    decoded: good frames the decoder returned (before sampling).
    sampled: frames emitted to the caller.
    skipped_corrupt: packets that failed to decode plus frames the decoder flagged corrupt;
        none of them is emitted.
    dropped: sampled frames of a live source discarded because the caller fell behind
        (the oldest waiting frame goes first); always 0 for files.
    """

    decoded: int = 0
    sampled: int = 0
    skipped_corrupt: int = 0
    dropped: int = 0

    @property
    def bad_ratio(self) -> float:
        """skipped_corrupt / (decoded + skipped_corrupt); 0 before any attempt."""
        attempts = self.decoded + self.skipped_corrupt
        return self.skipped_corrupt / attempts if attempts else 0.0
