"""StreamingBench and ProactiveVideoQA: their files in the published shapes, bad entries on one line,
the audio tasks refused, the official rules (first character; 2 s proactive window; PAUC worked by
hand), and the judges."""

from __future__ import annotations

import pytest

from streamvlm.benchmarks import proactivevideoqa as pvqa
from streamvlm.benchmarks import streamingbench as sb
from streamvlm.benchmarks.judges import RuleJudge, TextJudge, read_rating
from tests.benchmarks.conftest import cli, write_json


def _mc(task="Object Recognition", time="00:00:31", answer="C", options=None):
    return {"task_type": task, "question": "What is it?", "time_stamp": time, "answer": answer,
            "options": options or ["A. a cup.", "B. a map.", "C. a pen.", "D. a box."], "required_ability": "x"}


REAL = [{"time": "[0:00:00 - 0:01:00]", "video_path": "./videos/sample_1_real.mp4", "video_categories": "c",
         "questions": [_mc(), _mc("Counting", "01:05", "A")]}]
SQA = [[{"time": "[0:00:00 - 0:01:00]", "video_path": "./videos/s.mp4", "questions": [
            _mc("Sequential Question Answering", "00:00:36", "A", ["Wang.", "Fan.", "Xu.", "Ma."])]},
        {"time": "[0:01:00 - 0:02:00]", "video_path": "./videos/s.mp4", "questions": [
            _mc("Sequential Question Answering", "00:01:10", "B", ["2.", "6.", "7.", "4."])]}]]
PROACTIVE = [{"time": "[0:00:00 - 0:00:30]", "video_path": "./videos/p.mp4", "questions": [
    {"task_type": "Proactive Output", "question": 'When the score shows 3, output "3".', "time_stamp": "00:00:20",
     "ground_truth_time_stamp": "00:00:29", "ground_truth_output": "3", "required_ability": "x"}]}]


def test_streamingbench_files_load_in_their_three_shapes(tmp_path):
    real = sb.load(write_json(tmp_path / "questions_real.json", REAL))
    assert [(p.key, p.task, p.time, p.truth, p.options[1]) for p in real] == [
        ("0/0", "Object Recognition", 31.0, "C", "a map."), ("0/1", "Counting", 65.0, "A", "a map.")]
    assert real[0].prompt.endswith("Options:\nA. a cup.\nB. a map.\nC. a pen.\nD. a box.\n\nThe best option is:")
    sqa = sb.load(write_json(tmp_path / "questions_sqa.json", SQA))
    assert [p.key for p in sqa] == ["0/0/0", "0/1/0"]
    # the second question's prompt carries the first with its gold answer, as the harness does
    assert ("At timestamp 00:00:36, the following question and answer occurred: Question: What is it?; Options: "
            "A. Wang., B. Fan., C. Xu., D. Ma.; Answer: A; ") in sqa[1].prompt
    assert "Options:\nA. 2.\nB. 6.\nC. 7.\nD. 4.\n\nThe best option is:" in sqa[1].prompt
    (pro,) = sb.load(write_json(tmp_path / "questions_proactive.json", PROACTIVE))
    assert (pro.kind, pro.start, pro.time, pro.truth) == ("proactive", 20.0, 29.0, {"time": 29.0, "output": "3"})


def test_audio_tasks_are_refused_and_other_tasks_kept(tmp_path):
    omni = [{"video_path": "v.mp4", "questions": [_mc("Emotion Recognition"), _mc("Misleading Context Understanding")]}]
    path = write_json(tmp_path / "questions_omni.json", omni)
    code, _, err = cli("benchmark", "streamingbench", path, "--videos", tmp_path)
    assert code == 2 and "task 'Emotion Recognition' needs the video's audio" in err and err.count("\n") == 1
    assert [p.task for p in sb.load(path, ["MCU"])] == ["Misleading Context Understanding"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda q: q.update(time_stamp="soon"), "record entry 0 question 0, field 'time_stamp': must be a time like"),
    (lambda q: q.update(answer="E"), "field 'answer': must be one option letter (A to D), got 'E'"),
    (lambda q: q.update(options=["A. x"]), "field 'options': must be a list of at least 4 items"),
    (lambda q: q.pop("question"), "field 'question': missing"),
])
def test_a_bad_question_is_one_line(tmp_path, change, message):
    data = [{"video_path": "v.mp4", "questions": [_mc()]}]
    change(data[0]["questions"][0])
    path = write_json(tmp_path / "q.json", data)
    code, _, err = cli("benchmark", "streamingbench", path, "--videos", tmp_path)
    assert code == 2 and f"{path}, " in err and message in err and err.count("\n") == 1


@pytest.mark.parametrize(("response", "hit"), [
    ("C", 1), ("C. a pen.", 1), (" C", 0), ("The answer is C", 0), ("c", 0), (["C"], 1), (["C."], 0), ("", 0),
    (None, 0), ([], 0)])
def test_multiple_choice_is_the_first_character(response, hit):
    assert sb.hit_choice(response, "C") == hit


@pytest.mark.parametrize(("time", "reply", "hits"), [
    (29, "3", (1, 1)), (27, "score 3", (1, 1)), (31, "3", (1, 1)), (31.5, "3", (0, 0)), (26, "3", (0, 0)),
    (29, "three", (1, 0)), (None, None, (0, 0)), (30, ["the", "3"], (1, 1))])
def test_proactive_is_on_time_within_two_seconds_and_right_with_the_output(time, reply, hits):
    assert sb.proactive_hits(time, reply, 29.0, "3") == hits


ANNO = [{"video": "a.mp4", "question_id": "a.mp4", "duration": 40.0,
         "conversation": [{"role": "user", "time": 0, "content": "What is done?"},
                          {"role": "user", "time": 4.5, "content": "(a subtitle)"}],
         "answer": [{"role": "assistant", "content": "Stir.", "type": "step", "related_timespan": [10, 18],
                     "reply_timespan": [10, 20]},
                    {"role": "assistant", "content": "Pour.", "type": "step", "related_timespan": [22, 25],
                     "reply_timespan": [22, 26]}]}]


def test_proactivevideoqa_loads_and_chunks_as_its_offline_harness(tmp_path):
    (probe,) = pvqa.load(write_json(tmp_path / "EGO" / "anno.json", ANNO))
    assert (probe.task, probe.key, probe.time, probe.asked) == ("EGO", "a.mp4", 26, 0)
    assert probe.extra == ((4.5, "(a subtitle)"),)
    chunks = pvqa.chunks(probe, 100.0)  # the annotation's duration (40 s) wins over the video's
    assert [c[:2] for c in chunks][:2] == [(0.0, 3), (3.0, 6)] and chunks[-1][:2] == (24.0, 27)  # none after 26 s
    assert chunks[1][2] == "What is done?\n(a subtitle)"


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e["answer"][0].update(reply_timespan=[20, 10]),
     "field 'answer[0].reply_timespan': ends before it starts"),
    (lambda e: e["answer"][1].pop("related_timespan"), "field 'answer[1].related_timespan': missing"),
    (lambda e: e["conversation"][0].update(time=-1), "field 'conversation[0].time': must be a number >= 0"),
    (lambda e: e.update(conversation=[{"role": "assistant", "time": 0, "content": "x"}]),
     "field 'conversation': has no user turn"),
])
def test_a_bad_conversation_is_one_line(tmp_path, change, message):
    data = [dict(ANNO[0], answer=[dict(a) for a in ANNO[0]["answer"]],
                 conversation=[dict(t) for t in ANNO[0]["conversation"]])]
    change(data[0])
    path = write_json(tmp_path / "TV" / "anno.json", data)
    code, _, err = cli("benchmark", "proactivevideoqa", path, "--videos", tmp_path)
    assert code == 2 and "record entry 0 (question_id a.mp4)" in err and message in err


def test_pauc_worked_by_hand():
    """Turn 1, reply span [10, 20], related span ends at 18: predictions at 12 "A", 14 "A" (seen:
    skipped), 16 "B", 19 "C" and 30 "D". The judge rates the sentences so far: "A" 2, "A B" 3,
    "A B C" 1 (30 s is in no span): kept as 1 at 12 and 2 at 16; 0 at 19 is after the related span and below 2: dropped.
    omega 0.5 -> x = 1 and 3: area 0.5*1 + 1*2 + 2*7 = 16.5 of 10*2 -> 0.825; omega 0 -> x = 2 and 6:
    0.5*2 + 1*4 + 2*4 = 13 -> 0.65; omega 1 -> the last rating over the whole span: 1.0. Turn 2 has
    no prediction: 0.25."""
    seen = []

    def rate(items):
        seen.extend(items)
        return [{"A": 2, "A B": 3, "A B C": 1}[p] for _, _, p in items]

    answers = ANNO[0]["answer"]
    predictions = [(12.0, "A"), (14.0, "A"), (16.0, "B"), (19.0, "C"), (30.0, "D")]
    ratings = pvqa.judge_turns("What is done?", answers, predictions, rate)
    assert ratings == [{12.0: 1.0, 16.0: 2.0}, {}]
    assert [s[2] for s in seen] == ["A", "A B", "A B C"] and seen[0][:2] == ("What is done?", "Stir.")
    assert pvqa.turn_scores(answers, ratings, 0.5) == pytest.approx([0.825, 0.25])
    assert pvqa.turn_scores(answers, ratings, 0.0) == pytest.approx([0.65, 0.25])
    assert pvqa.turn_scores(answers, ratings, 1.0) == pytest.approx([1.0, 0.25])
    assert pvqa.area_ratio([(0.0, 2.0)], 0.0) == 0.0  # an empty span never divides by zero


def test_judges():
    rule = RuleJudge()
    assert rule.mentions([("You pick up the red cup.", "pick up something"),
                          ("You open the black drawer.", "open the drawer"),  # a step: one of its actions
                          ("You pick up the blue book.", "put a book in the drawer"),
                          ("You close the box.", "put a book in the drawer"),
                          ("You put down the red cup.", "You put down the blue cup."),  # same action, colour aside
                          ("You pick up the red cup.", "the blue cup")]) == [True, True, True, False, True, False]
    assert rule.rate([("q", "Open the drawer.", "You open the red drawer."),
                      ("q", "Put a book in the drawer.", "You close the white book."),  # the kind: partly
                      ("q", "Place the cup.", "You open the box.")]) == [3, 2, 1]
    text = TextJudge()
    assert text.mentions([("The score is 3 now", "3"), ("nothing", "3")]) == [True, False]
    assert [read_rating(r) for r in ("3", "Score: 2", "12", "no idea")] == [3, 2, None, None]


def test_a_chat_model_judges_through_an_openai_compatible_endpoint(monkeypatch):
    """The judge asks a real HTTP endpoint on 127.0.0.1 (a fake OpenAI server) and reads its replies."""
    from streamvlm.cli.commands.benchmark import JudgeOptions, _judge
    from tests.docs_fixtures import OPENAI_KEY, FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    server = FakeOpenAI(reply="2")
    try:
        judge = _judge(JudgeOptions(judge="openai", judge_model="judge-llm", judge_base_url=server.base_url))
        assert judge.name == "openai (judge-llm)"
        assert judge.rate([("q", "Stir.", "You stir."), ("q", "Pour.", "You pour.")]) == [2, 2]
        server.reply = "Yes, it does."
        assert judge.mentions([("You pick up the cup.", "pick up something")]) == [True]
        assert server.hits == 3
    finally:
        server.close()
