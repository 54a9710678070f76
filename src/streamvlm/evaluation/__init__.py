"""Evaluation: the paper's streaming metrics (LM-PPL, TimeDiff, Fluency, LM-correctness) and the
downstream benchmarks (COIN top-1 accuracy, Ego4D LTA edit distance). Names load lazily."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FrameScore": "metrics", "TurnRecord": "metrics", "aggregate": "metrics",
    "EvalSample": "stream_eval", "evaluate_conversation": "stream_eval", "evaluate_dataset": "stream_eval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
