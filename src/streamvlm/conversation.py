"""Conversations, and their rendering to token ids and labels, turn by turn.

A conversation is a list of :class:`Turn`: ``system``, ``user`` (a query), ``assistant`` (a
reply, learned or not) and ``stream`` (``num_frames`` frames; ``learn`` says which frame
decisions are learned). :class:`ConversationRenderer` renders it **from token ids**, piece by
piece, in the upstream layout (template strings configurable, see
:class:`~streamvlm.config.TemplateConfig`)::

    <bos>{system}\\n\\n[<v>x10,<v>x10]\\nUser: {query}\\nAssistant: {reply}<eos>\\n[<v>x10]\\nAssistant: ...

Labels are aligned with positions: ``labels[i]`` is the target of the logits at position ``i``
(no shift needed), ``-100`` where nothing is learned. What is learned:

* for each learned frame, the label on its **last** vision token is the silence token (the
  interval token, or eos without one) when the stream goes on or no reply follows, or the first
  token of ``stream_close + assistant_open`` (upstream ``]\\n``) when a reply follows that frame;
* for each learned reply, every token after the first token of its opening piece, its content
  and its end-of-reply token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import StreamVLMConfig
from .errors import ConversationError
from .tokenization import StreamTokenIds, add_frame_token, encode_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant", "stream")


@dataclass(frozen=True)
class Turn:
    """One turn of a streaming conversation.

    ``time`` is in seconds of video time: when a query or reply is said, or the time of a
    stream's first frame. ``learn`` is a bool for replies; for streams it is a bool (all or no
    frame decisions) or an int k (the first k frames' decisions are learned, as upstream).
    """

    role: str
    content: str = ""
    time: float | None = None
    num_frames: int = 0
    learn: bool | int = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], index: int | None = None) -> Turn:
        where = f"turn {index}" if index is not None else "turn"
        if not isinstance(data, Mapping):
            raise ConversationError(f"{where}: expected an object, got {type(data).__name__}")
        unknown = set(data) - {"role", "content", "time", "num_frames", "learn"}
        if unknown:
            raise ConversationError(f"{where}: unknown field '{sorted(unknown)[0]}'")
        if "role" not in data:
            raise ConversationError(f"{where}: missing field 'role'")
        return cls(
            role=data["role"],
            content=data.get("content", ""),
            time=data.get("time"),
            num_frames=data.get("num_frames", 0),
            learn=data.get("learn", False),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role}
        if self.role == "stream":
            out["num_frames"] = self.num_frames
        else:
            out["content"] = self.content
        if self.time is not None:
            out["time"] = self.time
        if self.role in ("assistant", "stream") and self.learn is not False:
            out["learn"] = self.learn
        return out

    def learned_frames(self) -> int:
        """Number of leading frames of a stream whose decision is learned."""
        if self.learn is True:
            return self.num_frames
        if self.learn is False:
            return 0
        return int(self.learn)


def validate_turns(turns: Sequence[Turn]) -> None:
    """Check roles, frame counts, learn flags and times; raise ConversationError naming the turn."""
    seen_frame = False
    last_time = -math.inf
    for i, turn in enumerate(turns):
        where = f"turn {i} ({turn.role!r})"
        if turn.role not in ROLES:
            raise ConversationError(f"turn {i}: unknown role {turn.role!r} (expected one of {', '.join(ROLES)})")
        if turn.role == "system" and i != 0:
            raise ConversationError(f"{where}: a system turn may only come first")
        if turn.time is not None:
            if isinstance(turn.time, bool) or not isinstance(turn.time, (int, float)) or not math.isfinite(turn.time):
                raise ConversationError(f"{where}: field 'time' must be a finite number, got {turn.time!r}")
            if turn.time < 0:
                raise ConversationError(f"{where}: field 'time' must be >= 0, got {turn.time}")
            if turn.time < last_time:
                raise ConversationError(f"{where}: field 'time' goes backwards ({turn.time} < {last_time})")
            last_time = turn.time
        if turn.role == "stream":
            if isinstance(turn.num_frames, bool) or not isinstance(turn.num_frames, int):
                raise ConversationError(f"{where}: field 'num_frames' must be an integer, got {turn.num_frames!r}")
            if turn.num_frames < 0:
                raise ConversationError(f"{where}: field 'num_frames' must be >= 0, got {turn.num_frames}")
            if not isinstance(turn.learn, (bool, int)):
                raise ConversationError(f"{where}: field 'learn' must be a bool or an int, got {turn.learn!r}")
            if not isinstance(turn.learn, bool) and not 0 <= turn.learn <= turn.num_frames:
                raise ConversationError(
                    f"{where}: field 'learn' must be between 0 and num_frames={turn.num_frames}, got {turn.learn}"
                )
            seen_frame = seen_frame or turn.num_frames > 0
        else:
            if not isinstance(turn.content, str):
                raise ConversationError(f"{where}: field 'content' must be a string, got {type(turn.content).__name__}")
            if not isinstance(turn.learn, bool):
                raise ConversationError(f"{where}: field 'learn' must be true or false, got {turn.learn!r}")
            if turn.num_frames:
                raise ConversationError(f"{where}: field 'num_frames' is only for stream turns")
            if turn.role == "assistant" and not seen_frame:
                raise ConversationError(f"{where}: a reply before any frame (add a stream turn before it)")


def turns_from_dicts(data: Iterable[Mapping[str, Any]]) -> list[Turn]:
    turns = [Turn.from_dict(d, i) for i, d in enumerate(data)]
    validate_turns(turns)
    return turns


@dataclass
class FrameDecision:
    """The decision after one frame: its position (last vision token) and whether it is learned."""

    frame: int
    position: int
    learned: bool
    speaks: bool
    """True when a reply follows this frame in the conversation (the gold decision is to speak)."""


@dataclass
class TurnSpan:
    """Where a turn landed in the token sequence.

    ``start:end`` covers the turn's tokens, its opening piece included. For a stream,
    ``decisions`` lists its frames; for a reply, ``target_positions`` are the positions whose
    label is one of its tokens (empty when not learned), ``reply_start:end`` its content and eos.
    """

    index: int
    role: str
    start: int
    end: int
    reply_start: int = -1
    decisions: list[FrameDecision] = field(default_factory=list)
    target_positions: list[int] = field(default_factory=list)


@dataclass
class RenderedConversation:
    """Token ids, aligned labels and where every frame and turn lies. All lists have one entry per
    token except ``frame_positions`` (``[num_frames][tokens_per_frame]``) and ``spans``."""

    input_ids: list[int]
    labels: list[int]
    frame_positions: list[list[int]]
    spans: list[TurnSpan]

    @property
    def num_frames(self) -> int:
        return len(self.frame_positions)

    @property
    def decisions(self) -> list[FrameDecision]:
        return [d for s in self.spans for d in s.decisions]

    def stream_mask(self) -> list[bool]:
        """True at learned frame-decision positions (weighted by tau in the loss)."""
        mask = [False] * len(self.input_ids)
        for d in self.decisions:
            if d.learned:
                mask[d.position] = True
        return mask


class ConversationRenderer:
    """Renders conversations to token ids and labels for one tokenizer and model config."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: StreamVLMConfig,
                 ids: StreamTokenIds | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.template = config.template
        self.ids = ids if ids is not None else add_frame_token(tokenizer, config)
        self.tokens_per_frame = config.tokens_per_frame

    def encode(self, text: str) -> list[int]:
        return encode_text(self.tokenizer, text)

    def encode_content(self, text: str) -> list[int]:
        return self.encode(self.template.content_prefix + text)

    def render(self, turns: Sequence[Turn | Mapping[str, Any]]) -> RenderedConversation:
        turns = [t if isinstance(t, Turn) else Turn.from_dict(t, i) for i, t in enumerate(turns)]
        validate_turns(turns)
        tpl, ids, k = self.template, self.ids, self.tokens_per_frame
        input_ids: list[int] = []
        labels: list[int] = []
        frame_positions: list[list[int]] = []
        spans: list[TurnSpan] = []
        pending = ""  # template text waiting to be tokenized with the next opening piece

        def emit(tokens: Iterable[int]) -> None:
            for t in tokens:
                input_ids.append(t)
                labels.append(IGNORE_INDEX)

        if ids.bos_id is not None:
            emit([ids.bos_id])
        body = [(j, t) for j, t in enumerate(turns) if not (t.role == "stream" and t.num_frames == 0)]
        for i, (index, turn) in enumerate(body):
            nxt = body[i + 1][1] if i + 1 < len(body) else None
            start = len(input_ids)
            if turn.role == "system":
                emit(self.encode(turn.content))
                pending = tpl.system_close
                spans.append(TurnSpan(index, "system", start, len(input_ids)))
            elif turn.role == "user":
                emit(self.encode(pending + tpl.user_open))
                emit(self.encode_content(turn.content))
                pending = ""
                spans.append(TurnSpan(index, "user", start, len(input_ids)))
            elif turn.role == "assistant":
                emit(self.encode(pending + tpl.assistant_open))
                reply_start = len(input_ids)
                emit(self.encode_content(turn.content))
                emit([ids.eos_id])
                pending = ""
                span = TurnSpan(index, "assistant", start, len(input_ids), reply_start=reply_start)
                if turn.learn:
                    for q in range(start + 1, len(input_ids)):
                        labels[q - 1] = input_ids[q]
                        span.target_positions.append(q - 1)
                spans.append(span)
            else:  # stream
                emit(self.encode(pending + tpl.stream_open))
                pending = tpl.stream_close
                span = TurnSpan(index, "stream", start, start)
                learned = turn.learned_frames()
                for f in range(turn.num_frames):
                    if f > 0 and ids.interval_id is not None:
                        emit([ids.interval_id])
                    frame_start = len(input_ids)
                    emit([ids.frame_id] * k)
                    frame_positions.append(list(range(frame_start, frame_start + k)))
                    last = len(input_ids) - 1
                    speaks = f == turn.num_frames - 1 and nxt is not None and nxt.role == "assistant"
                    span.decisions.append(FrameDecision(len(frame_positions) - 1, last, f < learned, speaks))
                    if f < learned:
                        labels[last] = ids.speak_id if speaks else ids.silence_id
                span.end = len(input_ids)
                spans.append(span)
        if pending:
            emit(self.encode(pending))
        return RenderedConversation(input_ids, labels, frame_positions, spans)
