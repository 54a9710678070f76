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
        tpl, ids, k = self.template, self.ids, self.tokens_per_frame
        parts = _Parts(self)
        pending = ""  # template text waiting before the next opening piece
        closes: list[int] = []  # where the last stream's closing text goes (its piece, once known)

        def open_piece(text: str) -> int:
            """The pending text and an opening piece: two pieces of one text run. Returns the first."""
            nonlocal pending, closes
            first = None
            if pending:
                first = parts.text(pending)
                closes.append(first)
            closes = []
            pending = ""
            second = parts.text(text)
            return second if first is None else first
        # what to do once ids are known: (kind, turn index in body, part handles...)
        plan: list[tuple[Any, ...]] = []

        if ids.bos_id is not None:
            parts.special([ids.bos_id])
        body = [(j, t) for j, t in enumerate(turns) if not (t.role == "stream" and t.num_frames == 0)]
        for i, (index, turn) in enumerate(body):
            nxt = body[i + 1][1] if i + 1 < len(body) else None
            if turn.role == "system":
                plan.append(("system", index, parts.text(turn.content)))
                pending = tpl.system_close
            elif turn.role == "user":
                opening = open_piece(tpl.user_open)
                plan.append(("user", index, opening, self._content(parts, turn.content)))
                pending = ""
            elif turn.role == "assistant":
                opening = open_piece(tpl.assistant_open)
                content = self._content(parts, turn.content)
                eos = parts.special([ids.eos_id])
                plan.append(("assistant", index, opening, content, eos, turn))
                pending = ""
            else:  # stream
                opening = open_piece(tpl.stream_open)
                frames = []
                for f in range(turn.num_frames):
                    if f > 0 and ids.interval_id is not None:
                        parts.text(self.config.interval_token)
                    frames.append(parts.special([ids.frame_id] * k))
                pending = tpl.stream_close
                closes = []
                plan.append(("stream", index, opening, frames, turn, nxt, closes))
        if pending:
            closes.append(parts.text(pending))
        input_ids, text = parts.encode(with_text)
        labels = [IGNORE_INDEX] * len(input_ids)
        frame_positions: list[list[int]] = []
        spans: list[TurnSpan] = []
        for entry in plan:
            role, index = entry[0], entry[1]
            if role in ("system", "user"):
                spans.append(TurnSpan(index, role, parts.start(entry[2]), parts.end(entry[-1])))
            elif role == "assistant":
                _, _, opening, content, eos, turn = entry
                start, end = parts.start(opening), parts.end(eos)
                span = TurnSpan(index, "assistant", start, end, reply_start=parts.start(content))
                if turn.learn:  # every token after the one that holds the opening's first character
                    for q in range(start + 1, end):
                        labels[q - 1] = input_ids[q]
                        span.target_positions.append(q - 1)
                spans.append(span)
            else:
                _, _, opening, frames, turn, nxt, close = entry
                span = TurnSpan(index, "stream", parts.start(opening), parts.end(frames[-1]))
                learned = turn.learned_frames()
                for f, handle in enumerate(frames):
                    positions = list(range(parts.start(handle), parts.end(handle)))
                    frame_positions.append(positions)
                    last = positions[-1]
                    is_last = f == turn.num_frames - 1
                    speaks = is_last and nxt is not None and nxt.role == "assistant"
                    span.decisions.append(FrameDecision(len(frame_positions) - 1, last, f < learned, speaks))
                    if f < learned and is_last and close and self.config.last_frame_label == "next_token":
                        # upstream: the closing text and the character after it (``]\\n``), all its tokens
                        for q in range(last + 1, min(parts.after(close[0]), len(input_ids) - 1) + 1):
                            labels[q - 1] = input_ids[q]
                    elif f < learned:
                        labels[last] = input_ids[last + 1] if speaks else ids.silence_id
                spans.append(span)
        return RenderedConversation(input_ids, labels, frame_positions, spans), text


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
