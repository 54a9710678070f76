"""The streaming metrics for a model trained with the per-frame dialogue layout.

A per-frame model (``data.method = per_frame``) sees every frame followed by an assistant turn:
``...<v>x T]\\nAssistant: {reply}<eos>\\n[<v>x T]\\nAssistant: <eos>...``. Its decision after a
frame is the first token of that reply: the token of an *empty* reply means silence, any other
token means it speaks. The numbers are the same as :mod:`streamvlm.evaluation.stream_eval`'s for
a streaming model, with P(interval) replaced by P(empty reply) at the reply's first position:

* LM-PPL / LM-correctness on the gold replies (teacher-forced, the same target tokens);
* TimeDiff / Fluency from the gold conversation's learned frame decisions; a turn the model stays
  silent over is continued by a second forward in which the gold reply is replaced by an empty one
  and the following frames come as per-frame turns.

The metric logic is :mod:`streamvlm.evaluation.metrics`'s; only the decision scores differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..evaluation.metrics import (
    TurnRecord,
    correct_prefix,
    frames_to_feed,
    in_turn_diff,
    late_diff,
)
from ..evaluation.stream_eval import EvalSample, evaluate_dataset
from ..model.conversation import RenderedConversation, Turn
from ..model.decision import FrameScore, frame_scores
from ..train.transforms import per_frame

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM


def silence_token(model: StreamVLM) -> int:
    """The first token of an empty reply (the content prefix, or eos when there is none)."""
    return (model.renderer.encode_content("") + [model.token_ids.eos_id])[0]


def decision_positions(rendered: RenderedConversation) -> list[int]:
    """``[num_frames]``: per frame, the position whose logits predict the first token of the reply
    that follows it (in the per-frame layout every frame is followed by an assistant turn)."""
    positions: list[int] = []
    waiting = 0
    for span in rendered.spans:
        if span.role == "stream":
            waiting += len(span.decisions)
        elif span.role == "assistant" and waiting:
            positions += [span.reply_start - 1] * waiting
            waiting = 0
    if waiting:
        raise ValueError("a frame of the per-frame layout is not followed by a reply")
    return positions


def forward_logits(model: StreamVLM, rendered: RenderedConversation, frames: Tensor | None) -> Tensor:
    """Logits ``[L, V]`` of one rendered conversation; ``frames [N, T, D]`` (or pixels ``[N, 3, S, S]``)."""
    ids = torch.tensor([rendered.input_ids], dtype=torch.long, device=model.device)
    kwargs = {}
    if frames is not None and frames.shape[0]:
        kwargs = {"frame_tokens": frames} if frames.dim() == 3 else {"pixel_values": frames}
    return model(input_ids=ids, **kwargs).logits[0]


def _scores(logits: Tensor, positions: Sequence[int], silent_id: int) -> list[FrameScore]:
    return frame_scores(logits[list(positions)], silent_id)


def _silent_continuation(turns: Sequence[Turn], reply_index: int, frames: int) -> list[Turn]:
    """Per-frame turns up to (not including) the reply at ``reply_index``, the reply replaced by
    silence, then ``frames`` more one-frame streams each answered by silence."""
    out = list(turns[:reply_index]) + [Turn("assistant", "")]
    for _ in range(frames):
        out += [Turn("stream", num_frames=1), Turn("assistant", "")]
    return out


def evaluate_per_frame_conversation(model: StreamVLM, turns: Sequence[Turn], frames: Tensor | None, threshold: float,
                                    fps: float) -> list[TurnRecord]:
    """Evaluate one gold conversation (written in the streaming layout) on a per-frame model; one
    :class:`TurnRecord` per assistant turn. ``threshold`` is theta on P(empty reply)."""
    gold = model.renderer.render(turns)
    given = 0 if frames is None else frames.shape[0]
    if given != gold.num_frames:
        raise ValueError(f"the conversation has {gold.num_frames} frames but {given} were given")
    layout = per_frame(turns)
    # The gold replies are the per-frame layout's own Turn objects (the transform keeps non-stream
    # turns as they are and adds new ones for the empty replies).
    gold_replies = {id(t) for t in turns if t.role == "assistant"}
    rendered = model.renderer.render(layout)
    reply_spans = [s for s in rendered.spans if id(layout[s.index]) in gold_replies]
    decision_at = decision_positions(rendered)
    silent_id = silence_token(model)
    records: list[TurnRecord] = []
    with torch.inference_mode():
        logits = forward_logits(model, rendered, frames)
        labels = torch.tensor(rendered.labels, device=logits.device)
        segments, frames_since, decisions = [], 0, []
        for span in gold.spans:
            if span.role == "stream":
                frames_since += len(span.decisions)
                decisions += [d for d in span.decisions if d.learned]
            elif span.role == "assistant":
                segments.append((frames_since, decisions))
                frames_since, decisions = 0, []
        for r, ((num_frames, learned), reply) in enumerate(zip(segments, reply_spans)):
            record = TurnRecord(turn=reply.index, fps=fps)
            if reply.target_positions:
                pos = torch.tensor(reply.target_positions, device=logits.device)
                rows, target = logits[pos].float(), labels[pos]
                record.reply_tokens = len(pos)
                record.lm_loss = float(torch.nn.functional.cross_entropy(rows, target))
                record.correct_tokens = correct_prefix((rows.argmax(-1) == target).tolist())
            gold_frame = learned[-1] if learned and learned[-1].speaks else None
            if gold_frame is not None:
                scores = _scores(logits, [decision_at[d.frame] for d in learned], silent_id)
                record.decisions = len(scores)
                diff = in_turn_diff(scores, threshold)
                if diff is None:
                    nxt = segments[r + 1][0] if r + 1 < len(segments) else None
                    n = min(frames_to_feed(num_frames, nxt), given - gold_frame.frame - 1)
                    following: list[FrameScore] = []
                    if n > 0:
                        alt = model.renderer.render(_silent_continuation(layout, reply.index, n))
                        stop = gold_frame.frame + 1 + n
                        alt_logits = forward_logits(model, alt, frames[:stop])
                        following = _scores(alt_logits, decision_positions(alt)[gold_frame.frame + 1 : stop],
                                            silent_id)
                    record.frames_fed = len(following)
                    diff = late_diff(following, threshold)
                record.frame_diff = diff
            records.append(record)
    return records


def evaluate_per_frame_dataset(model: StreamVLM, samples: Iterable[EvalSample], threshold: float, *,
                               progress: bool = False, total: int | None = None) -> dict[str, float | int | None]:
    """:func:`evaluate_per_frame_conversation` over every sample, aggregated as
    :func:`streamvlm.evaluation.evaluate_dataset` does (same keys)."""
    return evaluate_dataset(model, samples, threshold, progress=progress, total=total,
                            evaluate=evaluate_per_frame_conversation)
