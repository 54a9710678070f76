"""Live evaluation: the model streams a clip as in use and its replies are scored against the
clip's ground-truth narrations, per time window.

The paper's metrics (:mod:`.metrics`, :mod:`.stream_eval`) are teacher-forced: the gold history
sits in the KV cache, so they see neither a KV policy nor the model's own replies. Here the model
watches the frames through a :class:`~streamvlm.engine.pipeline.StreamPipeline` (its own
replies in the cache, the chosen KV policy), and what it said is compared with the truth.

Scoring is a set of pure functions over ``(gold narrations, replies)`` (:func:`score_stream`);
the streaming part (:func:`run_live`) is a thin loop. Definitions (``tolerance`` = 2 s):

* a gold narration at ``t`` is **answered** when a reply comes within ``[t, t + tolerance]`` (the
  reply is due at the first frame at or after ``t``, as in training; ``early`` widens it to
  ``[t - early, t + tolerance]``).
  Narrations are taken in time order, each paired with the earliest reply of its interval not
  already paired (a reply answers at most one narration; this pairing answers the most
  narrations). Narrations after the stream's last frame are left out (nothing could answer them).
* a paired reply is **right** by its **text** (equal to the narration, ignoring case, spacing and
  the final period), its **verb**, its **object** (the first "colour kind" it names, e.g. "red
  cup", equal to the narration's) and its object's **kind** alone (colour ignored).
* a reply is **well-formed** when it is a sentence of the world's narration grammar: ``"You "`` +
  one verb's imperative with "colour kind" objects + ``"."`` (:mod:`~streamvlm.data.synth.vocabulary`).
* a **false alarm** is a reply with no gold narration at all within ``[r - tolerance, r + early]``; a
  **repeat** is an unpaired reply that has one (the narration was answered by an earlier reply).
* replies to user queries (the narration instruction at 0 s, a question) are not narration
  replies: they are counted as ``answers`` and not scored.

Windows are ``[k * window, (k + 1) * window)`` of stream time; a narration belongs to the window
of its time, a reply to the window of its own. Counts add up across windows and across streams
(:func:`combine`), and rates are computed from the counts (None when there is nothing to divide).
"""

from __future__ import annotations

import bisect
import math
import re
import time as _time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.synth.vocabulary import COLOURS, KIND_RADIUS, VERBS

if TYPE_CHECKING:
    from ..engine.assistant import LiveAssistant
    from ..engine.pipeline import FrameConsumer

DEFAULT_WINDOW = 300.0
"""Seconds per window (5 minutes)."""
DEFAULT_TOLERANCE = 2.0
"""A narration is answered by a reply within this many seconds after it."""
_EPS = 1e-6


# ============================================================================ the world's grammar
@dataclass(frozen=True)
class Parsed:
    """What a sentence says in the world's vocabulary."""

    well_formed: bool
    """A sentence of the narration grammar (``You pick up the red cup.``)."""
    verb: str | None
    """The verb's name (``pick``, ``put_in``, ...; see ``VERBS``), also found in a malformed sentence
    whose words around the objects are a verb's."""
    objects: tuple[tuple[str, str], ...]
    """Every ``(colour, kind)`` named, in order."""

    @property
    def object(self) -> tuple[str, str] | None:
        """The first object named (the one acted on; the tool for "wipe" and "pour")."""
        return self.objects[0] if self.objects else None


def normalize(text: str) -> str:
    """Lower case, single spaces, no final period: the form exact-text comparison uses."""
    return " ".join(text.lower().split()).rstrip(" .!?")


@lru_cache(maxsize=1)
def _grammar() -> tuple[re.Pattern, list[tuple[str, re.Pattern, re.Pattern]]]:
    colours = "|".join(sorted(COLOURS, key=len, reverse=True))
    kinds = "|".join(re.escape(k) for k in sorted(KIND_RADIUS, key=len, reverse=True))
    mention = re.compile(rf"\b({colours}) ({kinds})\b")
    patterns = []
    for verb in VERBS.values():
        parts = re.split(r"(\{obj\}|\{target\}|\{tool\})", verb.imperative)
        strict = "".join(f"(?:{colours}) (?:{kinds})" if p.startswith("{") else re.escape(p) for p in parts)
        loose = "".join(r"[^.\s][^.]*?" if p.startswith("{") else re.escape(p) for p in parts)
        patterns.append((verb.name, re.compile(rf"you {strict}\."), re.compile(rf"you {loose}\.?")))
    return mention, patterns


def parse_sentence(text: str) -> Parsed:
    """Parse a reply or a narration with the world's vocabulary (see :class:`Parsed`)."""
    mention, patterns = _grammar()
    clean = " ".join(text.split())
    low = clean.lower()
    objects = tuple((m[1], m[2]) for m in mention.finditer(low))
    well_formed = clean.startswith("You ") and any(strict.fullmatch(low) for _, strict, _ in patterns)
    verb = next((name for name, strict, _ in patterns if strict.fullmatch(low)), None)
    if verb is None:
        verb = next((name for name, _, loose in patterns if loose.fullmatch(low)), None)
    return Parsed(well_formed, verb, objects)


# ============================================================================ scoring
@dataclass(frozen=True)
class Narration:
    """A ground-truth narration (already in the reply form, ``You pick up the red cup.``)."""

    time: float
    text: str


@dataclass(frozen=True)
class Reply:
    """What the model said at stream time ``time``."""

    time: float
    text: str


@dataclass(frozen=True)
class Match:
    """A narration and the reply that answered it."""

    gold: Narration
    reply: Reply
    text: bool
    verb: bool
    object: bool
    kind: bool


@dataclass
class WindowScore:
    """Counts of one window (or of a whole stream); the rates are properties."""

    start: float = 0.0
    end: float = 0.0
    narrations: int = 0
    """Gold narrations in the window (those after the stream's end left out)."""
    answered: int = 0
    """... answered by a reply within the tolerance."""
    right_text: int = 0
    right_verb: int = 0
    right_object: int = 0
    right_kind: int = 0
    """... whose reply has the right text / verb / object (colour and kind) / object kind."""
    replies: int = 0
    """Narration replies the model made in the window (answers to queries excluded)."""
    well_formed: int = 0
    false_alarms: int = 0
    repeats: int = 0
    answers: int = 0
    """Replies to user queries (not scored)."""

    def __add__(self, other: WindowScore) -> WindowScore:
        out = WindowScore(min(self.start, other.start), max(self.end, other.end))
        for f in fields(self):
            if f.name not in ("start", "end"):
                setattr(out, f.name, getattr(self, f.name) + getattr(other, f.name))
        return out

    @staticmethod
    def _rate(count: int, total: int) -> float | None:
        return count / total if total else None

    @property
    def rates(self) -> dict[str, float | None]:
        """``answered`` of the narrations; ``text``/``verb``/``object``/``kind`` of the answered
        narrations; ``well_formed`` and ``false_alarm`` of the replies."""
        r = self._rate
        return {"answered": r(self.answered, self.narrations), "text": r(self.right_text, self.answered),
                "verb": r(self.right_verb, self.answered), "object": r(self.right_object, self.answered),
                "kind": r(self.right_kind, self.answered), "well_formed": r(self.well_formed, self.replies),
                "false_alarm": r(self.false_alarms, self.replies)}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out["rates"] = self.rates
        return out


MEASURES: dict[str, str] = {
    "answered": "answered within the tolerance (of the narrations)",
    "text": "right text (of the answered)",
    "verb": "right verb (of the answered)",
    "object": "right object, colour and kind (of the answered)",
    "kind": "right object kind (of the answered)",
    "well_formed": "well-formed (of the replies)",
    "false_alarm": "false alarms (of the replies)",
}
"""The rates of a :class:`WindowScore`, in table order."""


@dataclass
class Confusion:
    """Colours and object kinds, gold against predicted.

    ``mentions``: how often each value is named by the gold narrations and by the model's replies
    (every object each names); ``pairs``: ``(gold, predicted)`` counts of the first object of each
    answered narration and its reply (``"-"`` when the reply names none)."""

    gold: Counter = field(default_factory=Counter)
    predicted: Counter = field(default_factory=Counter)
    pairs: Counter = field(default_factory=Counter)

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.gold + other.gold, self.predicted + other.predicted, self.pairs + other.pairs)

    def values(self) -> list[str]:
        """Every value named by the gold, the replies or a pair, in the vocabulary's order."""
        seen = set(self.gold) | set(self.predicted) | {v for pair in self.pairs for v in pair} - {"-"}
        order = {v: i for i, v in enumerate([*COLOURS, *KIND_RADIUS])}
        return sorted(seen, key=lambda v: (order.get(v, len(order)), v))

    def over_predicted(self) -> dict[str, float]:
        """Value -> (its share of the replies' mentions) / (its share of the gold mentions), for every
        value named by either (``inf`` for one the gold never names)."""
        g, p = sum(self.gold.values()), sum(self.predicted.values())
        out = {}
        for value in self.values():
            gs = self.gold[value] / g if g else 0.0
            ps = self.predicted[value] / p if p else 0.0
            out[value] = ps / gs if gs else (math.inf if ps else 0.0)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"gold": dict(self.gold), "predicted": dict(self.predicted),
                "pairs": [[g, p, n] for (g, p), n in sorted(self.pairs.items())],
                "over_predicted": {k: (None if math.isinf(v) else round(v, 4))
                                   for k, v in self.over_predicted().items()}}


@dataclass
class StreamScore:
    """The score of one stream (or of several, :func:`combine`)."""

    windows: list[WindowScore]
    overall: WindowScore
    colours: Confusion
    kinds: Confusion
    matches: list[Match] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"windows": [w.as_dict() for w in self.windows], "overall": self.overall.as_dict(),
                "colours": self.colours.as_dict(), "kinds": self.kinds.as_dict()}


def match_replies(gold: Sequence[Narration], replies: Sequence[Reply], tolerance: float = DEFAULT_TOLERANCE,
                  early: float = 0.0) -> list[tuple[Narration, Reply]]:
    """Pair each narration (in time order) with the earliest free reply in ``[t - early, t + tolerance]``."""
    replies = sorted(replies, key=lambda r: r.time)
    times = [r.time for r in replies]
    used = [False] * len(replies)
    pairs = []
    for g in sorted(gold, key=lambda n: n.time):
        i = bisect.bisect_left(times, g.time - early - _EPS)
        while i < len(replies) and replies[i].time <= g.time + tolerance + _EPS:
            if not used[i]:
                used[i] = True
                pairs.append((g, replies[i]))
                break
            i += 1
    return pairs


def judge(gold: Narration, reply: Reply) -> Match:
    """How right ``reply`` is as the answer to ``gold``."""
    g, p = parse_sentence(gold.text), parse_sentence(reply.text)
    return Match(gold, reply, text=normalize(gold.text) == normalize(reply.text),
                 verb=g.verb is not None and g.verb == p.verb,
                 object=g.object is not None and g.object == p.object,
                 kind=g.object is not None and p.object is not None and g.object[1] == p.object[1])


def window_count(duration: float, window: float) -> int:
    """Windows of a stream of ``duration`` seconds (the last may be partial); at least one."""
    return max(1, math.ceil(duration / window - _EPS))


def score_stream(gold: Sequence[Narration], replies: Sequence[Reply], *, window: float = DEFAULT_WINDOW,
                 tolerance: float = DEFAULT_TOLERANCE, early: float = 0.0, end: float | None = None,
                 duration: float | None = None, answers: Sequence[Reply] = ()) -> StreamScore:
    """Score one stream's narration ``replies`` against its ``gold`` narrations, per window.

    ``end``: the time of the stream's last frame (narrations after it are left out; default: no
    limit). ``duration``: the stream's length, which sets the number of windows (default: the
    latest of ``end``, the narrations and the replies). ``answers``: replies to user queries,
    only counted. ``early``: a reply up to this many seconds before a narration also answers it
    (default 0: the reply is due at the first frame at or after the narration, as in training)."""
    if window <= 0 or tolerance < 0 or early < 0:
        raise ValueError("window must be > 0, tolerance and early >= 0")
    gold = sorted((g for g in gold if end is None or g.time <= end + _EPS), key=lambda g: g.time)
    replies = sorted(replies, key=lambda r: r.time)
    last = max([0.0] + [g.time for g in gold] + [r.time for r in replies] + [r.time for r in answers]
               + ([end] if end is not None else []))
    total = duration if duration is not None else last + _EPS
    windows = [WindowScore(k * window, min((k + 1) * window, max(total, k * window)))
               for k in range(max(window_count(total, window), math.floor(last / window) + 1))]

    def at(t: float) -> WindowScore:
        return windows[min(int(t // window), len(windows) - 1)]

    matches = [judge(g, r) for g, r in match_replies(gold, replies, tolerance, early)]
    paired = {id(m.reply) for m in matches}
    gold_times = [g.time for g in gold]
    colours, kinds = Confusion(), Confusion()
    for g in gold:
        w = at(g.time)
        w.narrations += 1
        for colour, kind in parse_sentence(g.text).objects:
            colours.gold[colour] += 1
            kinds.gold[kind] += 1
    for m in matches:
        w = at(m.gold.time)
        w.answered += 1
        w.right_text += m.text
        w.right_verb += m.verb
        w.right_object += m.object
        w.right_kind += m.kind
        g, p = parse_sentence(m.gold.text).object, parse_sentence(m.reply.text).object
        if g is not None:
            colours.pairs[(g[0], p[0] if p else "-")] += 1
            kinds.pairs[(g[1], p[1] if p else "-")] += 1
    for r in replies:
        w = at(r.time)
        w.replies += 1
        parsed = parse_sentence(r.text)
        w.well_formed += parsed.well_formed
        for colour, kind in parsed.objects:
            colours.predicted[colour] += 1
            kinds.predicted[kind] += 1
        if id(r) not in paired:
            i = bisect.bisect_left(gold_times, r.time - tolerance - _EPS)
            if i < len(gold_times) and gold_times[i] <= r.time + early + _EPS:
                w.repeats += 1
            else:
                w.false_alarms += 1
    for a in answers:
        at(a.time).answers += 1
    overall = WindowScore(0.0, windows[-1].end)
    for w in windows:
        overall = overall + w
    return StreamScore(windows, overall, colours, kinds, matches)


def combine(scores: Sequence[StreamScore]) -> StreamScore:
    """Several streams scored together: counts added window by window (window k of every stream)."""
    if not scores:
        raise ValueError("combine: no scores")
    count = max(len(s.windows) for s in scores)
    windows = []
    for k in range(count):
        parts = [s.windows[k] for s in scores if k < len(s.windows)]
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        windows.append(total)
    overall = scores[0].overall
    colours, kinds = scores[0].colours, scores[0].kinds
    for s in scores[1:]:
        overall, colours, kinds = overall + s.overall, colours + s.colours, kinds + s.kinds
    return StreamScore(windows, overall, colours, kinds, [m for s in scores for m in s.matches])


# ============================================================================ the live stream
@dataclass
class LiveRun:
    """What one stream produced: narration replies, answers to queries, and how it ran."""

    replies: list[Reply] = field(default_factory=list)
    answers: list[Reply] = field(default_factory=list)
    frames: int = 0
    end: float = 0.0
    """Time of the last frame."""
    seconds: float = 0.0
    max_kv: int | None = None
    """The most tokens the KV cache held after a frame (None when the consumer has no session)."""
    evicted: int | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def split_events(events: Iterable[Any]) -> tuple[list[Reply], list[Reply]]:
    """Text events (``time``, ``role``, ``text``) -> (narration replies, answers to queries): an
    assistant event right after a user event answers it."""
    replies, answers = [], []
    after_user = False
    for e in events:
        if e.role == "user":
            after_user = True
            continue
        if e.role == "assistant":
            (answers if after_user else replies).append(Reply(float(e.time), e.text))
        after_user = False
    return replies, answers


def run_live(consumer: FrameConsumer, frames: Iterable[Any], queries: Iterable[Any] = (), *,
             on_step: Callable[[Any, LiveRun], None] | None = None) -> LiveRun:
    """Stream ``frames`` (objects with ``time``, ``index``, ``image``) through ``consumer`` (a
    :class:`~streamvlm.engine.pipeline.FrameConsumer`: a ``LiveAssistant``, or a scripted fake)
    in the parallel pipeline, offline (no frame dropped), asking ``queries``
    (:class:`~streamvlm.engine.options.TimedQuery`). ``on_step(step, run)`` after each frame."""
    from ..engine.pipeline import StreamPipeline

    run = LiveRun()
    session = getattr(consumer, "session", None)
    start = _time.perf_counter()
    pipeline = StreamPipeline(consumer, frames, queries=queries)
    try:
        for step in pipeline:
            replies, answers = split_events(step.events)
            run.replies += replies
            run.answers += answers
            run.frames += 1
            run.end = float(step.time)
            if session is not None and hasattr(session, "kv_length"):
                run.max_kv = max(run.max_kv or 0, int(session.kv_length))
                run.evicted = int(getattr(session, "evicted_tokens", 0))
            run.seconds = _time.perf_counter() - start
            if on_step is not None:
                on_step(step, run)
    finally:
        pipeline.close()
    run.seconds = _time.perf_counter() - start
    return run


# ============================================================================ sources of streams
@dataclass(frozen=True)
class Clip:
    """One video of a synthetic world and its ground truth."""

    uid: str
    path: Path
    duration: float
    narrations: tuple[Narration, ...]


@dataclass(frozen=True)
class Stream:
    """What is streamed as one session: one clip, or several back to back (``chain``)."""

    clips: tuple[Clip, ...]

    @property
    def duration(self) -> float:
        return sum(c.duration for c in self.clips)

    @property
    def name(self) -> str:
        return self.clips[0].uid if len(self.clips) == 1 else f"{self.clips[0].uid}+{len(self.clips) - 1}"

    @property
    def offsets(self) -> list[float]:
        out, t = [], 0.0
        for c in self.clips:
            out.append(t)
            t += c.duration
        return out

    @property
    def narrations(self) -> list[Narration]:
        return [Narration(round(o + n.time, 6), n.text) for o, c in zip(self.offsets, self.clips) for n in c.narrations]


def world_clips(world: Any) -> list[Clip]:
    """The clips of a loaded :class:`~streamvlm.data.synth.SynthWorld`, narrations rule-refined to
    the reply form (``#C C picks up the red cup`` -> ``You pick up the red cup.``)."""
    from ..data.generate.narration import rule_refine

    return [Clip(v.uid, world.video_path(v.uid), float(v.duration),
                 tuple(sorted((Narration(float(a.time), rule_refine(a.narration)) for a in v.actions),
                              key=lambda n: n.time)))
            for v in world.videos]


def stream_frames(stream: Stream, fps: float, fit: Any) -> Iterator[Any]:
    """The sampled frames of ``stream``'s videos, decoded one after the other at ``fit`` (the
    model's :class:`~streamvlm.video.resize.FrameFit`), times and indices running on across clips."""
    from ..video import open_source
    from ..video.frames import Frame

    index = 0
    for offset, clip in zip(stream.offsets, stream.clips):
        with open_source(clip.path, fps=fps, fit=fit) as source:
            for frame in source:
                yield Frame(round(offset + frame.time, 6), index, frame.image)
                index += 1


def feature_frames(stream: Stream, features_dir: Path, fps: float, relative_to: dict[str, str],
                   frames: Any = None) -> Iterator[Any]:
    """The frames of ``stream`` from pre-extracted frame tokens (``streamvlm encode``): the
    ``image`` of each frame is its ``[T, D_vision]`` tokens (see :class:`FeatureConsumer`). Files
    made otherwise than ``frames`` (a :class:`~streamvlm.model.frame_record.FrameRecord`) are refused."""
    from ..data.features import FeatureStore, feature_path, load_frames, read_info
    from ..errors import DataError
    from ..video.frames import Frame

    index = 0
    store = FeatureStore(features_dir, frames=frames)
    for offset, clip in zip(stream.offsets, stream.clips):
        path = feature_path(features_dir, relative_to[clip.uid])
        info = read_info(path)
        store.check_frames(path, info)
        if abs(info.fps - fps) > 1e-6:
            raise DataError(f"features are at {info.fps} fps, the stream at {fps} fps (--fps)", file=str(path))
        count = min(info.num_frames, math.ceil(clip.duration * fps - _EPS))
        for first in range(0, count, 256):
            tokens = load_frames(path, first, min(count, first + 256))
            for k in range(tokens.shape[0]):
                yield Frame(round(offset + (first + k) / fps, 6), index, tokens[k])
                index += 1


class FeatureConsumer:
    """A live assistant fed frame tokens instead of images: ``encode_images`` projects them with
    the model's connector."""

    def __init__(self, assistant: LiveAssistant) -> None:
        self.assistant = assistant
        self.session = assistant.session

    def encode_images(self, images: Sequence[Any]) -> Any:
        import torch

        with torch.inference_mode():
            return self.assistant.model.project_frames(torch.stack([torch.as_tensor(i) for i in images]))

    def ask(self, text: str, time: float) -> None:
        self.assistant.ask(text, time)

    def push_frame(self, frame: Any, time: float) -> list[Any]:
        return self.assistant.push_frame(frame, time)


# ============================================================================ reports
def policy_name(assistant: LiveAssistant) -> str:
    """``sink 128 + window 896 tokens`` or ``unbounded``, from an assistant's engine."""
    policy = getattr(getattr(getattr(assistant, "session", None), "engine", None), "kv_policy", None)
    if policy is None:
        return "unbounded"
    sink, window = getattr(policy, "sink_tokens", None), getattr(policy, "window_tokens", None)
    if sink is not None and window is not None:
        return f"sink {sink} + window {window} tokens"
    return f"{type(policy).__name__} ({policy.max_tokens} tokens)"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _minutes(seconds: float) -> str:
    m = seconds / 60
    return f"{m:g}" if abs(m - round(m, 1)) < 1e-9 else f"{m:.1f}"


def format_table(score: StreamScore) -> str:
    """The per-window table of a score (minutes of stream time; rates as in :data:`MEASURES`)."""
    head = ["window (min)", "narrations", "answered", "text", "verb", "object", "kind", "replies", "well-formed",
            "false alarms", "repeats"]
    rows = []
    for w in [*score.windows, score.overall]:
        r = w.rates
        label = "all" if w is score.overall else f"{_minutes(w.start)}-{_minutes(w.end)}"
        rows.append([label, str(w.narrations), _pct(r["answered"]), _pct(r["text"]), _pct(r["verb"]),
                     _pct(r["object"]), _pct(r["kind"]), str(w.replies), _pct(r["well_formed"]),
                     str(w.false_alarms), str(w.repeats)])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(widths[i]) if i else h.ljust(widths[i]) for i, h in enumerate(head))]
    for row in rows:
        lines.append("  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(row)))
    return "\n".join(lines)


def drift(score: StreamScore) -> dict[str, float | None]:
    """The last window's rate minus the first window's, in points, per measure of :data:`MEASURES`
    (``None`` where either window has nothing to rate); empty for a single window. Streams whose
    first and last windows hold the same frames (a clip played again at the end of a chained
    stream) make this the change the stream's length alone brought."""
    if len(score.windows) < 2:
        return {}
    first, last = score.windows[0].rates, score.windows[-1].rates
    return {m: None if first[m] is None or last[m] is None else round(100 * (last[m] - first[m]), 6)
            for m in MEASURES}


def drift_line(score: StreamScore) -> str:
    """``last window - first window (points): answered +1.2, text -3.0, ...`` ('' for one window)."""
    changes = drift(score)
    if not changes:
        return ""
    parts = [f"{m.replace('_', ' ')} {'n/a' if v is None else f'{v:+.1f}'}" for m, v in changes.items()]
    return "last window - first window (points): " + ", ".join(parts)


def confusion_table(confusion: Confusion, title: str) -> str:
    """Rows: gold values; columns: the values the paired replies named (``-``: none); then how often
    each value is named by the gold narrations and by the replies, and the ratio of their shares."""
    values = confusion.values()
    columns = [*values, "-"]
    width = max([len(title), *(len(v) for v in columns), 5])
    lines = [f"{title}: gold (rows) against the paired replies (columns)",
             " " * width + "  " + "  ".join(c.rjust(width) for c in columns)]
    for g in values:
        lines.append(g.ljust(width) + "  " + "  ".join(str(confusion.pairs[(g, p)]).rjust(width) for p in columns))
    ratio = confusion.over_predicted()
    lines.append(f"{title}: named by the gold / by the replies (ratio of shares)")
    for value in values:
        x = ratio[value]
        lines.append(f"  {value.ljust(width)}  {confusion.gold[value]:>6} / {confusion.predicted[value]:<6} "
                     f"({'never in the gold' if math.isinf(x) else f'{x:.2f}x'})")
    return "\n".join(lines)


def summary_line(score: WindowScore, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """One line for a short stream (the demo): counts with their denominators."""
    r = score
    return (f"answered within {tolerance:g} s {r.answered}/{r.narrations} | right text {r.right_text}/{r.answered}, "
            f"verb {r.right_verb}/{r.answered}, object {r.right_object}/{r.answered} | "
            f"well-formed {r.well_formed}/{r.replies} | false alarms {r.false_alarms}/{r.replies}")


TEMPLATE_TEXT = re.compile(r"User:|Assistant:|[\[\]]")
"""Text of the stream layout (a role opener, a bracket around frames) that no reply should hold."""


def has_template_text(text: str) -> bool:
    """Whether a reply holds text of the stream layout (:data:`TEMPLATE_TEXT`)."""
    return TEMPLATE_TEXT.search(text) is not None


def has_loop(text: str, span: int = 3, times: int = 3) -> bool:
    """Whether a reply says one run of ``span`` words ``times`` times or more (case ignored), as
    ``You pick up the red in pick up the red in pick up the red box`` does."""
    words = re.findall(r"[\w']+", text.lower())
    runs = Counter(tuple(words[i:i + span]) for i in range(len(words) - span + 1))
    return any(count >= times for count in runs.values())
