"""Narration dialogues with questions asked along the way: a stream narrated while the user asks
about the task, as ``streamvlm demo`` and the live service ask.

A narration dialogue (:mod:`.narration`) holds one instruction and the narrations; a live-chat
dialogue (:mod:`.livechat`) of the same video holds timed questions, each answered at once. A
model trained on the two kinds apart has never answered a question in the middle of a narrated
stream, and there it mixes the two (an answer that runs into a narration, or into the layout's
``Assistant:``). :func:`mix_questions` puts the live-chat dialogue's questions and their immediate
answers into the narration dialogue at their times; the narrations go on around them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ...model.conversation import Turn
from ..jsonl import ConversationRecord
from .timeline import fill_streams, frame_at


def _events(turns: Iterable[Turn], fps: float) -> list[tuple[int, list[Turn]]]:
    """The said turns (not system, not stream) grouped by the frame they are said after, in order."""
    events: list[tuple[int, list[Turn]]] = []
    for turn in turns:
        if turn.role in ("system", "stream"):
            continue
        frame = frame_at(turn.time, fps)
        if events and events[-1][0] == frame:
            events[-1][1].append(turn)
        else:
            events.append((frame, [turn]))
    return events


def _questions(livechat: ConversationRecord) -> Iterator[tuple[int, list[Turn]]]:
    """(frame, [question, its answer]) of each question of a live-chat dialogue answered at once."""
    turns = [t for t in livechat.conversation if t.role not in ("system", "stream")]
    for question, answer in zip(turns, turns[1:]):
        if question.role == "user" and answer.role == "assistant" and answer.time == question.time:
            yield frame_at(question.time, livechat.fps), [question, answer]


def mix_questions(narration: ConversationRecord, livechat: ConversationRecord) -> ConversationRecord | None:
    """``narration`` with the questions of ``livechat`` (same video and fps) and their immediate
    answers inserted at their frames; the live-chat's later updates are left out, and so is a
    question at a frame where something is already said, or outside the narration's first and
    last events (the instruction comes first). None when no question fits."""
    if narration.fps != livechat.fps:
        raise ValueError(f"{narration.id} and {livechat.id}: different fps ({narration.fps}, {livechat.fps})")
    events = _events(narration.conversation, narration.fps)
    if len(events) < 2:
        return None
    taken = {frame for frame, _ in events}
    first, last = events[0][0], events[-1][0]
    asked = [(frame, said) for frame, said in _questions(livechat) if first < frame < last and frame not in taken]
    if not asked:
        return None
    system = [t for t in narration.conversation if t.role == "system"]
    start = frame_at(narration.start, narration.fps)
    mixed = sorted(events + asked, key=lambda event: event[0])
    turns = system + fill_streams(mixed, start, narration.fps, learn_first=False)
    return ConversationRecord(
        id=f"{narration.id}/asked", video=narration.video, fps=narration.fps, start=narration.start,
        conversation=turns, meta={**narration.meta, "source": "narration_with_questions",
                                  "questions_from": livechat.id},
    )
