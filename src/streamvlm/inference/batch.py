"""A batched step over many sessions: one forward appends a frame to B sessions at once.

:func:`push_frames` does for ``B`` :class:`~streamvlm.inference.engine.StreamSession` s what
``session.push_frame`` does for one, with the same results (greedy: the same events; the decision
logits within float tolerance, the fed ids, positions, counters, traces and caches the same).

Design (the first part of issue 12):

* **Caches.** Each session keeps its own ``DynamicCache`` (so sessions join and leave a batch
  freely: a batch is simply the sessions passed to one call). For the step, their caches are
  stacked on the fly into one batched ``DynamicCache``, *left-padded* to the longest cache; after
  the forward each session's new keys and values are sliced out and appended to its own cache
  (``DynamicCache.update``). This is transformers' own batched path (a padded cache, a 2-D
  attention mask, explicit ``position_ids``); no custom attention. Stacking copies the caches
  once per step: a preallocated / paged cache (issue 12, part 2) removes that copy.
* **Inputs.** A session appends its pending ids (the session start, the interval token, or a
  reply's tail + eos + stream opening) then its ``T`` frame embeddings, so the new inputs are
  ragged too: they are right-aligned (left-padded) in a block of the longest input, and the
  padding sits between a row's cache and its new tokens. The 2-D attention mask zeroes every pad
  (in the cache and in the input), each real token keeps its own session position
  (``position_ids`` = its cache length onwards, as the single-session engine), and the logits at
  the last column are each session's decision logits. Pads are zero vectors at position 0; their
  outputs are never read. When no row needs padding, no mask is passed (the very same kernel path
  as a session alone).
* **What stays per session.** The decision rule and everything that decodes text run with the
  session's own code (its private steps, reused, not copied): a session whose frame fires a reply
  decodes that reply with its single-session loop (greedy or sampled, ``on_token`` included); a
  session with a query due at or before this frame's time is stepped alone (``push_frame``) for
  this step. A batch of one session is stepped alone too, and so is every session of a model with
  sliding-window attention layers (their masks count cache columns, which padding shifts).
* **Bounded KV.** Exact: each session's policy (:class:`~.kv_policy.SinkWindowPolicy`) evicts from
  its own cache before stacking, as ``_forward`` does, so positions and re-rotated keys are those
  of the session alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ..decision import frame_scores, responds
from .engine import Event, StreamSession


def _full_attention_only(model) -> bool:
    """Whether every layer of the LM attends to the whole cache (no sliding window: a window's mask
    counts columns, which padding shifts)."""
    for module in model.language_model.modules():
        config = getattr(module, "config", None)
        if hasattr(config, "get_text_config"):
            text = config.get_text_config()
            types = getattr(text, "layer_types", None)
            if types is not None:
                return all(t == "full_attention" for t in types)
            return getattr(text, "sliding_window", None) is None
    return False


def _due_query(session: StreamSession, time: float) -> bool:
    return any(q.time <= time for q in session._queries)


@torch.inference_mode()
def push_frames(sessions: Sequence[StreamSession], frames: Sequence[Tensor] | Tensor,
                times: Sequence[float]) -> list[list[Event]]:
    """Push one frame ``frames[i]`` ``[T, D]`` (LM-width embeddings) at video time ``times[i]`` to
    each ``sessions[i]``; return each session's events, as ``sessions[i].push_frame(frames[i],
    times[i])`` would. Sessions must be distinct and share one model; everything is checked before
    any session changes. If a session's reply raises (its ``on_token``), the other sessions still
    finish the step (their state is as after ``push_frame``) and then the first exception propagates
    (the step's events are not returned)."""
    if not (len(sessions) == len(frames) == len(times)):
        raise ValueError(f"push_frames: {len(sessions)} sessions, {len(frames)} frames, {len(times)} times")
    if len({id(s) for s in sessions}) != len(sessions):
        raise ValueError("push_frames: a session appears twice in one step")
    if not sessions:
        return []
    model = sessions[0].model
    for session, frame, time in zip(sessions, frames, times):
        if session.model is not model:
            raise ValueError("push_frames: the sessions do not share one model")
        expected = (session.ids.tokens_per_frame, model.config.llm_hidden_size)
        if tuple(frame.shape) != expected:
            raise ValueError(f"push_frames: expected frame embeddings of shape {expected}, "
                             f"got {tuple(frame.shape)}")
        session._check_time(time)
    results: list[list[Event] | None] = [None] * len(sessions)
    batched = []
    alone = not _full_attention_only(model)
    for i, (session, time) in enumerate(zip(sessions, times)):
        if alone or _due_query(session, time):  # a query is answered with this frame: stepped alone
            results[i] = session.push_frame(frames[i], time)
        else:
            batched.append(i)
    if len(batched) == 1:
        i = batched[0]
        results[i] = sessions[i].push_frame(frames[i], times[i])
    elif batched:
        group = [sessions[i] for i in batched]
        for session, i in zip(group, batched):
            session._last_time = float(times[i])
        prefixes = [session._frame_prefix() for session in group]
        logits = _forward_batch(group, prefixes, [frames[i] for i in batched])
        speaking = [(session, i, _decide(session, logits[row])) for row, (session, i) in enumerate(zip(group, batched))]
        failure: BaseException | None = None
        for session, i, index in speaking:
            results[i] = []
            if index is None:
                continue
            try:
                reply = session._reply(list(session.ids.reply_open_after_stream))
            except BaseException as exc:  # noqa: BLE001 - re-raised once every session is consistent
                failure = failure or exc
                continue
            results[i] = [Event(float(times[i]), "assistant", reply, index)]
        if failure is not None:
            raise failure
    return [r if r is not None else [] for r in results]


def _decide(session: StreamSession, logits: Tensor) -> int | None:
    """The rest of ``push_frame`` after the frame's forward (no query is due), up to the reply:
    the frame's index when the session speaks, else None (the interval is pending)."""
    index = session.frames_seen
    session.frames_seen += 1
    session._state = "stream"
    if session.trace is not None:
        session.trace.decision_positions.append(session.kv_length - 1)
        session.trace.decision_logits.append(logits.float().cpu())
    ids = session.ids
    if not responds(frame_scores(logits[None], ids.silence_id)[0], session.gen.threshold):
        session._pending = [ids.interval_id] if ids.interval_id is not None else []
        return None
    return index


class _StackedLayer(DynamicLayer):
    """One layer of the sessions' caches stacked left-padded into a buffer with room for ``width``
    more tokens, which the forward writes in place (no concatenation of the stacked cache)."""

    def __init__(self, sessions: list[StreamSession], lengths: list[int], index: int, width: int) -> None:
        super().__init__()
        past = max(lengths)
        own = [s.cache.layers[index] if n else None for s, n in zip(sessions, lengths)]
        ref = next(layer for layer, n in zip(own, lengths) if n)
        self.buffers = []
        for name in ("keys", "values"):
            sample = getattr(ref, name)
            buffer = sample.new_zeros(len(sessions), sample.shape[1], past + width, sample.shape[-1])
            for row, (layer, n) in enumerate(zip(own, lengths)):
                if n:
                    buffer[row, :, past - n:past] = getattr(layer, name)[0]
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


def _forward_batch(sessions: list[StreamSession], prefixes: list[list[int]], frames: list[Tensor]) -> Tensor:
    """``_forward(prefix, frame)`` of every session in one forward; returns the last logits ``[B, V]``."""
    model = sessions[0].model
    device, dtype = model.device, model.dtype
    inputs = []
    for session, ids, frame in zip(sessions, prefixes, frames):
        parts = []
        if ids:
            parts.append(model.embed_tokens(torch.tensor([ids], device=device))[0])
        parts.append(frame.to(device=device, dtype=dtype))
        embeds = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        policy = session.engine.kv_policy
        if policy is not None:
            session.evicted_tokens += policy.apply(session.cache, embeds.shape[0], session.engine.rotary)
        inputs.append(embeds)
    lengths = [s.kv_length for s in sessions]
    counts = [e.shape[0] for e in inputs]
    batch, past, width = len(sessions), max(lengths), max(counts)
    padded = any(n != past for n in lengths) or any(n != width for n in counts)

    embeds = inputs[0].new_zeros(batch, width, inputs[0].shape[-1])
    positions = torch.zeros(batch, width, dtype=torch.long, device=device)
    mask = torch.zeros(batch, past + width, dtype=torch.long, device=device)
    for row, (x, n, start) in enumerate(zip(inputs, counts, lengths)):
        embeds[row, width - n:] = x
        positions[row, width - n:] = torch.arange(start, start + n, device=device)
        mask[row, past - start:past] = 1
        mask[row, past + width - n:] = 1

    cache = DynamicCache()
    if past:
        reference = next(s.cache for s, n in zip(sessions, lengths) if n)
        cache.layers = [_StackedLayer(sessions, lengths, index, width) for index in range(len(reference.layers))]

    out = model.language_model(inputs_embeds=embeds, position_ids=positions, cache=cache, use_cache=True,
                               attention_mask=mask if padded else None, logits_to_keep=1)
    for layer_index, layer in enumerate(cache.layers):
        for row, (session, n) in enumerate(zip(sessions, counts)):
            session.cache.update(layer.keys[row:row + 1, :, past + width - n:],
                                 layer.values[row:row + 1, :, past + width - n:], layer_index)
    for session, ids, frame, n in zip(sessions, prefixes, frames, counts):
        session.llm_calls += 1
        session.tokens_fed += n
        if session.trace is not None:
            session.trace.fed_ids += ids
            session.trace.fed_ids += [session.ids.frame_id] * frame.shape[0]
    return out.logits[:, -1]


__all__ = ["push_frames"]
