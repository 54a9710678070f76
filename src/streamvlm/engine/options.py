"""Settings of streaming inference: how decisions are taken and replies decoded, how the KV
cache is bounded, how a source is streamed, and timed user queries. Torch-free (the CLI reads it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from ..settings import Arg, Fps, Probability, settings

DEFAULT_THRESHOLD = 0.725
"""theta of the upstream demo: the interval token is suppressed when its probability is below it."""
MIN_KV_BUDGET = 256
"""The smallest bounded KV cache accepted (tokens)."""


@settings
class GenerationConfig:
    """How decisions are taken and replies decoded."""

    threshold: Probability = DEFAULT_THRESHOLD
    """theta: after each frame, if P(interval token) is below theta the interval token is suppressed
    and the model speaks. A higher theta makes the model speak more often, a lower one less; 0 is
    the plain argmax decision."""
    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] | None = None
    """Most reply tokens (eos excluded); a reply cut there still ends with eos. Default: the model's
    own cap (reply_cap: 64 for streamvlm's models, 99 for the released VideoLLM-online model)."""
    do_sample: bool = False
    """Sample replies (temperature, top-p) instead of greedy decoding."""
    temperature: Annotated[float, Field(gt=0, le=100)] = 1.0
    """Sampling temperature."""
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    repetition_penalty: Annotated[float, Field(gt=0, le=100)] = 1.0
    """> 1 lowers the logits of tokens already in the current reply (as in CTRL / HF)."""
    guard: bool = False
    """A safety net on replies: never a token that spells the stream layout (the brackets, a
    newline, the User/Assistant openers, as the model's tokenizer writes them), nor one that would
    repeat a span of 3 tokens the reply already holds."""
    seed: Annotated[Annotated[int, Field(ge=0, lt=2**64)] | None, Arg(flag="--sample-seed")] = None
    """Seed of each session's sampling generator, 0 to 2**64 - 1 (torch's range; none: not
    reproducible)."""


def _check_budget(value: int) -> int:
    if value and value < MIN_KV_BUDGET:
        raise ValueError(f"must be 0 (unbounded) or at least {MIN_KV_BUDGET} tokens, got {value}")
    return value


KVBudget = Annotated[int, Field(ge=0, le=10_000_000), AfterValidator(_check_budget)]


@settings
class StreamOptions:
    """How a source is streamed through the model."""

    fps: Fps | None = None
    """Frames per second to sample (default: the model's own)."""
    kv_budget: KVBudget | None = None
    """KV cache tokens a stream keeps: the session start (attention sink) + the most recent window,
    positions re-rotated. Default: the model's own budget (its stream_kv_budget, else its context);
    0 = unbounded (the stream may run past the context the model was trained on)."""
    realtime: bool = False
    """Pace by the wall clock (a file plays like a camera); frames are dropped when the model falls behind."""


@dataclass(frozen=True)
class TimedQuery:
    """A user query asked at video time ``time`` (inserted at the next frame boundary)."""

    time: float
    text: str


def parse_query(text: str | dict | TimedQuery) -> TimedQuery:
    """``"SECONDS:text"`` (or ``{"time": SECONDS, "text": TEXT}``) -> TimedQuery; ValueError otherwise."""
    if isinstance(text, TimedQuery):
        return text
    if isinstance(text, dict) and set(text) == {"time", "text"}:
        text = f"{text['time']}:{text['text']}"
    seconds, sep, question = str(text).partition(":")
    try:
        when = float(seconds)
    except ValueError:
        when = math.nan
    if not sep or not question.strip() or not math.isfinite(when) or when < 0:
        raise ValueError(f"expected SECONDS:TEXT with SECONDS >= 0 (e.g. '12.5:What am I doing?'), got {text!r}")
    return TimedQuery(when, question.strip())


QueryText = Annotated[TimedQuery, BeforeValidator(parse_query), Arg(metavar="SECONDS:TEXT")]
"""A ``SECONDS:TEXT`` query on the command line, a TimedQuery once validated."""

__all__ = ["DEFAULT_THRESHOLD", "GenerationConfig", "KVBudget", "MIN_KV_BUDGET", "QueryText",
           "StreamOptions", "TimedQuery", "parse_query"]
