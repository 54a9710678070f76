"""Conversations, and their rendering to token ids and labels, turn by turn.

A conversation is a list of :class:`Turn`: ``system``, ``user`` (a query), ``assistant`` (a
reply, learned or not) and ``stream`` (``num_frames`` frames; ``learn`` says which frame
decisions are learned). :class:`ConversationRenderer` renders it in the upstream layout (template
strings configurable, see :class:`~streamvlm.model.config.TemplateConfig`); as upstream, each run of text
between two special tokens (bos, eos, frame placeholders) is tokenized whole, so the ids equal
``tokenizer(render_text(turns))`` (Llama-3 merges ``.\\n\\n``, ``?\\n``, ``]\\n``), and labels are
put on those ids turn by turn, each piece located by character offsets::

    <bos>{system}\\n\\n[<v>x10,<v>x10]\\nUser: {query}\\nAssistant: {reply}<eos>\\n[<v>x10]\\nAssistant: ...

Labels are aligned with positions: ``labels[i]`` is the target of the logits at position ``i``
(no shift needed), ``-100`` where nothing is learned. What is learned:

* for each learned frame, the label on its **last** vision token is the silence token (the
  interval token, or eos without one) when the stream goes on, or the token that follows it
  (upstream ``]\\n``) when a reply follows that frame; the last frame of a stream not followed by
  a reply learns the silence token, or with ``last_frame_label="next_token"`` (upstream) the
  tokens of the closing text and the character after it (``]\\n``, ``]`` at the end);
* for each learned reply, every token after the first token of its opening piece, its content
  and its end-of-reply token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConversationError
from .config import StreamVLMConfig
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

    def fixed_content_ids(self, text: str) -> list[int] | None:
        """Ids to render for a content as they are, between its surrounding pieces tokenized apart
        (a subclass can return the ids a model generated, as the engine feeds them); ``None``, the
        default, tokenizes the content with its surroundings."""
        return None

    def encode_query_prompt(self, text: str, after_stream: bool) -> list[int]:
        """Ids of a user query and the reply prompt, as :meth:`render` gives them: after a stream
        ``]\\nUser: {text}\\nAssistant:``, after a reply (its eos) ``\\nUser: {text}\\nAssistant:``,
        tokenized whole (Llama-3 merges the query's last ``?`` or ``.`` with the ``\\n`` after it)."""
        tpl = self.template
        opening = (tpl.stream_close if after_stream else "") + tpl.user_open
        return self.encode(opening + tpl.content_prefix + text + tpl.assistant_open)

    def render(self, turns: Sequence[Turn | Mapping[str, Any]]) -> RenderedConversation:
        return self._render(turns, with_text=False)[0]

    def render_text(self, turns: Sequence[Turn | Mapping[str, Any]]) -> str:
        """The rendered conversation as text, special tokens (bos, eos, frame placeholders) spelled
        out: ``tokenizer(render_text(turns), add_special_tokens=False)`` gives ``render(turns).input_ids``."""
        return self._render(turns, with_text=True)[1]

    def _content(self, parts: _Parts, text: str) -> int:
        fixed = self.fixed_content_ids(text)
        return parts.text(self.template.content_prefix + text) if fixed is None else parts.special(fixed)

    def _render(self, turns: Sequence[Turn | Mapping[str, Any]],
                with_text: bool) -> tuple[RenderedConversation, str]:
        turns = [t if isinstance(t, Turn) else Turn.from_dict(t, i) for i, t in enumerate(turns)]
        validate_turns(turns)
        parts = _Parts(self)
        plan = self._lay_out(turns, parts)
        input_ids, text = parts.encode(with_text)
        labels = _Labels(input_ids, [IGNORE_INDEX] * len(input_ids), [], self.ids.silence_id,
                         next_token_last=self.config.last_frame_label == "next_token")
        spans = [turn.label(parts, labels) for turn in plan]
        return RenderedConversation(input_ids, labels.labels, labels.frame_positions, spans), text

    def _lay_out(self, turns: list[Turn], parts: _Parts) -> list[_LaidOut]:
        """Every turn's pieces, in order (ids are known only once all are encoded)."""
        tpl, ids = self.template, self.ids
        writer = _PieceWriter(parts)
        plan: list[_LaidOut] = []
        if ids.bos_id is not None:
            parts.special([ids.bos_id])
        body = [(j, t) for j, t in enumerate(turns) if not (t.role == "stream" and t.num_frames == 0)]
        for i, (index, turn) in enumerate(body):
            if turn.role == "system":
                content = parts.text(turn.content)
                plan.append(_TextTurn(index, "system", content, content))
                writer.pending = tpl.system_close
            elif turn.role == "user":
                opening = writer.open_piece(tpl.user_open)
                plan.append(_TextTurn(index, "user", opening, self._content(parts, turn.content)))
                writer.pending = ""
            elif turn.role == "assistant":
                opening = writer.open_piece(tpl.assistant_open)
                content = self._content(parts, turn.content)
                plan.append(_ReplyTurn(index, opening, content, parts.special([ids.eos_id]), bool(turn.learn)))
                writer.pending = ""
            else:
                following = body[i + 1][1] if i + 1 < len(body) else None
                plan.append(self._lay_out_stream(index, turn, following, writer))
        writer.finish()
        return plan

    def _lay_out_stream(self, index: int, turn: Turn, following: Turn | None, writer: _PieceWriter) -> _StreamTurn:
        """A stream's opening and frames (the interval token between them); its closing text is
        written with whatever opens next."""
        parts, ids = writer.parts, self.ids
        opening = writer.open_piece(self.template.stream_open)
        frames = []
        for f in range(turn.num_frames):
            if f > 0 and ids.interval_id is not None:
                parts.text(self.config.interval_token)
            frames.append(parts.special([ids.frame_id] * self.tokens_per_frame))
        writer.pending = self.template.stream_close
        writer.closes = []
        reply_follows = following is not None and following.role == "assistant"
        return _StreamTurn(index, opening, frames, turn.learned_frames(), reply_follows, writer.closes)


@dataclass
class _Labels:
    """The ids of a rendered conversation and what labelling fills in: ``labels`` (one per id) and
    ``frame_positions`` (appended frame by frame)."""

    input_ids: list[int]
    labels: list[int]
    frame_positions: list[list[int]]
    silence_id: int
    next_token_last: bool
    """``last_frame_label == "next_token"`` (upstream)."""


@dataclass
class _TextTurn:
    """A system or user turn: its pieces ``first`` to ``last`` (nothing is learned on them)."""

    index: int
    role: str
    first: int
    last: int

    def label(self, parts: _Parts, out: _Labels) -> TurnSpan:
        return TurnSpan(self.index, self.role, parts.start(self.first), parts.end(self.last))


@dataclass
class _ReplyTurn:
    """An assistant turn: its opening, content and eos pieces; ``learn``: its tokens are labels."""

    index: int
    opening: int
    content: int
    eos: int
    learn: bool

    def label(self, parts: _Parts, out: _Labels) -> TurnSpan:
        start, end = parts.start(self.opening), parts.end(self.eos)
        span = TurnSpan(self.index, "assistant", start, end, reply_start=parts.start(self.content))
        if self.learn:  # every token after the one that holds the opening's first character
            for q in range(start + 1, end):
                out.labels[q - 1] = out.input_ids[q]
                span.target_positions.append(q - 1)
        return span


@dataclass
class _StreamTurn:
    """A stream: its opening and frame pieces, how many frame decisions are learned, whether a
    reply follows its last frame, and the piece of its closing text (once known)."""

    index: int
    opening: int
    frames: list[int]
    learned: int
    reply_follows: bool
    closes: list[int]

    def label(self, parts: _Parts, out: _Labels) -> TurnSpan:
        span = TurnSpan(self.index, "stream", parts.start(self.opening), parts.end(self.frames[-1]))
        for f, handle in enumerate(self.frames):
            positions = list(range(parts.start(handle), parts.end(handle)))
            out.frame_positions.append(positions)
            last = positions[-1]
            is_last = f == len(self.frames) - 1
            speaks = is_last and self.reply_follows
            learned = f < self.learned
            span.decisions.append(FrameDecision(len(out.frame_positions) - 1, last, learned, speaks))
            if learned and is_last and self.closes and out.next_token_last:
                # upstream: the closing text and the character after it (``]\\n``), all its tokens
                for q in range(last + 1, min(parts.after(self.closes[0]), len(out.input_ids) - 1) + 1):
                    out.labels[q - 1] = out.input_ids[q]
            elif learned:
                out.labels[last] = out.input_ids[last + 1] if speaks else out.silence_id
        return span


_LaidOut = _TextTurn | _ReplyTurn | _StreamTurn


class _PieceWriter:
    """Template text waiting to be written before the next opening piece (``pending``), and where
    the last stream's closing text goes (``closes``: its piece, appended once written)."""

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts
        self.pending = ""
        self.closes: list[int] = []

    def open_piece(self, text: str) -> int:
        """The pending text and an opening piece: two pieces of one text run. Returns the first."""
        first = None
        if self.pending:
            first = self.parts.text(self.pending)
            self.closes.append(first)
        self.closes = []
        self.pending = ""
        second = self.parts.text(text)
        return second if first is None else first

    def finish(self) -> None:
        if self.pending:
            self.closes.append(self.parts.text(self.pending))


class _Parts:
    """Text and special-token pieces, encoded as upstream does: each run of text between special
    tokens is tokenized whole (so Llama-3 merges ``.`` + ``\\n\\n`` into one token), then every
    piece is located in the ids by character offsets."""

    def __init__(self, renderer: ConversationRenderer) -> None:
        self.renderer = renderer
        self.pieces: list[tuple[str, Any]] = []  # ("text", str) or ("ids", [ids])
        self.spans: list[tuple[int, int]] = []  # token [start, end) per piece
        self.following: list[int] = []  # per piece: the token holding the character after it

    def text(self, text: str) -> int:
        self.pieces.append(("text", text))
        return len(self.pieces) - 1

    def special(self, token_ids: list[int]) -> int:
        self.pieces.append(("ids", list(token_ids)))
        return len(self.pieces) - 1

    def start(self, handle: int) -> int:
        return self.spans[handle][0]

    def end(self, handle: int) -> int:
        return self.spans[handle][1]

    def after(self, handle: int) -> int:
        """Index of the token that holds the character right after the piece."""
        return self.following[handle]

    def encode(self, with_text: bool) -> tuple[list[int], str]:
        """All the ids, and the text with special tokens spelled out when ``with_text``."""
        tok = self.renderer.tokenizer
        ids: list[int] = []
        text: list[str] = []
        self.spans = [(0, 0)] * len(self.pieces)
        self.following = [0] * len(self.pieces)
        i = 0
        while i < len(self.pieces):
            kind, payload = self.pieces[i]
            if kind == "ids":
                self.spans[i] = (len(ids), len(ids) + len(payload))
                self.following[i] = len(ids) + len(payload)
                ids += payload
                if with_text:
                    text += tok.convert_ids_to_tokens(payload)
                i += 1
                continue
            j = i
            run = ""
            bounds = []  # per piece: its first and end character in the run
            while j < len(self.pieces) and self.pieces[j][0] == "text":
                a = len(run)
                run += self.pieces[j][1]
                bounds.append((a, len(run)))
                j += 1
            base = len(ids)
            run_ids, offsets = _encode_with_offsets(tok, run, [b for bound in bounds for b in bound])
            ids += run_ids
            text.append(run)
            for n, (a, b) in enumerate(bounds):
                self.spans[i + n] = (base + _token_at(offsets, a), base + _token_from(offsets, b))
                self.following[i + n] = base + _token_at(offsets, b)
            i = j
        return ids, "".join(text)


def _token_at(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the token holding ``char`` (or the first one after it; ``len`` at the end)."""
    return next((t for t, (_, end) in enumerate(offsets) if end > char), len(offsets))


def _token_from(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the first token that starts at or after ``char`` (exclusive end of a piece)."""
    return next((t for t, (start, end) in enumerate(offsets) if start >= char and end > start), len(offsets))


def _encode_with_offsets(tokenizer, text: str, cuts: list[int]) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids of ``text`` tokenized whole and each token's character span. A tokenizer without offsets
    (a slow one) gets the text tokenized piece by piece at ``cuts`` instead."""
    if not text:
        return [], []
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    points = sorted({0, len(text), *cuts})
    for a, b in zip(points, points[1:], strict=False):
        piece = encode_text(tokenizer, text[a:b])
        ids += piece
        offsets += [(a, b)] * len(piece)
    return ids, offsets
