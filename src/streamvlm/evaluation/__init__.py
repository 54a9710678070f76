"""Evaluation: the paper's streaming metrics (LM-PPL, TimeDiff, Fluency, LM-correctness) and the
downstream benchmarks (COIN top-1 accuracy, Ego4D LTA edit distance). Names load lazily."""

from __future__ import annotations

from ..lazy import lazy_getattr

_EXPORTS = {
    "FrameScore": "metrics", "TurnRecord": "metrics", "aggregate": "metrics",
    "EvalSample": "stream_eval", "evaluate_conversation": "stream_eval", "evaluate_dataset": "stream_eval",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
