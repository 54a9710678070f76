"""GoalStep / COIN step annotations -> live-chat dialogues with the rule-based responder."""

from __future__ import annotations

import json

import pytest

from streamvlm.data.convert.livechat import LiveChatOptions, coin_tasks, convert_livechat, goalstep_tasks
from streamvlm.data.formats import read_coin, read_goalstep
from streamvlm.data.responder import ResponseRequest, Step
from streamvlm.data.rule_responder import RuleResponder
from streamvlm.errors import DataError

GOALSTEP_JSON = {"videos": [{
    "video_uid": "g1", "start_time": 0.0, "end_time": 12.0, "goal_category": "COOKING:TEA",
    "goal_description": "make tea", "segments": [
        {"start_time": 4.2, "end_time": 7.0, "step_category": "pour", "step_description": "pour water into the cup",
         "segments": []},
        {"start_time": 1.0, "end_time": 4.0, "step_category": "boil", "step_description": "Boil water"},
        {"start_time": 7.5, "end_time": 9.0, "step_category": "bag", "step_description": "add a tea bag."},
    ]}]}
COIN_JSON = {"database": {"yt_x": {
    "duration": 30.0, "class": "MakeTea", "subset": "testing", "recipe_type": 7, "start": 2.0, "end": 9.0,
    "annotation": [{"id": "1", "segment": [2.0, 5.0], "label": "boil water"},
                   {"id": "2", "segment": [6.0, 9.0], "label": "pour water"}]}}}
STEPS = (Step(0.0, 135.9, "Slice tomatoes"), Step(136.7, 149.4, "Add pepper."), Step(149.5, 166.0, "Add salt"))


@pytest.mark.parametrize("kind,time,answer", [
    ("past", 6.3, "You have not finished any step yet."),
    ("now", 6.3, "You are doing: slice tomatoes."),
    ("next", 6.3, "Next, add pepper."),
    ("update", 135.9, "You finished slice tomatoes. Next, add pepper."),
    ("now", 136.0, "No step is under way right now."),
    ("next", 136.0, "Next, add pepper."),
    ("past", 150.0, "So far you have done: slice tomatoes; add pepper."),
    ("update", 166.0, "You finished add salt. The task is complete."),
    ("next", 170.0, "The task is complete."),
])
def test_rule_responder_answers_from_the_steps(kind, time, answer):
    assert RuleResponder().respond([ResponseRequest("v", time, kind, STEPS, "make a salad")]) == [answer]


def test_goalstep_livechat_golden(tmp_path):
    path = tmp_path / "goalstep_val.json"
    path.write_text(json.dumps(GOALSTEP_JSON))
    (record,) = convert_livechat(goalstep_tasks(read_goalstep(path)), RuleResponder(),
                                 LiveChatOptions(seed=3, system_prompt="SYS"))
    # seed 3 asks at 1.0 s (next), 6.0 s (past) and 9.0 s (now); updates at the step ends 4.0 s and
    # 7.0 s; the update due at 9.0 s is dropped because a question holds that frame.
    assert record.to_dict() == {
        "version": 1, "id": "g1/livechat", "video": "g1.mp4", "fps": 2.0, "start": 0.0,
        "conversation": [
            {"role": "system", "content": "SYS"},
            {"role": "stream", "num_frames": 3, "time": 0.0, "learn": True},
            {"role": "user", "content": "Can you instruct me what should be done next?", "time": 1.0},
            {"role": "assistant", "content": "Next, pour water into the cup.", "time": 1.0, "learn": True},
            {"role": "stream", "num_frames": 6, "time": 1.5, "learn": True},
            {"role": "assistant", "content": "You finished boil water. Next, pour water into the cup.",
             "time": 4.0, "learn": True},
            {"role": "stream", "num_frames": 4, "time": 4.5, "learn": True},
            {"role": "user", "content": "What just happened?", "time": 6.0},
            {"role": "assistant", "content": "So far you have done: boil water.", "time": 6.0, "learn": True},
            {"role": "stream", "num_frames": 2, "time": 6.5, "learn": True},
            {"role": "assistant", "content": "You finished pour water into the cup. Next, add a tea bag.",
             "time": 7.0, "learn": True},
            {"role": "stream", "num_frames": 4, "time": 7.5, "learn": True},
            {"role": "user", "content": "What do you see now?", "time": 9.0},
            {"role": "assistant", "content": "No step is under way right now.", "time": 9.0, "learn": True},
        ],
        "meta": {"source": "ego4d_goalstep", "video_uid": "g1", "goal": "make tea"},
    }


@pytest.mark.parametrize("seed", range(6))
def test_nothing_is_planned_after_the_last_frame(tmp_path, seed):
    # a 9.7 s video (frames 0..19, the last at 9.5 s) whose last step ends at 9.7 s: its update
    # would be due at frame 20 (10.0 s), which the video does not have
    video = json.loads(json.dumps(GOALSTEP_JSON))["videos"][0]
    video["end_time"] = 9.7
    video["segments"][2]["end_time"] = 9.7
    path = tmp_path / "goalstep_val.json"
    path.write_text(json.dumps({"videos": [video]}))
    (record,) = convert_livechat(goalstep_tasks(read_goalstep(path)), RuleResponder(),
                                 LiveChatOptions(seed=seed, max_questions=5))
    turns = record.conversation
    assert max(t.time for t in turns if t.time is not None) <= 9.5
    assert sum(t.num_frames for t in turns if t.role == "stream") <= 20
    assert not any("add a tea bag. The task is complete" in (t.content or "") for t in turns)


class Recorder:
    def __init__(self):
        self.batches: list[list[ResponseRequest]] = []

    def respond(self, requests):
        self.batches.append(list(requests))
        return [f"reply {r.kind} {r.time}" for r in requests]


def test_requests_are_batched_across_videos_and_carry_the_history(tmp_path):
    coin = tmp_path / "COIN.json"
    coin.write_text(json.dumps(COIN_JSON))
    gs = tmp_path / "goalstep.json"
    gs.write_text(json.dumps(GOALSTEP_JSON))
    tasks = goalstep_tasks(read_goalstep(gs)) + coin_tasks(read_coin(coin))
    recorder = Recorder()
    records = convert_livechat(tasks, recorder, LiveChatOptions(seed=3))
    assert len(recorder.batches[0]) == 2  # one request per video per round
    assert tasks[1].goal == "make tea" and tasks[1].steps[1] == Step(6.0, 9.0, "pour water")
    assert records[1].start == 2.0 and records[1].meta["source"] == "coin"
    last = recorder.batches[-1][0]
    earlier = [r for batch in recorder.batches[:-1] for r in batch if r.video_uid == last.video_uid]
    expected = []
    for r in earlier:
        if r.question is not None:
            expected.append(("user", r.question))
        expected.append(("assistant", f"reply {r.kind} {r.time}"))
    assert list(last.history) == expected and expected


def test_bad_responder_output_is_an_error(tmp_path):
    path = tmp_path / "goalstep.json"
    path.write_text(json.dumps(GOALSTEP_JSON))

    class Short:
        def respond(self, requests):
            return []

    with pytest.raises(DataError, match="0 replies for 1 requests"):
        convert_livechat(goalstep_tasks(read_goalstep(path)), Short())
