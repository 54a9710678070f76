"""A batched step over many sessions: one forward advances B sessions at once.

:func:`push_frames` does for ``B`` :class:`~streamvlm.engine.session.StreamSession` s what
``session.push_frame`` does for one, with the same results (greedy: the same events; the decision
logits within float tolerance; the fed ids, positions, counters, traces and caches the same).
:func:`step_frames` is the same step that reports each session's failure instead of raising (a
server keeps serving the others).

A step has up to three batched phases, each a series of forwards over the sessions concerned:

1. queries asked before this frame's time are answered before it (their prompt, then their reply
   tokens, decoded together across sessions);
2. every session appends its pending ids and its frame in one forward (the decision logits);
3. sessions with a query at this frame's time answer it; the others take their decision, and those
   that speak decode their reply. Prompts and reply tokens of all these sessions go through one
   forward per decoded token; a session whose reply ends leaves the batch.

Forwards (:func:`_forward_batch`): each session keeps its own :class:`~.kv_cache.StreamCache`, so
sessions join and leave freely (a batch is the sessions passed to one call). For a forward their
caches are stacked into one buffer, *left-padded* to the longest cache, with room for the new
tokens, which the forward writes in place; each session's new keys and values are then written
into its own cache. The new inputs are ragged too (an interval token, a reply's tail + eos + the
stream opening, a query prompt, one reply token): they are right-aligned in a block of the longest
input. A 2-D attention mask zeroes every pad, each real token keeps its own session position, and
the logits at the last column are each session's. When no row needs padding no mask is passed;
a batch of one session runs the session's own ``feed``. Models with sliding-window layers
(whose masks count cache columns, which padding shifts) are stepped one session at a time.

Everything that decides and decodes runs in the session's own code, through its public stages
(``begin_frame``, ``frame_prefix``, ``frame_fed``, ``take_query``, ``decide``, ``reply_step``,
``make_room``, ``record_fed``: shared with the single-session path, not copied). Bounded KV is
exact: each session's policy evicts from its own cache before stacking, as ``feed`` does.
One batched step runs at a time per model (its stacking buffers are reused from step to step).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from transformers.cache_utils import DynamicLayer

from ..model.language_model import text_config
from .kv_cache import StreamCache
from .session import Event, StreamSession

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM

_WORKSPACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per model, the stacking buffers reused from step to step (one batched step at a time per model)."""


@dataclass
class StepResult:
    """What one session got from a batched step: its events, or the exception that stopped it
    (raised by its ``on_token``; the session is then left as ``push_frame`` would leave it)."""

    events: list[Event] = field(default_factory=list)
    error: BaseException | None = None


def _full_attention_only(model: StreamVLM) -> bool:
    """Whether every layer of the LM attends to the whole cache (no sliding window: a window's mask
    counts columns, which padding shifts)."""
    text = text_config(model.language_model)
    types = getattr(text, "layer_types", None)
    if types is not None:
        return all(t == "full_attention" for t in types)
    return getattr(text, "sliding_window", None) is None


def push_frames(sessions: Sequence[StreamSession], frames: Sequence[Tensor] | Tensor,
                times: Sequence[float]) -> list[list[Event]]:
    """Push one frame ``frames[i]`` ``[T, D]`` (LM-width embeddings) at video time ``times[i]`` to
    each ``sessions[i]``; return each session's events, as ``sessions[i].push_frame(frames[i],
    times[i])`` would. Sessions must be distinct and share one model; everything is checked before
    any session changes. If a session's reply raises (its ``on_token``), the other sessions still
    finish the step, then the first exception propagates (the step's events are not returned)."""
    results = step_frames(sessions, frames, times)
    for result in results:
        if result.error is not None:
            raise result.error
    return [result.events for result in results]


@torch.inference_mode()
def step_frames(sessions: Sequence[StreamSession], frames: Sequence[Tensor] | Tensor,
                times: Sequence[float]) -> list[StepResult]:
    """:func:`push_frames`, with each session's failure in its :class:`StepResult` instead of raised."""
    _check(sessions, frames, times)
    if not sessions:
        return []
    results = [StepResult() for _ in sessions]
    if len(sessions) == 1 or not _full_attention_only(sessions[0].model):
        for session, frame, time, result in zip(sessions, frames, times, results):
            _alone(result, lambda s=session, f=frame, t=time: s.push_frame(f, t))
        return results
    times = [float(t) for t in times]
    indices = [session.begin_frame(time) for session, time in zip(sessions, times)]
    # 1. queries asked before this frame (a session that has seen no frame answers them after it)
    rows = [i for i, index in enumerate(indices) if index > 0]
    _answer_queries(sessions, rows, results, indices, times, inclusive=False)
    # 2. the frame
    rows = [i for i in range(len(sessions)) if results[i].error is None]
    logits = _forward_batch([sessions[i] for i in rows], [sessions[i].frame_prefix() for i in rows],
                            [frames[i] for i in rows])
    # 3. queries at this frame's time, else the decision and its reply
    speaking, answering = [], []
    for row, i in enumerate(rows):
        session = sessions[i]
        session.frame_fed()
        if session.has_query_due(times[i]):
            answering.append(i)
        elif session.decide(logits[row]).speak:
            speaking.append(i)
    prompts = {i: list(sessions[i].ids.reply_open_after_stream) for i in speaking}
    _answer_queries(sessions, answering, results, indices, times, inclusive=True, replies=prompts)
    return results


def _check(sessions: Sequence[StreamSession], frames, times) -> None:
    if not (len(sessions) == len(frames) == len(times)):
        raise ValueError(f"push_frames: {len(sessions)} sessions, {len(frames)} frames, {len(times)} times")
    if len({id(s) for s in sessions}) != len(sessions):
        raise ValueError("push_frames: a session appears twice in one step")
    if not sessions:
        return
    model = sessions[0].model
    for session, frame, time in zip(sessions, frames, times):
        if session.model is not model:
            raise ValueError("push_frames: the sessions do not share one model")
        session.check_frame(frame, time, where="push_frames")


def _alone(result: StepResult, step: Callable[[], list[Event]]) -> None:
    try:
        result.events = step()
    except BaseException as exc:  # noqa: BLE001 - reported in the session's result
        result.error = exc


def _answer_queries(sessions: Sequence[StreamSession], rows: list[int], results: list[StepResult],
                    indices: list[int], times: list[float], *, inclusive: bool,
                    replies: dict[int, list[int]] | None = None) -> None:
    """Answer the queries of ``sessions[rows]`` asked before ``times[i]`` (at or before, with
    ``inclusive``) in rounds (one query per session per round), decoding the answers together;
    ``replies``: sessions that (also, in the first round) decode a reply to this prompt, without a
    query (the decision fired)."""
    replies = dict(replies or {})
    while True:
        prompts: dict[int, tuple[list[int], Event | None]] = {}
        for i in rows:
            asked = sessions[i].take_query(times[i], inclusive=inclusive) if results[i].error is None else None
            if asked is not None:
                query = asked.query
                prompts[i] = (asked.prompt, Event(query.time, "user", list(query.token_ids), indices[i]))
        for i, prompt in replies.items():
            prompts[i] = (prompt, None)
        replies = {}
        if not prompts:
            return
        order = list(prompts)
        decoded = _decode([sessions[i] for i in order], [prompts[i][0] for i in order])
        for i, reply in zip(order, decoded):
            if isinstance(reply, BaseException):
                results[i].error = reply
                continue
            user = prompts[i][1]
            if user is not None:
                results[i].events.append(user)
            time = user.time if user is not None else sessions[i].last_time
            results[i].events.append(Event(time, "assistant", reply, indices[i]))
        rows = [i for i in rows if i in prompts]


def _decode(sessions: list[StreamSession], prompts: list[list[int]]) -> list[list[int] | BaseException]:
    """Feed each session its prompt and decode its reply (``session.reply`` for all at once: one
    forward per token over the sessions still replying). Returns each reply's ids, or the exception
    its ``on_token`` raised (that session stops; the others go on)."""
    results: list[list[int] | BaseException | None] = [None] * len(sessions)
    contents: list[list[int]] = [[] for _ in sessions]
    active, inputs = list(range(len(sessions))), prompts
    while active:
        logits = _forward_batch([sessions[i] for i in active], inputs, [None] * len(active))
        still, inputs = [], []
        for row, i in enumerate(active):
            try:
                done = sessions[i].reply_step(logits[row], contents[i])
            except BaseException as exc:  # noqa: BLE001 - reported to the caller with the session
                results[i] = exc
                continue
            if done:
                results[i] = contents[i]
            else:
                still.append(i)
                inputs.append([contents[i][-1]])
        active = still
    return results


class _StackedLayer(DynamicLayer):
    """One layer of the sessions' caches stacked left-padded into a buffer with room for ``width``
    more tokens, which the forward writes in place. The buffers come from ``workspace`` (reused
    from step to step: no fresh allocation, no zero-filling of a whole buffer)."""

    def __init__(self, layers: list[DynamicLayer | None], lengths: list[int], width: int,
                 workspace: dict, index: int) -> None:
        super().__init__()
        past = max(lengths)
        ref = next(layer for layer, n in zip(layers, lengths) if n)
        self.buffers = []
        for name in ("keys", "values"):
            sample = getattr(ref, name)
            shape = (len(layers), sample.shape[1], past + width, sample.shape[-1])
            buffer = workspace.get((index, name))
            if (buffer is None or buffer.dtype != sample.dtype or buffer.device != sample.device
                    or any(have < need for have, need in zip(buffer.shape, shape))):
                grown = (shape[0], shape[1], max(2 * shape[2], 256), shape[3])
                buffer = workspace[(index, name)] = sample.new_empty(grown)
            buffer = buffer[: shape[0], :, : shape[2]]
            for row, (layer, n) in enumerate(zip(layers, lengths)):
                if n:
                    buffer[row, :, past - n:past] = getattr(layer, name)[0]
                if n < past:  # masked pads: any finite value (a stale NaN would poison the row's sums)
                    buffer[row, :, :past - n].zero_()
            self.buffers.append(buffer)
        self.length = past
        self.keys, self.values = self.buffers[0][:, :, :past], self.buffers[1][:, :, :past]
        self.device, self.is_initialized = ref.keys.device, True

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        end = self.length + key_states.shape[-2]
        self.buffers[0][:, :, self.length:end] = key_states
        self.buffers[1][:, :, self.length:end] = value_states
        self.keys, self.values, self.length = self.buffers[0][:, :, :end], self.buffers[1][:, :, :end], end
        return self.keys, self.values


def _forward_batch(sessions: list[StreamSession], prefixes: list[list[int]],
                   frames: list[Tensor | None]) -> Tensor:
    """``session.feed(prefix, frame)`` of every session in one forward (a frame may be None);
    returns the last logits ``[B, V]``."""
    if len(sessions) == 1:
        return sessions[0].feed(prefixes[0], frames[0])[None]
    model = sessions[0].model
    device, dtype = model.device, model.dtype
    flat = [token for ids in prefixes for token in ids]
    token_embeds = model.embed_tokens(torch.tensor([flat], device=device))[0] if flat else None
    inputs, offset = [], 0
    for session, ids, frame in zip(sessions, prefixes, frames):
        parts = []
        if ids:
            parts.append(token_embeds[offset:offset + len(ids)])
            offset += len(ids)
        if frame is not None:
            parts.append(frame.to(device=device, dtype=dtype))
        embeds = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        session.make_room(embeds.shape[0])
        inputs.append(embeds)
    lengths = torch.tensor([s.kv_length for s in sessions], device=device)
    counts = torch.tensor([e.shape[0] for e in inputs], device=device)
    past, width = int(lengths.max()), int(counts.max())
    padded = bool((lengths != past).any() or (counts != width).any())

    embeds = torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True, padding_side="left")
    column = torch.arange(width, device=device)[None]
    first = width - counts[:, None]  # the first real column of each row's input
    positions = (lengths[:, None] + column - first).clamp(min=0)
    cache = StreamCache()
    if past:
        layers = [s.cache.layers if n else None for s, n in zip(sessions, lengths.tolist())]
        reference = next(layer for layer in layers if layer is not None)
        workspace = _WORKSPACES.setdefault(model, {})
        cache.layers = [_StackedLayer([own[index] if own else None for own in layers], lengths.tolist(), width,
                                      workspace, index) for index in range(len(reference))]
    mask = None
    if padded:
        past_column = torch.arange(past, device=device)[None]
        mask = torch.cat([past_column >= past - lengths[:, None], column >= first], dim=1).long()

    out = model.language_model(inputs_embeds=embeds, position_ids=positions, cache=cache, use_cache=True,
                               attention_mask=mask, logits_to_keep=1)
    for layer_index, layer in enumerate(cache.layers):
        for row, (session, n) in enumerate(zip(sessions, counts.tolist())):
            session.cache.update(layer.keys[row:row + 1, :, past + width - n:],
                                 layer.values[row:row + 1, :, past + width - n:], layer_index)
    for session, ids, frame, n in zip(sessions, prefixes, frames, counts.tolist()):
        session.record_fed(ids, frame, n)
    return out.logits[:, -1]


__all__ = ["StepResult", "push_frames", "step_frames"]
