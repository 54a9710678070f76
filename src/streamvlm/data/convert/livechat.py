"""Step annotations (Ego4D GoalStep, COIN) -> live-chat dialogues (MISSION 1.2, data method 2).

Per video, a few templated user questions (past / now / next, see :mod:`.templates`) are placed
at random, seeded times between the video start and the end of the last step. The assistant
answers each question at once, and speaks again at every later step boundary (the end of a step).
The words come from a :class:`~streamvlm.data.responder.Responder`; requests are sent in rounds,
one per unfinished video, so every request carries the dialogue written so far.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field
from tqdm import tqdm

from ...errors import DataError
from ...model.config import UPSTREAM_SYSTEM_PROMPT
from ...model.conversation import Turn
from ...settings import PositiveInt, settings
from ..formats.coin import CoinVideo
from ..formats.ego4d import GoalStepVideo
from ..jsonl import ConversationRecord
from ..responder import Responder, ResponseKind, ResponseRequest, Step
from .templates import questions_for
from .timeline import CONVERSATION_FPS, ConversationFps, fill_streams, frame_at, frame_time

QUESTION_KINDS: tuple[ResponseKind, ...] = ("past", "now", "next")


@dataclass(frozen=True)
class TaskVideo:
    """A video with a goal and ordered steps (times in seconds of the video)."""

    uid: str
    video: str
    start: float
    end: float
    goal: str | None
    steps: tuple[Step, ...]
    source: str


@settings
class LiveChatOptions:
    """How timed step annotations become live-chat dialogues."""

    fps: ConversationFps = CONVERSATION_FPS
    """Frame rate of the conversation's frames."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Seed of every random choice."""
    system_prompt: str = UPSTREAM_SYSTEM_PROMPT
    """System prompt of every dialogue."""
    min_questions: PositiveInt = 1
    """Each dialogue gets at least this many user questions."""
    max_questions: Annotated[PositiveInt, Field(le=100)] = 3
    """Each dialogue gets at most this many user questions (seeded)."""

    def __post_init__(self) -> None:
        if self.max_questions < self.min_questions:
            raise ValueError(f"max_questions {self.max_questions} is below min_questions {self.min_questions}")


def goalstep_tasks(videos: Sequence[GoalStepVideo], video_pattern: str = "{video_uid}.mp4") -> list[TaskVideo]:
    """GoalStep videos -> tasks; the top-level segments are the steps, the goal is the description."""
    return [
        TaskVideo(v.video_uid, video_pattern.format(video_uid=v.video_uid), v.start, v.end, v.goal_description,
                  tuple(Step(s.start, s.end, s.description) for s in v.steps), "ego4d_goalstep")
        for v in videos if v.steps
    ]


def coin_tasks(videos: Sequence[CoinVideo], video_pattern: str = "{video_uid}.mp4") -> list[TaskVideo]:
    """COIN videos -> tasks; the goal is the class in words (``"make french fries"``)."""
    return [
        TaskVideo(v.video_id, video_pattern.format(video_uid=v.video_id), v.start, v.end, v.task,
                  tuple(Step(s.start, s.end, s.label) for s in v.segments), "coin")
        for v in videos if v.segments
    ]


@dataclass
class _Event:
    frame: int
    kind: ResponseKind
    question: str | None


def plan_events(task: TaskVideo, options: LiveChatOptions) -> list[_Event]:
    """Seeded question times/kinds/texts, then an update at each later step end (one per frame).

    Nothing is planned after the task's last frame (the last one before ``task.end``): a question
    drawn later is asked there, and a step ending after it gets no update (no frame shows its end)."""
    rng = random.Random(f"{options.seed}/{task.uid}")
    fps = options.fps
    start_frame = frame_at(task.start, fps)
    last_frame = max(start_frame, frame_at(task.end, fps) - 1)
    last_end = max(s.end for s in task.steps)
    count = rng.randint(options.min_questions, options.max_questions)
    events: dict[int, _Event] = {}
    for _ in range(count):
        frame = min(last_frame, max(start_frame, frame_at(rng.uniform(task.start, last_end), fps)))
        kind = rng.choice(QUESTION_KINDS)
        events.setdefault(frame, _Event(frame, kind, rng.choice(questions_for(kind, task.goal))))
    first_question = min(events)
    for step in task.steps:
        frame = frame_at(step.end, fps)
        if first_question < frame <= last_frame:
            events.setdefault(frame, _Event(frame, "update", None))
    return [events[f] for f in sorted(events)]


def convert_livechat(tasks: Sequence[TaskVideo], responder: Responder,
                     options: LiveChatOptions | None = None, progress: bool = False) -> list[ConversationRecord]:
    """Build one live-chat dialogue per task, asking ``responder`` for every assistant turn."""
    opt = options or LiveChatOptions()
    plans = [plan_events(t, opt) for t in tasks]
    said: list[list[tuple[_Event, str]]] = [[] for _ in tasks]
    rounds = max((len(p) for p in plans), default=0)
    for r in tqdm(range(rounds), desc="responses", unit="round", disable=not progress):
        active = [i for i, p in enumerate(plans) if r < len(p)]
        requests = []
        for i in active:
            event, task = plans[i][r], tasks[i]
            history: list[tuple[str, str]] = []
            for past, reply in said[i]:
                if past.question is not None:
                    history.append(("user", past.question))
                history.append(("assistant", reply))
            requests.append(ResponseRequest(task.uid, frame_time(event.frame, opt.fps), event.kind, task.steps,
                                            task.goal, event.question, tuple(history)))
        replies = responder.respond(requests)
        if len(replies) != len(requests):
            raise DataError(f"the responder returned {len(replies)} replies for {len(requests)} requests")
        for i, reply in zip(active, replies):
            if not isinstance(reply, str) or not reply.strip():
                raise DataError(f"the responder returned an empty reply for video {tasks[i].uid!r}")
            said[i].append((plans[i][r], reply.strip()))
    return [_record(task, items, opt) for task, items in zip(tasks, said)]


def _record(task: TaskVideo, items: list[tuple[_Event, str]], opt: LiveChatOptions) -> ConversationRecord:
    fps = opt.fps
    start_frame = frame_at(task.start, fps)
    events = []
    for event, reply in items:
        time = frame_time(event.frame, fps)
        turns = [Turn("user", event.question, time)] if event.question is not None else []
        turns.append(Turn("assistant", reply, time, learn=True))
        events.append((event.frame, turns))
    conversation = [Turn("system", opt.system_prompt)] + fill_streams(events, start_frame, fps)
    return ConversationRecord(
        id=f"{task.uid}/livechat", video=task.video, fps=fps, start=frame_time(start_frame, fps),
        conversation=conversation, meta={"source": task.source, "video_uid": task.uid, "goal": task.goal},
    )
