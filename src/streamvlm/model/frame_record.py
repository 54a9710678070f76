"""How frame tokens were made (:class:`FrameRecord`): written into every feature file
(:mod:`streamvlm.data.features`) by the frame encoder that made them, and compared with how a
model takes frames (:meth:`streamvlm.model.vlm.StreamVLM.frame_record`) before features are used."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import DataError

WEIGHT_TOLERANCE = 1e-2
"""Relative tolerance on the sampled encoder weights: the same tower in float32, bfloat16 or
float16 agrees (bfloat16 rounds at 0.4%); another tower differs in every weight."""


def _digest(values: tuple[float, ...]) -> str:
    """A short name for a weight sample (for messages; comparisons use the tolerance)."""
    import hashlib

    return hashlib.sha256(" ".join(f"{v:.2g}" for v in values).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class FrameRecord:
    """How frame tokens were made: the frame fit (``resize`` rule, ``image_size``), the pixel
    normalisation and the frame encoder (its tower type and a sample of its weights). Fields left
    None are unknown (a model loaded without its tower knows only the first two) and not compared."""

    resize: str
    image_size: int | None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    tower: str | None = None
    weights: tuple[float, ...] | None = None
    """A fixed sample of the tower's weights (see ``FrameEncoder.frame_record``)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, file: str) -> FrameRecord:
        try:
            value = json.loads(text)
            record = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
            numbers = [*(record.mean or ()), *(record.std or ()), *(record.weights or ())]
            if not isinstance(record.resize, str) or not all(isinstance(x, (int, float)) for x in numbers):
                raise TypeError("wrong types")
        except (ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"not a frame record ({exc})", file=file, field="frames") from None
        return record

    def differs(self, other: FrameRecord) -> bool:
        """Whether the two were made differently, on every field both know."""
        def known(a: Any, b: Any) -> bool:
            return a is not None and b is not None

        if self.resize != other.resize or (known(self.image_size, other.image_size)
                                           and self.image_size != other.image_size):
            return True
        if known(self.tower, other.tower) and self.tower != other.tower:
            return True
        for a, b, tol in ((self.mean, other.mean, 1e-6), (self.std, other.std, 1e-6),
                          (self.weights, other.weights, WEIGHT_TOLERANCE)):
            if known(a, b) and (len(a) != len(b) or any(abs(x - y) > tol * max(abs(x), abs(y), 1e-6)
                                                        for x, y in zip(a, b))):
                return True
        return False

    def describe(self) -> str:
        """One line: ``upstream resize to 384 px, mean 0.5/0.5/0.5, std ..., siglip_vision_model #1a2b3c``."""
        parts = [f"{self.resize} resize to {self.image_size if self.image_size is not None else '?'} px"]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None:
                parts.append(f"{name} " + "/".join(f"{v:.4g}" for v in values))
        if self.tower is not None:
            weights = "" if self.weights is None else " #" + _digest(self.weights)
            parts.append(f"tower {self.tower}{weights}")
        return ", ".join(parts)
