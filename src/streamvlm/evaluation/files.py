"""Evaluating a model on a conversation JSONL and its frame features: the ``eval`` pipeline step.

:func:`evaluate_file` reads the gold conversations (lines with a ``task`` are downstream
questions), checks them all before any scoring, scores the streaming metrics (LM-PPL, TimeDiff,
Fluency, LM-correctness) and, when asked, the COIN / Ego4D LTA questions, and returns one dict.
A metric that comes out NaN or infinite is an error (non-finite features or weights), not a score.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from ..engine.options import DEFAULT_THRESHOLD
from ..errors import DataError, UserError
from ..settings import PositiveInt, Probability, settings
from .metrics import MissingMetric, TimedTurns

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM

Rules = Literal["streamvlm", "upstream"]

RULES: dict[str, dict[str, Any]] = {
    "streamvlm": {"threshold": DEFAULT_THRESHOLD, "timing": "reply_frame", "missing_metric": "skip"},
    "upstream": {"threshold": 0.0, "timing": "learned_frames", "missing_metric": "neutral"},
}
"""What each set of evaluation rules sets (see ``docs/upstream.md``)."""


def resolve_rules(settings: EvalSettings, model_config=None) -> dict[str, Any]:
    """The rules in force: ``rules`` (or the model's own), then each field set explicitly."""
    name = settings.rules
    if name is None:
        name = "upstream" if getattr(model_config, "last_frame_label", None) == "next_token" else "streamvlm"
    out: dict[str, Any] = {"rules": name, **RULES[name]}
    for key in RULES[name]:
        if getattr(settings, key) is not None:
            out[key] = getattr(settings, key)
    return out


@settings
class EvalSettings:
    """How a model is evaluated."""

    rules: Rules | None = None
    """Evaluation rules, each overridable below. ``upstream`` (numbers comparable with the paper):
    threshold 0, every turn with a learned frame timed, a conversation lacking a metric counted as
    LM-PPL 1 / TimeDiff 0 / Fluency 1 / LM-correctness 1. ``streamvlm``: threshold 0.725, only turns
    whose reply follows their last learned frame timed, such conversations left out. Default: the
    model's own (``upstream`` for a model trained with upstream's labels, last_frame_label
    next_token: the released adapter and the live1 recipes; ``streamvlm`` otherwise)."""
    threshold: Probability | None = None
    """theta: the interval token is zeroed below this probability (0: plain argmax, as upstream's
    evaluation). Default: the rules' (upstream 0, streamvlm 0.725)."""
    timing: TimedTurns | None = None
    """Turns that get TimeDiff and Fluency: ``reply_frame`` (streamvlm) those whose reply directly
    follows their last learned frame; ``learned_frames`` (upstream) every turn with a learned frame
    decision, a reply to a user query included. Default: the rules'."""
    missing_metric: MissingMetric | None = None
    """A conversation with no turn for a metric: ``skip`` (streamvlm) leaves it out of that metric's
    mean; ``neutral`` (upstream) counts it as LM-PPL 1, TimeDiff 0, Fluency 1, LM-correctness 1.
    Default: the rules'."""
    limit: PositiveInt | None = None
    """Evaluate only the first N lines."""
    downstream: bool = False
    """Also score the COIN / Ego4D LTA questions (generation)."""
    lta_beams: Annotated[int, Field(ge=1, le=64)] = 5
    """K: sequences generated per LTA question."""
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] | None = None
    """Cap on a generated answer's length (default: 200 for COIN, 512 for LTA, as upstream)."""


def evaluate_file(model: StreamVLM, data: str | Path, features: str | Path, settings: EvalSettings | None = None, *,
                  progress: bool = True) -> dict[str, Any]:
    """Metrics of ``model`` on the conversations of ``data`` with the frame tokens in ``features``."""
    from .data import read_eval_jsonl

    return evaluate_records(model, read_eval_jsonl(data), data, features, settings, progress=progress)


def evaluate_records(model: StreamVLM, records: list, data: str | Path, features: str | Path,
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

    reader = FeatureReader(features, model.config.tokens_per_frame, model.config.vision_hidden_size,
                           frames=model.frame_record())
    for item in items:  # every feature file present and consistent before any scoring
        reader.check(item.record)
    rules = resolve_rules(opt, model.config)
    result: dict[str, Any] = dict(rules)
    result.update(evaluate_dataset(model, (reader.stream_sample(i) for i in stream_items), rules["threshold"],
                                   progress=progress, total=len(stream_items), timed_turns=rules["timing"],
                                   missing_metric=rules["missing_metric"]))
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
