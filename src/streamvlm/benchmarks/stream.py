"""The benchmarks' one door into the streaming engine: load a model, turn videos into frame
embeddings, and run *plans* (a session over a range of frames, with questions asked or scored at
given frames), many sessions advanced together by the batched step.

Only public names of the engine are used here (``load_model`` / ``ModelSource``, ``resolve_stream``,
``encode_images``, ``StreamSession.push_query`` / ``score_continuations`` and the batched
``step_frames``); the rest of the benchmark code never touches a session.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..engine.options import GenerationConfig
from ..errors import UserError
from ..model.loading import ModelSource

if TYPE_CHECKING:
    from ..engine.session import StreamSession

_EPS = 1e-6
INSTRUCTION = "instruction"
"""The tag of a plan's instruction in :attr:`Outcome.answers`."""
_NOTHING = object()


@dataclass
class Frames:
    """One video sampled at the model's fps: ``embeds [N, T, D]`` (LM width) at ``times`` (seconds)."""

    embeds: Tensor
    times: list[float]

    def index_at(self, time: float) -> int:
        """The last frame at or before ``time`` (the first frame when ``time`` precedes it)."""
        lo, hi = 0, len(self.times) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.times[mid] <= time + _EPS:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def seen_through(self, other: Frames) -> Frames:
        """The blind baseline's frames: ``other``'s pictures (looped) at this video's times."""
        picks = torch.arange(len(self.times)) % other.embeds.shape[0]
        return Frames(other.embeds[picks], list(self.times))


@dataclass
class Ask:
    """Something done at one frame of a plan: ``query`` asked (text mode: answered right after the
    frame), or, with ``candidates``, the candidates' log-probabilities as replies to ``query`` at
    that point (nothing changes in the stream)."""

    frame: int
    tag: Any
    query: str
    candidates: list[list[int]] | None = None


@dataclass
class Plan:
    """One session: frames ``first..last`` of ``frames``, the asks, and an instruction asked at the
    first frame whose answer is not scored."""

    frames: Frames
    first: int
    last: int
    asks: list[Ask] = field(default_factory=list)
    instruction: str | None = None
    tag: Any = None
    """The caller's name for the plan."""


@dataclass
class Outcome:
    """What a plan's session said: the answer to each text ask (by tag), the scores of each scored
    ask, and every reply with its time and whether it answered a question (``(time, text, asked)``)."""

    answers: dict[Any, str] = field(default_factory=dict)
    scores: dict[Any, list[float]] = field(default_factory=dict)
    replies: list[tuple[float, str, bool]] = field(default_factory=list)


class Streamer:
    """A model and its streaming settings, ready to run plans."""

    def __init__(self, source: ModelSource, generation: GenerationConfig, kv_budget: int | None,
                 fps: float | None) -> None:
        from ..engine.defaults import resolve_stream
        from ..engine.narration import frame_fit
        from ..engine.options import StreamOptions
        from ..model.loading import load_model

        self.model = load_model(source)
        self.generation = generation
        self.setup = resolve_stream(self.model, StreamOptions(fps=fps, kv_budget=kv_budget), generation)
        self.engine = self.setup.engine()
        self.fps = self.setup.fps
        self.fit = frame_fit(self.model)

    def frames(self, path: Path) -> Frames:
        """Decode ``path`` at the model's fps and encode every frame (in batches of 32)."""
        from ..engine.assistant import encode_images
        from ..video import open_source

        embeds, times, batch = [], [], []
        with open_source(str(path), fps=self.fps, fit=self.fit) as source:
            for frame in source:
                batch.append(frame.image)
                times.append(frame.time)
                if len(batch) == 32:
                    embeds.append(encode_images(self.model, batch))
                    batch = []
        if batch:
            embeds.append(encode_images(self.model, batch))
        if not times:
            raise UserError(f"{path}: no frame could be decoded")
        return Frames(torch.cat(embeds), times)

    def continuation(self, text: str, *, end: bool = True) -> list[int]:
        """The ids of ``text`` as a reply's content (and eos after it, ``end``)."""
        ids = self.model.renderer.encode_content(text)
        return ids + [self.model.token_ids.eos_id] if end else ids

    def describe(self) -> dict[str, Any]:
        policy = self.setup.kv_policy
        return {"fps": self.fps, "threshold": self.generation.threshold,
                "kv_budget": policy.max_tokens if policy is not None else 0}

    def run(self, plans: Iterable[Plan], on_done: Callable[[Plan, Outcome], None], *, batch: int = 8,
            on_frames: Callable[[int], None] | None = None) -> None:
        """Run every plan, ``batch`` sessions advanced together frame by frame; ``on_done(plan,
        outcome)`` as each finishes (``on_frames(n)`` after each step of n sessions)."""
        from ..engine.batch import step_frames

        pending: Iterator[Plan] = iter(plans)
        active: list[_Running] = []
        engine = self.engine
        while True:
            while len(active) < batch and (plan := next(pending, None)) is not None:
                active.append(_Running(plan, engine.new_session()))
            if not active:
                return
            for running in active:
                running.before_step()
            results = step_frames([r.session for r in active], [r.frame_embeds() for r in active],
                                  [r.time() for r in active])
            for running, result in zip(active, results):
                if result.error is not None:
                    raise result.error
                running.after_step(result.events, self.model.tokenizer)
            if on_frames is not None:
                on_frames(len(active))
            still = []
            for running in active:
                if running.cursor > running.plan.last:
                    on_done(running.plan, running.outcome)
                else:
                    still.append(running)
            active = still


class _Running:
    """A plan under way: its session, the next frame, the queries asked and not yet answered."""

    def __init__(self, plan: Plan, session: StreamSession) -> None:
        self.plan, self.session = plan, session
        self.cursor = plan.first
        self.outcome = Outcome()
        self.asked: deque[Any] = deque()
        self.by_frame: dict[int, list[Ask]] = {}
        for ask in plan.asks:
            self.by_frame.setdefault(min(max(ask.frame, plan.first), plan.last), []).append(ask)

    def time(self) -> float:
        return self.plan.frames.times[self.cursor]

    def frame_embeds(self) -> Tensor:
        return self.plan.frames.embeds[self.cursor]

    def before_step(self) -> None:
        """Queue the questions answered right after this frame (asked at its time)."""
        if self.cursor == self.plan.first and self.plan.instruction:
            self.session.push_query(self.plan.instruction, self.time())
            self.asked.append(INSTRUCTION)
        for ask in self.by_frame.get(self.cursor, []):
            if ask.candidates is None:
                self.session.push_query(ask.query, self.time())
                self.asked.append(ask.tag)

    def after_step(self, events, tokenizer) -> None:
        question = _NOTHING  # an assistant event right after a user event answers it
        for event in events:
            if event.role == "user":
                question = self.asked.popleft()
                continue
            text = tokenizer.decode(event.token_ids, skip_special_tokens=True).strip()
            if question is not _NOTHING:
                self.outcome.answers[question] = text
            self.outcome.replies.append((round(event.time, 3), text, question is not _NOTHING))
            question = _NOTHING
        for ask in self.by_frame.get(self.cursor, []):
            if ask.candidates is not None:
                self.outcome.scores[ask.tag] = self.session.score_continuations(ask.query, ask.candidates)
        self.cursor += 1


def best(scores: list[float]) -> int:
    """The index of the highest score (the first on ties; NaN never wins)."""
    values = [s if not math.isnan(s) else -math.inf for s in scores]
    return max(range(len(values)), key=lambda i: (values[i], -i))
