"""The streaming session: one continuous KV cache per stream, a decision per frame.

Works purely in token ids and embeddings. A session starts with ``<bos>{system}\\n\\n[``; each
frame is fed as its ``T`` frame embeddings, preceded by what was decided after the previous frame
(the interval token when silent). After the last vision token of a frame, if
``P(interval) < threshold`` the interval probability is zeroed; if the argmax is still the silence
token the model stays silent, otherwise it speaks: the reply prompt (``]\\nAssistant:``) is fed and
a reply decoded until eos or ``max_new_tokens``. User queries are inserted at a frame boundary as
``]\\nUser: {query}\\nAssistant:`` and always answered. The fed token sequence is exactly the one
:class:`~streamvlm.model.conversation.ConversationRenderer` renders for the same conversation.

:meth:`StreamSession.push_frame` is one step; each of its stages is a public method with its own
contract (see the class), so that the batched step (:mod:`.batch`) runs the same code for many
sessions at once and nothing outside this module touches a session's private state:

1. :meth:`~StreamSession.check_frame`, :meth:`~StreamSession.begin_frame`: the frame's time;
2. :meth:`~StreamSession.take_query` / :meth:`~StreamSession.answer_queries`: queries due before it;
3. :meth:`~StreamSession.frame_prefix`, then the frame fed (:meth:`~StreamSession.feed`, or
   :meth:`~StreamSession.make_room` + an outside forward + :meth:`~StreamSession.record_fed`),
   then :meth:`~StreamSession.frame_fed`;
4. queries due at its time, else :meth:`~StreamSession.decide` and, when it speaks,
   :meth:`~StreamSession.reply` (or :meth:`~StreamSession.reply_step` token by token).

:meth:`~StreamSession.score_continuations` scores given replies at the current point and changes
nothing; :meth:`~StreamSession.set_threshold` changes theta between frames.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor
from transformers.cache_utils import DynamicLayer

from ..errors import ConfigError, StreamvlmWarning
from ..model.decision import FrameScore, frame_scores, responds
from ..model.vlm import StreamVLM
from .kv_cache import StreamCache
from .kv_policy import KVPolicy, RotaryShift, lm_context
from .layout import LayoutIds
from .options import GenerationConfig


@dataclass
class Event:
    """Something said in the stream: a user query, or a reply (``token_ids`` without eos).
    ``frame_index`` is the frame being pushed when it happened."""

    time: float
    role: str
    token_ids: list[int]
    frame_index: int


@dataclass
class SessionTrace:
    """Debug record of a session (off by default: it grows with the stream)."""

    fed_ids: list[int] = field(default_factory=list)
    """Every token fed, frame placeholders included, in order (equals the rendered ``input_ids``)."""
    decision_positions: list[int] = field(default_factory=list)
    """Position of the last vision token of each frame whose decision was taken."""
    decision_logits: list[Tensor] = field(default_factory=list)
    """``[V]`` float32 logits at each of those positions."""


@dataclass(frozen=True)
class PendingQuery:
    """A user query waiting for its frame boundary: asked at ``time``; ``token_ids`` its content;
    ``text`` when it was given as text (then tokenized with its surroundings)."""

    time: float
    token_ids: list[int]
    text: str | None = None


@dataclass(frozen=True)
class QueryPrompt:
    """A query taken from the queue (:meth:`StreamSession.take_query`) and the ids to feed before
    its answer is decoded (the pending tail it completes, the user turn, the reply opening)."""

    query: PendingQuery
    prompt: list[int]


@dataclass(frozen=True)
class Decision:
    """The decision after a frame: speak or stay silent, the scores it was taken on and theta."""

    speak: bool
    score: FrameScore
    threshold: float


SessionState = Literal["start", "stream", "reply"]
"""Where a session is: nothing fed yet, after a frame (its decision), after a reply's eos."""


class StreamEngine:
    """Holds one model and its stream layout; makes independent :class:`StreamSession` s."""

    def __init__(
        self,
        model: StreamVLM,
        generation: GenerationConfig | None = None,
        kv_policy: KVPolicy | None = None,
        system_prompt_ids: list[int] | None = None,
    ) -> None:
        self.model = model
        self.generation = generation if generation is not None else GenerationConfig()
        self.max_new_tokens = self.generation.max_new_tokens or model.config.reply_cap
        """Most tokens of one reply (eos excluded): the generation setting, else the model's cap."""
        self.kv_policy = kv_policy
        self.layout = LayoutIds.from_model(model, system_prompt_ids)
        self.rotary = RotaryShift.from_model(model.language_model) if kv_policy is not None else None
        self.context = lm_context(model)
        """The language model's context (positions it was built for), or None."""
        if kv_policy is not None and kv_policy.max_tokens <= len(self.layout.start) + self.layout.tokens_per_frame:
            raise ConfigError(
                f"kv policy: a budget of {kv_policy.max_tokens} tokens cannot hold the session start "
                f"({len(self.layout.start)} tokens) and one frame ({self.layout.tokens_per_frame} tokens)"
            )

    def new_session(self, record: bool = False) -> StreamSession:
        """A fresh session; ``record`` keeps a :class:`SessionTrace` (for tests and debugging)."""
        return StreamSession(self, record=record)


class StreamSession:
    """One live stream over one KV cache. Not thread-safe; use one session per stream.

    Read-only state: :attr:`frames_seen`, :attr:`kv_length`, :attr:`pending_ids`,
    :attr:`last_time`, :attr:`state`, :attr:`queued_queries`, :attr:`generation`,
    :attr:`threshold` and the counters ``evicted_tokens``, ``llm_calls``, ``tokens_fed``; the cache
    itself is :attr:`cache` (written by :meth:`feed`, or by a caller between :meth:`make_room` and
    :meth:`record_fed`)."""

    def __init__(self, engine: StreamEngine, record: bool = False) -> None:
        self.engine = engine
        self.model = engine.model
        self.ids = engine.layout
        self.max_new_tokens = engine.max_new_tokens
        """Most tokens of one reply (eos excluded)."""
        self._generation = engine.generation
        self._record = record
        self.on_token: Callable[[list[int]], None] | None = None
        """Called with the reply's ids so far after each decoded token (a server streams them);
        an exception it raises aborts the reply and propagates."""
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything: an empty cache, no pending query, frame count 0 (theta is kept)."""
        policy = self.engine.kv_policy
        self.cache = StreamCache(capacity=policy.max_tokens if policy is not None else 0)
        self.frames_seen = 0
        self.evicted_tokens = 0
        self.llm_calls = 0
        self.tokens_fed = 0
        self.trace: SessionTrace | None = SessionTrace() if self._record else None
        self._pending: list[int] = []  # decided tokens not fed yet (interval, or reply tail + eos)
        self._state: SessionState = "start"
        self._queries: list[PendingQuery] = []
        self._last_time = -math.inf
        self._past_context = False
        self._generator: torch.Generator | None = None
        if self._generation.do_sample:
            self._generator = torch.Generator(device=self.model.device)
            if self._generation.seed is not None:
                self._generator.manual_seed(self._generation.seed)
            else:
                self._generator.seed()

    @property
    def generation(self) -> GenerationConfig:
        """How this session decides and decodes (the engine's settings, theta as last set)."""
        return self._generation

    @property
    def threshold(self) -> float:
        """theta of the decision after each frame (see :meth:`decide`)."""
        return self._generation.threshold

    def set_threshold(self, threshold: float) -> None:
        """Decide with ``threshold`` from the next frame on (0 to 1; ValueError otherwise)."""
        if not 0.0 <= threshold <= 1.0:  # also refuses NaN
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self._generation = replace(self._generation, threshold=float(threshold))

    @property
    def kv_length(self) -> int:
        """Tokens in the cache now (bounded by the policy's ``max_tokens`` when one is set)."""
        return self.cache.get_seq_length()

    @property
    def pending_ids(self) -> list[int]:
        """Decided tokens not in the cache yet; they are fed with the next input (the interval
        token after a silent frame, eos after a reply)."""
        return list(self._pending)

    @property
    def last_time(self) -> float:
        """Video time of the last frame begun (``-inf`` before the first)."""
        return self._last_time

    @property
    def state(self) -> SessionState:
        """``start`` (nothing fed), ``stream`` (after a frame) or ``reply`` (after a reply's eos)."""
        return self._state

    @property
    def queued_queries(self) -> tuple[PendingQuery, ...]:
        """Queries pushed and not answered yet, in order."""
        return tuple(self._queries)

    # ------------------------------------------------------------------ one step
    def push_query(self, query: str | list[int], time: float) -> None:
        """Queue a user query; it is inserted and answered at the next frame boundary at or after
        ``time``. Text is tokenized with its surroundings (``]\\nUser: {query}\\nAssistant:``), as
        the renderer does and upstream was trained; content ids (``renderer.encode_content(text)``)
        are fed as given between the pieces."""
        self.check_time(time)
        if not query:
            raise ValueError("push_query: empty query")
        if isinstance(query, str):
            self._queries.append(PendingQuery(float(time), self.model.renderer.encode_content(query), query))
        else:
            self._queries.append(PendingQuery(float(time), list(query)))

    @torch.inference_mode()
    def push_frame(self, frame_embeds: Tensor, time: float) -> list[Event]:
        """Feed one frame ``[T, D]`` (LM-width embeddings) at video time ``time``; return what was
        said at this frame: queries answered (user + assistant events) and/or a reply it decided."""
        self.check_frame(frame_embeds, time, where="push_frame")
        index = self.begin_frame(time)
        events = self.answer_queries(time, inclusive=False, index=index) if index > 0 else []
        logits = self.feed(self.frame_prefix(), frame_embeds)
        self.frame_fed()
        if self.has_query_due(time):  # a query at this frame's time: answered after it, in place of the decision
            return events + self.answer_queries(time, inclusive=True, index=index)
        if self.decide(logits).speak:
            events.append(Event(float(time), "assistant", self.reply(list(self.ids.reply_open_after_stream)), index))
        return events

    # ------------------------------------------------------------------ stages of a step
    def check_time(self, time: float) -> None:
        """ValueError unless ``time`` is finite and not before :attr:`last_time`."""
        if not math.isfinite(time):
            raise ValueError(f"time must be a finite number, got {time}")
        if time < self._last_time:
            raise ValueError(f"time goes backwards ({time} < {self._last_time})")

    def check_frame(self, frame_embeds: Tensor, time: float, *, where: str) -> None:
        """ValueError (prefixed ``where``) unless ``frame_embeds`` is ``[T, D]`` of this model and
        ``time`` passes :meth:`check_time`. Changes nothing."""
        expected = (self.ids.tokens_per_frame, self.model.config.llm_hidden_size)
        if tuple(frame_embeds.shape) != expected:
            raise ValueError(f"{where}: expected frame embeddings of shape {expected}, "
                             f"got {tuple(frame_embeds.shape)}")
        self.check_time(time)

    def begin_frame(self, time: float) -> int:
        """Start the step of a frame at ``time`` (checked first): returns its index (frames seen
        before it), which the step's events carry."""
        self.check_time(time)
        self._last_time = float(time)
        return self.frames_seen

    def frame_prefix(self) -> list[int]:
        """The ids to feed right before the next frame's embeddings: the session start, or what
        was decided and not fed yet (the interval token; a reply's tail, eos and the stream
        opening). Takes them: feed them with the frame, then call :meth:`frame_fed`."""
        if self._state == "start":
            return list(self.ids.start)
        if self._state == "reply":
            return self._take_pending() + list(self.ids.stream_open)
        return self._take_pending()

    def frame_fed(self) -> None:
        """After :meth:`frame_prefix` and the frame's embeddings are in the cache: the frame is
        counted, and what follows (a decision, a query) comes after a stream."""
        self.frames_seen += 1
        self._state = "stream"

    def has_query_due(self, time: float) -> bool:
        """Whether a queued query was asked at or before ``time``."""
        return any(q.time <= time for q in self._queries)

    def take_query(self, until: float, *, inclusive: bool) -> QueryPrompt | None:
        """Take the first queued query when it was asked before ``until`` (at or before, with
        ``inclusive``), with the ids to feed before its answer; None when none is due. The
        pending ids are taken too: after a reply its tail is fed first; after a frame the pending
        interval token is replaced by the user turn."""
        if not self._queries:
            return None
        query = self._queries[0]
        if not (query.time <= until if inclusive else query.time < until):
            return None
        self._queries.pop(0)
        prompt = self._query_prompt(query)
        self._pending = []
        return QueryPrompt(query, prompt)

    def answer_queries(self, until: float, *, inclusive: bool, index: int) -> list[Event]:
        """Answer every query due (:meth:`take_query`), each as a user event and its reply, both
        carrying the frame ``index`` (the frame being stepped)."""
        events = []
        while (asked := self.take_query(until, inclusive=inclusive)) is not None:
            query = asked.query
            events.append(Event(query.time, "user", list(query.token_ids), index))
            events.append(Event(query.time, "assistant", self.reply(asked.prompt), index))
        return events

    def decide(self, logits: Tensor) -> Decision:
        """The decision after a frame from the logits ``[V]`` at its last vision token: speak when
        ``P(interval) < theta`` or another token is the argmax (:func:`~streamvlm.model.decision.responds`).
        When silent the interval token is left pending; when it speaks, decode the reply next
        (:meth:`reply` with the reply opening). Recorded in the trace."""
        if self.trace is not None:
            self.trace.decision_positions.append(self.kv_length - 1)
            self.trace.decision_logits.append(logits.float().cpu())
        score = frame_scores(logits[None], self.ids.silence_id)[0]
        speak = responds(score, self._generation.threshold)
        if not speak:
            self._pending = [self.ids.interval_id] if self.ids.interval_id is not None else []
        return Decision(speak, score, self._generation.threshold)

    def reply(self, prompt: list[int]) -> list[int]:
        """Feed ``prompt`` and decode a reply; leaves ``[last token?, eos]`` pending. Returns the
        reply's ids without eos."""
        logits = self.feed(prompt)
        content: list[int] = []
        while not self.reply_step(logits, content):
            logits = self.feed([content[-1]])
        return content

    def reply_step(self, logits: Tensor, content: list[int]) -> bool:
        """Choose the reply's next token from ``logits [V]`` (appended to ``content``, eos excluded);
        True when the reply is over (its tail pending, the state ``reply``); else the last token of
        ``content`` is to be fed next."""
        token = self._next_token(logits, content)
        if token == self.ids.eos_id:
            self._pending = [self.ids.eos_id]
        else:
            content.append(token)
            if self.on_token is not None:
                self.on_token(content)
            if len(content) < self.max_new_tokens:
                return False
            self._pending = [token, self.ids.eos_id]
        self._state = "reply"
        return True

    def feed(self, ids: list[int], embeds: Tensor | None = None) -> Tensor:
        """Append ``ids`` then (optionally) ``embeds [N, D]`` (a frame's) to the cache, room made
        first (:meth:`make_room`); return the logits ``[V]`` at the last position."""
        model = self.model
        parts = []
        if ids:
            parts.append(model.embed_tokens(torch.tensor([ids], device=model.device)))
        if embeds is not None:
            parts.append(embeds.to(device=model.device, dtype=model.dtype)[None])
        inputs = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        length = inputs.shape[1]
        start = self.make_room(length)
        positions = torch.arange(start, start + length, device=model.device)[None]
        out = model.language_model(inputs_embeds=inputs, position_ids=positions, cache=self.cache,
                                   use_cache=True, logits_to_keep=1)
        self.record_fed(ids, embeds, length)
        return out.logits[0, -1]

    def make_room(self, length: int) -> int:
        """Before ``length`` tokens are appended to :attr:`cache`: evict what the KV policy asks (or
        warn once past the model's context, unbounded); return the position the first one takes."""
        policy = self.engine.kv_policy
        if policy is not None:
            self.evicted_tokens += policy.apply(self.cache, length, self.engine.rotary)
        start = self.kv_length
        self._check_context(start + length)
        return start

    def record_fed(self, ids: list[int], embeds: Tensor | None, length: int) -> None:
        """After one forward appended ``ids`` and ``embeds`` (``length`` tokens in all) to
        :attr:`cache`: the counters and the trace."""
        self.llm_calls += 1
        self.tokens_fed += length
        if self.trace is not None:
            self.trace.fed_ids += ids
            if embeds is not None:
                self.trace.fed_ids += [self.ids.frame_id] * embeds.shape[0]

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def score_continuations(self, query: str | list[int], continuations: list[list[int]]) -> list[float]:
        """Summed log-probability of each continuation (content ids, e.g. an option's text then eos)
        as the reply to ``query`` asked now, at this frame boundary; divide by its length for the
        mean. ``query`` is placed as :meth:`push_query` would place it (after the pending ids it
        completes or replaces); queries queued and not yet answered are not seen. Nothing of the
        session changes: its cache, counters, pending ids, queued queries and trace stay as they were
        (the prompt and continuations go to a scratch overlay of the cache, dropped afterwards, so a
        bounded cache never passes its budget)."""
        if self.frames_seen == 0:
            raise ValueError("score_continuations: no frame seen yet")
        if not continuations or any(not c for c in continuations):
            raise ValueError("score_continuations: every continuation needs at least one id")
        if isinstance(query, str):
            asked = PendingQuery(self._last_time, self.model.renderer.encode_content(query), query)
        else:
            asked = PendingQuery(self._last_time, list(query))
        prompt = self._query_prompt(asked)
        base = [(layer.keys, layer.values) for layer in self.cache.layers]
        first, prefix = self._scratch_forward(base, prompt, 1)
        scores = []
        for ids in continuations:
            logits = first
            if len(ids) > 1:
                rest, _ = self._scratch_forward(prefix, ids[:-1], len(ids) - 1)
                logits = torch.cat([first, rest])
            logits = logits.float()
            if self.ids.frame_id < logits.shape[-1]:  # as decoding: a placeholder is never a reply token
                logits[:, self.ids.frame_id] = -math.inf
            picked = logits.log_softmax(-1).gather(1, torch.tensor(ids, device=logits.device)[:, None])
            scores.append(float(picked.sum()))
        return scores

    # ------------------------------------------------------------------ internals
    def _scratch_forward(self, past: list[tuple[Tensor, Tensor]], ids: list[int],
                         keep: int) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Feed ``ids`` after ``past`` (per layer keys and values ``[1, H, L, Dh]``) without touching
        the session's cache; return the logits ``[keep, V]`` of the last ``keep`` positions and the
        per-layer keys and values with the new ones appended."""
        model = self.model
        start = past[0][0].shape[-2] if past else 0
        cache = StreamCache()
        cache.layers = [_ScratchLayer(keys, values) for keys, values in past]
        embeds = model.embed_tokens(torch.tensor([ids], device=model.device))
        positions = torch.arange(start, start + len(ids), device=model.device)[None]
        out = model.language_model(inputs_embeds=embeds, position_ids=positions, cache=cache, use_cache=True,
                                   logits_to_keep=keep)
        return out.logits[0], [(layer.keys, layer.values) for layer in cache.layers]

    def _query_prompt(self, query: PendingQuery) -> list[int]:
        """The ids to feed before the answer to ``query`` asked now (the pending ids left as they are)."""
        after_stream = self._state == "stream"
        # after a stream the interval decided after the last frame is replaced; after a reply its
        # last token and eos are still pending
        head = [] if after_stream else list(self._pending)
        if query.text is not None:
            return head + self.model.renderer.encode_query_prompt(query.text, after_stream)
        opening = self.ids.user_open_after_stream if after_stream else self.ids.user_open_after_reply
        return head + list(opening) + list(query.token_ids) + list(self.ids.reply_open_after_user)

    def _check_context(self, length: int) -> None:
        """Warn (once) when the cache is about to hold ``length`` tokens, more than the model's context."""
        context = self.engine.context
        if context is not None and length > context and not self._past_context:
            self._past_context = True
            warnings.warn(f"the stream passed the model's context of {context} positions at frame {self.frames_seen} "
                          "(an unbounded KV cache): replies may degrade; bound it with --kv-budget",
                          StreamvlmWarning, stacklevel=3)

    def _take_pending(self) -> list[int]:
        pending, self._pending = self._pending, []
        return pending

    def _next_token(self, logits: Tensor, previous: list[int]) -> int:
        gen = self._generation
        logits = logits.float()
        if self.ids.frame_id < logits.shape[0]:  # a placeholder in a reply would corrupt the layout
            logits[self.ids.frame_id] = -math.inf
        if gen.guard:
            _guard(logits, previous, self.ids.template)
        if gen.repetition_penalty != 1.0 and previous:
            seen = torch.tensor(sorted(set(previous)), device=logits.device)
            values = logits[seen]
            logits[seen] = torch.where(values > 0, values / gen.repetition_penalty, values * gen.repetition_penalty)
        if not gen.do_sample:
            return int(logits.argmax())
        probs = (logits / gen.temperature).softmax(-1)
        if gen.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(-1) - sorted_probs < gen.top_p  # always keeps the top token
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs, 1, generator=self._generator))


def _guard(logits: Tensor, previous: list[int], template: tuple[int, ...], span: int = 3) -> None:
    """``GenerationConfig.guard``, in place on ``logits [V]``: the layout's ``template`` ids, and
    every token that would end a ``span``-token run already in ``previous``, set to -inf (eos
    always stays possible)."""
    banned = set(template)
    if len(previous) >= span:
        head = tuple(previous[-(span - 1):])
        banned.update(previous[i + span - 1] for i in range(len(previous) - span + 1)
                      if tuple(previous[i:i + span - 1]) == head)
    banned = [t for t in banned if t < logits.shape[0]]
    if banned:
        logits[torch.tensor(banned, device=logits.device)] = -math.inf


class _ScratchLayer(DynamicLayer):
    """A layer of a scratch cache over a session's keys and values (never written): an append
    makes new tensors (``torch.cat``), so the session's own buffers stay as they were."""

    def __init__(self, keys: Tensor, values: Tensor) -> None:
        super().__init__()
        self.keys, self.values = keys, values
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        return self.keys, self.values
