"""Narration dialogues with the live-chat questions of their video asked along the way."""

from __future__ import annotations

import pytest

from streamvlm.data.convert.mixed import mix_questions
from streamvlm.data.convert.timeline import fill_streams, frame_at
from streamvlm.data.jsonl import ConversationRecord
from streamvlm.model.conversation import Turn

FPS = 2.0


def _record(rid: str, events: list[tuple[int, list[Turn]]], start: int, learn_first: bool) -> ConversationRecord:
    turns = [Turn("system", "sys")] + fill_streams(events, start, FPS, learn_first=learn_first)
    return ConversationRecord(id=rid, video="v.mp4", fps=FPS, start=start / FPS, conversation=turns,
                              meta={"video_uid": "v"})


def _narration() -> ConversationRecord:
    """Asked at frame 2, narrations at frames 2, 10 and 20."""
    return _record("v/narration", [
        (2, [Turn("user", "Narrate.", 1.0), Turn("assistant", "You pick up the red cup.", 1.0, learn=True)]),
        (10, [Turn("assistant", "You put down the red cup.", 5.0, learn=True)]),
        (20, [Turn("assistant", "You open the blue drawer.", 10.0, learn=True)]),
    ], 2, learn_first=False)


def _livechat(*frames: int) -> ConversationRecord:
    """A question at each frame, answered at once, each answer updated 2 frames later."""
    events = []
    for k, frame in enumerate(frames):
        t = frame / FPS
        events.append((frame, [Turn("user", f"Question {k}?", t), Turn("assistant", f"Answer {k}.", t, learn=True)]))
        events.append((frame + 2, [Turn("assistant", f"Update {k}.", (frame + 2) / FPS, learn=True)]))
    return _record("v/livechat", events, 0, learn_first=True)


def _said(record: ConversationRecord) -> list[tuple[str, float, str]]:
    return [(t.role, t.time, t.content) for t in record.conversation if t.role in ("user", "assistant")]


def test_questions_are_asked_along_the_narration_and_answered_at_once():
    narration = _narration()
    mixed = mix_questions(narration, _livechat(6, 14))
    assert mixed is not None and mixed.id == "v/narration/asked" and mixed.start == narration.start
    assert _said(mixed) == [("user", 1.0, "Narrate."), ("assistant", 1.0, "You pick up the red cup."),
                            ("user", 3.0, "Question 0?"), ("assistant", 3.0, "Answer 0."),
                            ("assistant", 5.0, "You put down the red cup."),
                            ("user", 7.0, "Question 1?"), ("assistant", 7.0, "Answer 1."),
                            ("assistant", 10.0, "You open the blue drawer.")]  # no live-chat update
    streams = [t for t in mixed.conversation if t.role == "stream"]
    assert sum(t.num_frames for t in streams) == 19  # frames 2..20, as the narration's
    assert [t.learn for t in streams] == [False] + [True] * (len(streams) - 1)
    roles = [t.role for t in mixed.conversation]
    assert all(not (a == b == "assistant") for a, b in zip(roles, roles[1:]))
    assert mixed.meta["questions_from"] == "v/livechat" and mixed.meta["video_uid"] == "v"


@pytest.mark.parametrize("frames", [(10,), (2,), (1,), (20,), (30,)])
def test_a_question_where_something_is_said_or_outside_the_narration_is_left_out(frames):
    assert mix_questions(_narration(), _livechat(*frames)) is None


def test_without_questions_the_narration_is_rebuilt_as_it_was():
    from streamvlm.data.convert.mixed import _events

    narration = _narration()
    rebuilt = [Turn("system", "sys")] + fill_streams(_events(narration.conversation, FPS),
                                                     frame_at(narration.start, FPS), FPS, learn_first=False)
    assert rebuilt == narration.conversation


def test_different_fps_refused():
    import dataclasses

    other = dataclasses.replace(_livechat(6), fps=4.0)
    with pytest.raises(ValueError, match="different fps"):
        mix_questions(_narration(), other)
