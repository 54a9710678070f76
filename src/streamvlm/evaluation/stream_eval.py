"""Streaming evaluation of a model on gold conversations: LM-PPL, TimeDiff, Fluency, LM-correctness.

Per conversation (batch size 1): one teacher-forced forward over the whole rendered conversation
gives every reply's token losses and greedy correctness and every learned frame decision. A turn
the model stayed silent over needs one more forward: the KV cache is cut right after the turn's
gold response frame (the gold reply removed) and the following frames are fed, joined by the
interval token as in the stream layout. The metric logic itself lives in
:mod:`streamvlm.evaluation.metrics`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm import tqdm
from transformers import Cache

from ..model.conversation import RenderedConversation, Turn, TurnSpan
from ..model.decision import FrameScore, frame_scores
from .metrics import (
    MissingMetric,
    TimedTurns,
    TurnRecord,
    aggregate,
    correct_prefix,
    frames_to_feed,
    in_turn_diff,
    late_diff,
)

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM


@dataclass
class EvalSample:
    """One evaluation conversation: its turns, its frames (frame tokens ``[N, T, D_vision]`` or
    pixels ``[N, 3, S, S]``, one per frame of the conversation) and its frame rate."""

    turns: Sequence[Turn]
    frames: Tensor | None
    fps: float
    key: str = ""


@dataclass
class _Segment:
    """The part of a conversation that one assistant turn closes: the frames since the previous
    assistant turn, their learned decisions, and the reply."""

    reply: TurnSpan
    num_frames: int = 0
    decisions: list = field(default_factory=list)


def _segments(rendered: RenderedConversation) -> list[_Segment]:
    """Split the spans at assistant turns; frames after the last reply belong to no segment."""
    segments: list[_Segment] = []
    frames, decisions = 0, []
    for span in rendered.spans:
        if span.role == "stream":
            frames += len(span.decisions)
            decisions += [d for d in span.decisions if d.learned]
        elif span.role == "assistant":
            segments.append(_Segment(span, frames, decisions))
            frames, decisions = 0, []
    return segments


def frame_kwargs(frames: Tensor | None) -> dict[str, Tensor]:
    """The model's keyword for ``frames``: features ``[N, T, D]`` or pixels ``[N, 3, S, S]``."""
    if frames is None or frames.shape[0] == 0:
        return {}
    return {"frame_tokens": frames} if frames.dim() == 3 else {"pixel_values": frames}


def _prefix_cache(cache: Cache, length: int) -> Cache:
    """A cache holding the first ``length`` positions of ``cache``, sharing its tensors (cropping
    and appending rebind the copy's tensors, so ``cache`` itself is left intact)."""
    clone = copy.copy(cache)
    clone.layers = [copy.copy(layer) for layer in cache.layers]
    clone.crop(length - cache.get_seq_length())
    return clone


def _following_scores(model: StreamVLM, cache: Cache, prefix_length: int, frames: Tensor) -> list[FrameScore]:
    """Feed ``frames [n, ...]`` after the first ``prefix_length`` cached positions, each frame
    opened by the interval token (when the layout has one), and score each frame's decision."""
    ids = model.token_ids
    piece = ([ids.interval_id] if ids.interval_id is not None else []) + [ids.frame_id] * model.config.tokens_per_frame
    n = frames.shape[0]
    input_ids = torch.tensor([piece * n], dtype=torch.long, device=model.device)
    out = model(input_ids=input_ids, cache=_prefix_cache(cache, prefix_length), use_cache=True,
                **frame_kwargs(frames))
    ends = torch.arange(1, n + 1, device=input_ids.device) * len(piece) - 1
    return frame_scores(out.logits[0, ends], ids.silence_id)


def evaluate_conversation(model: StreamVLM, turns: Sequence[Turn], frames: Tensor | None, threshold: float,
                          fps: float, timed_turns: TimedTurns = "reply_frame") -> list[TurnRecord]:
    """Evaluate one gold conversation; one :class:`TurnRecord` per assistant turn.

    ``model`` is a :class:`~streamvlm.model.vlm.StreamVLM` (or an object with its ``renderer``,
    ``token_ids``, ``config``, ``device`` and ``forward``). ``frames`` holds one entry per frame
    of the conversation. ``threshold`` is theta on P(interval). ``timed_turns``: which turns get
    TimeDiff and Fluency: ``reply_frame`` those whose last learned frame is the one the reply
    directly follows; ``learned_frames`` (upstream) every turn with a learned frame decision, its
    last one taken as the gold frame (a reply to a user query included).
    """
    rendered = model.renderer.render(turns)
    given = 0 if frames is None else frames.shape[0]
    if given != rendered.num_frames:
        raise ValueError(f"the conversation has {rendered.num_frames} frames but {given} were given")
    silence_id = model.token_ids.silence_id
    with torch.inference_mode():
        input_ids = torch.tensor([rendered.input_ids], dtype=torch.long, device=model.device)
        out = model(input_ids=input_ids, use_cache=True, **frame_kwargs(frames))
        logits, cache = out.logits[0], out.cache
        labels = torch.tensor(rendered.labels, device=logits.device)
        segments = _segments(rendered)
        records = []
        for r, seg in enumerate(segments):
            record = TurnRecord(turn=seg.reply.index, fps=fps)
            targets = seg.reply.target_positions
            if targets:
                pos = torch.tensor(targets, device=logits.device)
                rows, gold = logits[pos].float(), labels[pos]
                losses = torch.nn.functional.cross_entropy(rows, gold, reduction="none")
                record.reply_tokens = len(targets)
                record.lm_loss = float(losses.mean())
                record.correct_tokens = correct_prefix((rows.argmax(-1) == gold).tolist())
            timed = seg.decisions and (seg.decisions[-1].speaks or timed_turns == "learned_frames")
            gold_frame = seg.decisions[-1] if timed else None
            if gold_frame is not None:
                scores = frame_scores(logits[[d.position for d in seg.decisions]], silence_id)
                record.decisions = len(scores)
                diff = in_turn_diff(scores, threshold)
                if diff is None:
                    nxt = segments[r + 1].num_frames if r + 1 < len(segments) else None
                    n = min(frames_to_feed(seg.num_frames, nxt), given - gold_frame.frame - 1)
                    following = []
                    if n > 0:
                        start = gold_frame.frame + 1
                        following = _following_scores(model, cache, gold_frame.position + 1, frames[start:start + n])
                    record.frames_fed = len(following)
                    diff = late_diff(following, threshold)
                record.frame_diff = diff
            records.append(record)
    return records


def evaluate_dataset(model: StreamVLM, samples: Iterable[EvalSample], threshold: float, *, progress: bool = False,
                     total: int | None = None, evaluate=None, timed_turns: TimedTurns = "reply_frame",
                     missing_metric: MissingMetric = "skip") -> dict[str, float | int | None]:
    """Evaluate every conversation and aggregate (see :func:`~streamvlm.evaluation.metrics.aggregate`):
    keys ``lm_ppl``, ``time_diff`` (seconds), ``fluency``, ``lm_correctness`` and counts.
    ``evaluate`` replaces :func:`evaluate_conversation` (its first five arguments), e.g. for another
    layout; ``timed_turns`` goes to :func:`evaluate_conversation`, ``missing_metric`` to ``aggregate``."""
    evaluate = evaluate or functools.partial(evaluate_conversation, timed_turns=timed_turns)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        results = [
            evaluate(model, s.turns, s.frames, threshold, s.fps)
            for s in tqdm(samples, total=total, desc="stream eval", unit="conv", disable=not progress)
        ]
    finally:
        model.train(was_training)
    return aggregate(results, missing_metric)
