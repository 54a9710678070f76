"""Live evaluation: the grammar, scoring on hand-made gold / reply lists (hand-computed per-window
values), and the streaming loop on a hand-made stream with a scripted assistant."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from streamvlm.engine.options import TimedQuery
from streamvlm.evaluation.live_eval import (
    Narration,
    Reply,
    WindowScore,
    combine,
    confusion_table,
    drift,
    drift_line,
    format_table,
    match_replies,
    normalize,
    parse_sentence,
    run_live,
    score_stream,
    split_events,
    summary_line,
    window_count,
)


# ---------------------------------------------------------------------------- grammar
@pytest.mark.parametrize(("text", "well_formed", "verb", "objects"), [
    ("You pick up the red cup.", True, "pick", [("red", "cup")]),
    ("You put the green tea bag in the white cup.", True, "put_in", [("green", "tea bag"), ("white", "cup")]),
    ("You take the red apple out of the black drawer.", True, "take_out", [("red", "apple"), ("black", "drawer")]),
    ("You wipe the table with the yellow sponge.", True, "wipe", [("yellow", "sponge")]),
    ("You pour water from the blue bottle into the pink bowl.", True, "pour", [("blue", "bottle"), ("pink", "bowl")]),
    ("You cut the red apple with the blue knife.", True, "cut", [("red", "apple"), ("blue", "knife")]),
    ("You pick up the red cup", False, "pick", [("red", "cup")]),  # no period: the verb is still read
    ("you pick up the red cup.", False, "pick", [("red", "cup")]),
    ("You pick up the cup.", False, "pick", []),  # no colour: not the world's grammar
    ("You put the blue drawer.", False, None, [("blue", "drawer")]),
    ("You,.", False, None, []),
    ("You any step is under way right now.", False, None, []),
    ("You pick up the red cup. You pick up the red cup.", False, None, [("red", "cup"), ("red", "cup")]),
])
def test_parse_sentence(text, well_formed, verb, objects):
    parsed = parse_sentence(text)
    assert (parsed.well_formed, parsed.verb, list(parsed.objects)) == (well_formed, verb, objects)


def test_every_narration_of_the_world_is_well_formed():
    from streamvlm.data.generate.narration import rule_refine
    from streamvlm.data.synth import plan_video

    for index in range(40):
        for action in plan_video(5, index, duration=60.0).actions:
            parsed = parse_sentence(rule_refine(action.narration))
            assert parsed.well_formed and parsed.verb == action.verb and parsed.object is not None, action.narration


def test_normalize():
    assert normalize("  You pick up  the Red cup. ") == normalize("you pick up the red cup")
    assert normalize("You,.") == "you,"


# ---------------------------------------------------------------------------- scoring
GOLD = [
    Narration(10.0, "You pick up the red cup."),
    Narration(20.0, "You put down the red cup."),
    Narration(30.0, "You open the green box."),
    Narration(40.0, "You close the green box."),
    Narration(70.0, "You cut the red apple with the blue knife."),
    Narration(179.9, "You pick up the blue knife."),  # after the last frame (179.5): left out
]
REPLIES = [
    Reply(10.5, "You pick up the red cup."),  # answers 10: all right
    Reply(21.9, "You put down the blue cup."),  # answers 20: verb and kind right, colour wrong
    Reply(32.5, "You open the green box."),  # 2.5 s after 30: too late, a false alarm
    Reply(39.5, "You close the green box."),  # before 40: a false alarm
    Reply(40.0, "You,."),  # answers 40: malformed, nothing right
    Reply(41.0, "You close the green box."),  # 40 already answered: a repeat
    Reply(71.0, "You cut the red apple with the blue knife"),  # answers 70: text right (final period ignored)
    Reply(100.0, "You pick up the red cup."),  # a false alarm
]


def counts(w: WindowScore) -> tuple:
    return (w.narrations, w.answered, w.right_text, w.right_verb, w.right_object, w.right_kind, w.replies,
            w.well_formed, w.false_alarms, w.repeats, w.answers)


def test_score_per_window():
    score = score_stream(GOLD, REPLIES, window=60, tolerance=2.0, end=179.5, duration=180.0,
                         answers=[Reply(0.0, "You pick up the red drawer.")])
    assert [(w.start, w.end) for w in score.windows] == [(0, 60), (60, 120), (120, 180)]
    #                                  narr ans text verb obj kind replies wf  fa rep answers
    assert counts(score.windows[0]) == (4, 3, 1, 2, 1, 2, 6, 5, 2, 1, 1)
    assert counts(score.windows[1]) == (1, 1, 1, 1, 1, 1, 2, 1, 1, 0, 0)
    assert counts(score.windows[2]) == (0,) * 11  # an empty window
    assert counts(score.overall) == (5, 4, 2, 3, 2, 3, 8, 6, 3, 1, 1)
    assert score.windows[0].rates == pytest.approx({
        "answered": 3 / 4, "text": 1 / 3, "verb": 2 / 3, "object": 1 / 3, "kind": 2 / 3, "well_formed": 5 / 6,
        "false_alarm": 2 / 6})
    assert set(score.windows[2].rates.values()) == {None}
    assert [(m.gold.time, m.reply.time) for m in score.matches] == [(10.0, 10.5), (20.0, 21.9), (40.0, 40.0),
                                                                    (70.0, 71.0)]


def test_confusion_of_colours_and_kinds():
    score = score_stream(GOLD, REPLIES, window=60, end=179.5)
    colours = score.colours
    assert dict(colours.gold) == {"red": 3, "green": 2, "blue": 1}
    assert dict(colours.predicted) == {"red": 3, "blue": 2, "green": 3}
    assert dict(colours.pairs) == {("red", "red"): 2, ("red", "blue"): 1, ("green", "-"): 1}
    assert dict(score.kinds.pairs) == {("cup", "cup"): 2, ("box", "-"): 1, ("apple", "apple"): 1}
    ratio = colours.over_predicted()
    assert ratio["red"] == pytest.approx((3 / 8) / (3 / 6))
    assert colours.values() == ["red", "green", "blue"]  # the vocabulary's order
    table = confusion_table(colours, "colour")
    assert "red          3 / 3      (0.75x)" in table
    only_predicted = score_stream([], [Reply(1.0, "You pick up the red cup.")]).colours
    assert math.isinf(only_predicted.over_predicted()["red"])
    assert "never in the gold" in confusion_table(only_predicted, "colour")


def test_early_replies_answer_when_allowed():
    score = score_stream(GOLD, REPLIES, window=60, end=179.5, early=0.5)
    first = score.windows[0]
    assert (first.answered, first.right_text, first.false_alarms, first.repeats) == (3, 2, 1, 2)


def test_pairing_takes_the_earliest_free_reply_and_answers_the_most():
    gold = [Narration(10.0, "a"), Narration(11.0, "b")]
    replies = [Reply(11.5, "x"), Reply(12.5, "y")]
    assert [(g.text, r.text) for g, r in match_replies(gold, replies)] == [("a", "x"), ("b", "y")]
    assert match_replies(gold, [Reply(9.9, "x"), Reply(13.1, "y")]) == []


def test_windows_follow_the_stream_length():
    assert window_count(3600.0, 300.0) == 12
    assert window_count(3601.0, 300.0) == 13
    assert window_count(0.0, 300.0) == 1
    score = score_stream([Narration(5.0, "You pick up the red cup.")], [], window=300.0, duration=3600.0)
    assert len(score.windows) == 12 and score.windows[-1].end == 3600.0
    assert score.overall.rates["answered"] == 0.0 and score.overall.rates["text"] is None


def test_combine_adds_window_by_window():
    a = score_stream(GOLD, REPLIES, window=60, end=179.5, duration=180.0)
    b = score_stream(GOLD[:1], REPLIES[:1], window=60, end=59.5, duration=60.0)
    both = combine([a, b])
    assert len(both.windows) == 3
    assert counts(both.windows[0]) == tuple(x + y for x, y in zip(counts(a.windows[0]), counts(b.windows[0])))
    assert counts(both.windows[2]) == counts(a.windows[2])
    assert counts(both.overall) == tuple(x + y for x, y in zip(counts(a.overall), counts(b.overall)))
    assert both.colours.gold["red"] == a.colours.gold["red"] + 1


def test_table_and_summary():
    score = score_stream(GOLD, REPLIES, window=60, end=179.5, duration=180.0)
    lines = format_table(score).splitlines()
    assert lines[0].split() == ["window", "(min)", "narrations", "answered", "text", "verb", "object", "kind",
                                "replies", "well-formed", "false", "alarms", "repeats"]
    assert lines[1].split() == ["0-1", "4", "75.0%", "33.3%", "66.7%", "33.3%", "66.7%", "6", "83.3%", "2", "1"]
    assert lines[3].split() == ["2-3", "0", "-", "-", "-", "-", "-", "0", "-", "0", "0"]
    assert lines[4].split()[:3] == ["all", "5", "80.0%"]
    assert summary_line(score.overall) == ("answered within 2 s 4/5 | right text 2/4, verb 3/4, object 2/4 | "
                                           "well-formed 6/8 | false alarms 3/8")


# ---------------------------------------------------------------------------- the live loop
@dataclass
class Event:
    time: float
    role: str
    text: str


@dataclass
class Frame:
    time: float
    index: int
    image: np.ndarray


class ScriptedAssistant:
    """A FrameConsumer that says ``script[frame time]`` after that frame and answers every query
    at the frame it is asked at with "Sure."."""

    def __init__(self, script: dict[float, str]) -> None:
        self.script = script
        self.asked: list[tuple[float, str]] = []
        self.pending: list[str] = []
        self.pushed: list[float] = []

    def encode_images(self, images):
        return torch.zeros(len(images), 1, 1)

    def ask(self, text: str, time: float) -> None:
        self.asked.append((time, text))
        self.pending.append(text)

    def push_frame(self, frame, time: float) -> list[Event]:
        self.pushed.append(time)
        events = []
        for text in self.pending:
            events += [Event(time, "user", text), Event(time, "assistant", "Sure.")]
        self.pending = []
        if time in self.script:
            events.append(Event(time, "assistant", self.script[time]))
        return events


def test_split_events():
    events = [Event(0, "user", "q"), Event(0, "assistant", "a"), Event(0, "assistant", "You pick up the red cup."),
              Event(1, "assistant", "b")]
    replies, answers = split_events(events)
    assert [r.text for r in replies] == ["You pick up the red cup.", "b"] and [a.text for a in answers] == ["a"]


def test_live_loop_on_a_scripted_stream():
    # 2 minutes at 2 fps; one narration every 10 s from 5 s on, in 60-second windows
    texts = ["You pick up the red cup.", "You put down the red cup."]
    gold = [Narration(5.0 + 10 * k, texts[k % 2]) for k in range(12)]
    script = {}
    for k, g in enumerate(gold):
        if k < 6:  # first minute: every narration answered 0.5 s late, right
            script[g.time + 0.5] = g.text
        elif k % 2 == 0:  # second minute: every other one, with the wrong colour
            script[g.time + 1.0] = g.text.replace("red", "blue")
    script[100.0] = "You,."  # and a malformed false alarm
    assistant = ScriptedAssistant(script)
    frames = [Frame(k / 2, k, np.zeros((4, 4, 3), np.uint8)) for k in range(240)]
    seen = []
    run = run_live(assistant, frames, [TimedQuery(0.0, "Please narrate."), TimedQuery(61.2, "What now?")],
                   on_step=lambda step, r: seen.append(step.time))
    assert assistant.pushed == seen == [k / 2 for k in range(240)]
    assert assistant.asked == [(0.0, "Please narrate."), (61.2, "What now?")]
    assert (run.frames, run.end, run.max_kv) == (240, 119.5, None)
    assert [(a.time, a.text) for a in run.answers] == [(0.0, "Sure."), (61.5, "Sure.")]
    assert len(run.replies) == 10
    score = score_stream(gold, run.replies, window=60, end=run.end, duration=120.0, answers=run.answers)
    first, second = score.windows
    #                           narr ans text verb obj kind replies wf fa rep answers
    assert counts(first) == (6, 6, 6, 6, 6, 6, 6, 6, 0, 0, 1)
    assert counts(second) == (6, 3, 0, 3, 0, 3, 4, 3, 1, 0, 1)
    assert first.rates["answered"] == 1.0 and second.rates["answered"] == 0.5
    assert second.rates["well_formed"] == 0.75 and second.rates["false_alarm"] == 0.25
    # the last window against the first, in points
    assert drift(score) == {"answered": -50.0, "text": -100.0, "verb": 0.0, "object": -100.0, "kind": 0.0,
                            "well_formed": -25.0, "false_alarm": 25.0}
    assert drift_line(score) == ("last window - first window (points): answered -50.0, text -100.0, verb +0.0, "
                                 "object -100.0, kind +0.0, well formed -25.0, false alarm +25.0")
    one = score_stream(gold, run.replies, window=120, end=run.end, duration=120.0)
    assert drift(one) == {} and drift_line(one) == ""


@pytest.mark.parametrize(("text", "template", "loop"), [
    ("You pick up the red cup.", False, False),
    ("Next] Assistant: You pick up the red sandwich.", True, False),
    ("User: what now", True, False),
    ("You pick up the red in pick up the red in pick up the red box.", False, True),
    ("You pick up the red in pick up the red box.", False, False),  # a run said twice
    ("Red red RED red", False, False),  # one word, not a run of three
    ("a b c A B C a b c", False, True),  # case ignored
])
def test_template_text_and_loops(text, template, loop):
    from streamvlm.evaluation.live_eval import has_loop, has_template_text

    assert has_template_text(text) is template
    assert has_loop(text) is loop
