"""Evaluating a model on a conversation JSONL and its frame features: the ``eval`` pipeline step.

:func:`evaluate_file` reads the gold conversations (lines with a ``task`` are downstream
questions), checks them all before any scoring, scores the streaming metrics (LM-PPL, TimeDiff,
Fluency, LM-correctness) and, when asked, the COIN / Ego4D LTA questions, and returns one dict.
A metric that comes out NaN or infinite is an error (non-finite features or weights), not a score.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ..errors import DataError, UserError
from ..inference.config import DEFAULT_THRESHOLD
from ..settings import PositiveInt, Probability, settings


@settings
class EvalSettings:
    """How a model is evaluated."""

    threshold: Probability = DEFAULT_THRESHOLD
    """theta: the interval token is zeroed below this probability (0: plain argmax, as upstream's
    evaluation)."""
    limit: PositiveInt | None = None
    """Evaluate only the first N lines."""
    downstream: bool = False
    """Also score the COIN / Ego4D LTA questions (generation)."""
    lta_beams: Annotated[int, Field(ge=1, le=64)] = 5
    """K: sequences generated per LTA question."""
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] | None = None
    """Cap on a generated answer's length (default: 200 for COIN, 512 for LTA, as upstream)."""


def evaluate_file(model, data: str | Path, features: str | Path, settings: EvalSettings | None = None, *,
                  progress: bool = True) -> dict[str, Any]:
    """Metrics of ``model`` on the conversations of ``data`` with the frame tokens in ``features``."""
    from .data import read_eval_jsonl

    return evaluate_records(model, read_eval_jsonl(data), data, features, settings, progress=progress)


def evaluate_records(model, records: list, data: str | Path, features: str | Path,
                     settings: EvalSettings | None = None, *, progress: bool = True) -> dict[str, Any]:
    """:func:`evaluate_file` on records already read from ``data`` (``read_eval_jsonl``), so that a
    malformed file fails before the model is loaded."""
    from .data import FeatureReader
    from .downstream import evaluate_downstream
    from .stream_eval import evaluate_dataset

    opt = settings or EvalSettings()
    items = records[: opt.limit]
    stream_items = [i for i in items if i.task is None]
    task_items = [i for i in items if i.task is not None]
    if not stream_items and not (opt.downstream and task_items):
        raise UserError(f"{data}: nothing to evaluate (no conversation lines"
                        f"{'' if opt.downstream else '; downstream lines need --downstream'})")
    reader = FeatureReader(features, model.config.tokens_per_frame, model.config.vision_hidden_size)
    for item in items:  # every feature file present and consistent before any scoring
        reader.check(item.record)
    result: dict[str, Any] = {"threshold": opt.threshold}
    result.update(evaluate_dataset(model, (reader.stream_sample(i) for i in stream_items), opt.threshold,
                                   progress=progress, total=len(stream_items)))
    if opt.downstream:
        verbs = {v for i in task_items for v in i.future_verbs}
        caps = {} if opt.max_new_tokens is None else {"coin_max_new_tokens": opt.max_new_tokens,
                                                      "lta_max_new_tokens": opt.max_new_tokens}
        result.update(evaluate_downstream(model, (reader.downstream_sample(i) for i in task_items), lta_verbs=verbs,
                                          lta_beams=opt.lta_beams, **caps, progress=progress, total=len(task_items)))
    else:
        result["skipped_downstream"] = len(task_items)
    bad = [k for k, v in result.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise DataError(f"evaluation gave {bad[0]} = {result[bad[0]]} (non-finite model outputs: check the features "
                        "and the checkpoint)", file=str(data))
    return result
