"""Evaluation: the paper's streaming metrics (LM-PPL, TimeDiff, Fluency, LM-correctness) and the
downstream benchmarks (COIN top-1 accuracy, Ego4D LTA edit distance)."""

from .metrics import FrameScore, TurnRecord, aggregate
from .stream_eval import EvalSample, evaluate_conversation, evaluate_dataset

__all__ = ["EvalSample", "FrameScore", "TurnRecord", "aggregate", "evaluate_conversation", "evaluate_dataset"]
