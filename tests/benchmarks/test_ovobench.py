"""OVO-Bench: the annotation file in its published shapes, bad entries refused on one line, the
official scoring rules with their quirks, and `streamvlm benchmark score ovo-bench` on results files
in the harness's shape (numbers computed by hand in the comments)."""

from __future__ import annotations

import copy

import pytest

from streamvlm.benchmarks import ovobench
from tests.benchmarks.conftest import cli, write_json

ENTRIES = [
    {"id": 0, "task": "EPM", "video": "Ego4D/a.mp4", "realtime": 215, "question": "What did I drop?",
     "answer": "a cup", "options": ["a bowl", "a cup", "a pan", "a lid"], "gt": 1},
    {"id": 1, "task": "OJR", "video": "clips/b.mp4", "realtime": 12.2, "question": "What is on the table?",
     "answer": "x", "options": ["x", "y"], "gt": 0},
    {"id": 1558, "task": "REC", "video": "perception_test/c.mp4", "activity": "opening something",
     "start_times": [1, 6], "end_times": [4, 9],
     "test_info": [{"realtime": 4, "count": 1}, {"realtime": 10.5, "count": 2}]},
    {"id": 1516, "task": "SSR", "video": "COIN/d.mp4", "tutorial": "CookOmelet", "all_steps": ["beat eggs", "fry eggs"],
     "start_time": [5, 20], "end_time": [15, 30], "test_info": [{"realtime": 3, "step": "beat eggs", "type": 0},
                                                                {"realtime": 7, "step": "beat eggs", "type": 1}]},
    {"id": 1468, "task": "CRR", "video": "MovieNet/e.mp4", "question": "What does she do to the car?",
     "answer": "She walks past it.", "ask_time": 297, "clue_time": 308,
     "test_info": [{"realtime": 297, "type": 0}, {"realtime": 310, "type": 1}]},
]


def test_every_published_shape_loads_into_probes(tmp_path):
    entries = ovobench.load(write_json(tmp_path / "ovo_bench_new.json", ENTRIES))
    probes = ovobench.probes(entries)
    assert [(p.key, p.task, p.kind, p.time, p.truth) for p in probes] == [
        ("0", "EPM", "choice", 215, "B"), ("1", "OJR", "choice", 13, "A"),  # clips end at ceil(realtime)
        ("1558/0", "REC", "count", 4, 1), ("1558/1", "REC", "count", 11, 2),
        ("1516/0", "SSR", "yesno", 3, 0), ("1516/1", "SSR", "yesno", 7, 1),
        ("1468/0", "CRR", "yesno", 297, 0), ("1468/1", "CRR", "yesno", 310, 1)]
    assert probes[0].prompt.startswith("\nQuestion: What did I drop?\nOptions:\nA. a bowl; B. a cup; C. a pan; "
                                       "D. a lid;")
    assert "How many times did they opening something?" in probes[2].prompt
    assert probes[2].asked is None and probes[2].target == "opening something"  # online: read from its replies
    assert probes[6].asked == 297 and probes[6].target == "She walks past it."


def _bad(path, index, change):
    data = copy.deepcopy(ENTRIES)
    change(data[index])
    return write_json(path, data)


@pytest.mark.parametrize(("index", "change", "message"), [
    (0, lambda e: e.pop("gt"), "record entry 0 (id 0), field 'gt': missing"),
    (0, lambda e: e.update(gt=4), "field 'gt': must be an integer >= 0 and <= 3, got 4"),
    (1, lambda e: e.update(realtime="soon"), "record entry 1 (id 1), field 'realtime': must be a number >= 0"),
    (1, lambda e: e.update(options=["x"]), "field 'options': must be a list of at least 2 items"),
    (1, lambda e: e.update(id=0), "record entry 1, field 'id': must be a unique integer or string, 0 is repeated"),
    (1, lambda e: e.update(task="XYZ"), "field 'task': unknown task 'XYZ'"),
    (2, lambda e: e["test_info"][1].pop("count"), "field 'test_info[1].count': missing"),
    (3, lambda e: e["test_info"][0].update(step="wash"), "field 'test_info[0].step': is not one of all_steps"),
    (3, lambda e: e.update(end_time=[15]), "field 'end_time': has 1 times for 2 steps"),
    (4, lambda e: e["test_info"][1].update(type=2), "field 'test_info[1].type': must be an integer >= 0 and <= 1"),
])
def test_a_bad_entry_is_one_line_naming_file_entry_and_field(tmp_path, index, change, message):
    path = _bad(tmp_path / "ovo.json", index, change)
    code, out, err = cli("benchmark", "ovo-bench", path, "--videos", tmp_path)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}, record entry {index}" in err and message in err


def test_a_file_that_is_not_a_list_of_entries_is_refused(tmp_path):
    (tmp_path / "cut.json").write_text('[{"id": 0, "task"', encoding="utf-8")
    code, _, err = cli("benchmark", "ovo-bench", tmp_path / "cut.json", "--videos", tmp_path)
    assert code == 2 and "invalid JSON" in err
    code, _, err = cli("benchmark", "ovo-bench", write_json(tmp_path / "o.json", {"a": 1}), "--videos", tmp_path)
    assert code == 2 and "expected a JSON list of OVO-Bench entries" in err


@pytest.mark.parametrize(("response", "letter", "hit"), [
    ("B", "B", 1), ("B.", "B", 1), ("The answer is B", "A", 0),
    ("Answer: B", "A", 1),  # quirk: the capital A of "Answer" is a hit for A
    ("b", "B", 0), ("", "B", 0), (None, "A", 0),
    (["C"], "C", 1), (["C."], "C", 0),  # a list: item membership, as the official `in` does
    (7, "A", 0),  # not text: read as "7", never a crash
])
def test_multiple_choice_is_the_letter_anywhere(response, letter, hit):
    assert ovobench.hit_choice(response, letter) == hit


@pytest.mark.parametrize(("response", "count", "hit"), [
    ("2", 2, 1), ("1\n", 1, 1), ("There are 3.", 3, 1), ("2 or 3", 3, 0), ("1 and 2", 12, 1), ("none", 0, 0),
    (None, 1, 0), (["4"], 4, 1), ([], 0, 0), (3, 3, 1)])
def test_rec_joins_the_digits(response, count, hit):
    assert ovobench.hit_count(response, count) == hit


@pytest.mark.parametrize(("response", "kind", "hit"), [
    ("N", 0, 1), ("Y", 1, 1), ("Y", 0, 0), ("No.", 0, 1), ("Not yet", 0, 1), ("yes", 1, 0), ("Yes, it is", 1, 1),
    (None, 1, 0), (["Yes"], 1, 1), (["Yes."], 1, 0)])
def test_ssr_and_crr_read_yes_and_no(response, kind, hit):
    assert ovobench.hit_yes_no(response, kind) == hit


def _mc(task, response, letter):
    return {"id": 0, "video": "v.mp4", "task": task, "question": "q", "response": response, "ground_truth": letter}


RESULTS_CHOICE = {
    "backward": [_mc("EPM", "A", "A"), _mc("EPM", "The answer is B", "A"), _mc("EPM", "Answer: B", "A"),
                 _mc("EPM", None, "C"), _mc("EPM", ["C"], "C"), _mc("EPM", ["C."], "C"),  # EPM 3/6 = 50.00
                 _mc("ASI", "b", "B"), _mc("ASI", "B", "B"), _mc("ASI", "D. a cup", "D"), _mc("ASI", "", "B")],  # 2/4
    "realtime": [_mc("OCR", "A", "A"), _mc("OCR", "B", "A"), _mc("OCR", "C", "A"),  # OCR 1/3 = 33.33
                 _mc("ACR", "D", "D")],  # ACR 1/1 = 100.00
    "forward": []}
RESULTS_FORWARD = {
    "backward": [], "realtime": [],
    "forward": [
        {"id": 9, "task": "REC", "video": "v.mp4", "activity": "a", "test_info": [
            {"realtime": 1, "count": 2, "response": "2"}, {"realtime": 2, "count": 3, "response": "2 or 3"},
            {"realtime": 3, "count": 12, "response": "1 and 2"}, {"realtime": 4, "count": 4, "response": None}]},
        {"id": 10, "task": "SSR", "video": "v.mp4", "test_info": [  # SSR 3/5 = 60.00
            {"realtime": 1, "step": "s", "type": 0, "response": "N"},
            {"realtime": 2, "step": "s", "type": 1, "response": "Y"},
            {"realtime": 3, "step": "s", "type": 0, "response": "Not yet"},
            {"realtime": 4, "step": "s", "type": 1, "response": "yes"},
            {"realtime": 5, "step": "s", "type": 0, "response": "Yes"}]},
        {"id": 11, "task": "CRR", "video": "v.mp4", "test_info": [  # CRR 1/2 = 50.00
            {"realtime": 1, "type": 1, "response": "Yes."}, {"realtime": 2, "type": 0, "response": None}]}]}


def test_score_gives_the_official_numbers_on_results_files(tmp_path):
    folder = tmp_path / "MyModel"
    write_json(folder / "MyModel_EPM_ASI_OCR_ACR_offline.json", RESULTS_CHOICE)
    write_json(folder / "MyModel_REC_SSR_CRR_offline.json", RESULTS_FORWARD)
    code, out, err = cli("benchmark", "score", "ovo-bench", folder)
    assert code == 0, err
    lines = out.splitlines()
    expected = ["Task: EPM, Acc: 50.00", "Task: ASI, Acc: 50.00", "Backward Avg.: 50.00",
                "Task: OCR, Acc: 33.33", "Task: ACR, Acc: 100.00", "Realtime Avg.: 66.67",
                "Task: REC, Acc: 50.00", "Task: SSR, Acc: 60.00", "Task: CRR, Acc: 50.00", "Forward Avg.: 53.33",
                "Total Avg.: 56.67"]  # (50 + 66.667 + 53.333) / 3
    assert lines[: len(expected)] == expected
    assert "results" in out and "56.67" in lines[-1]
    # the same files named one by one give the same numbers
    code, again, _ = cli("benchmark", "score", "ovo-bench", *sorted(folder.iterdir()))
    assert again == out


def test_score_never_crashes_on_lists_and_missing_groups(tmp_path):
    forward = copy.deepcopy(RESULTS_FORWARD)  # the official script stops on a REC response given as a list
    forward["forward"][0]["test_info"] = [{"realtime": 1, "count": 4, "response": ["4"]},
                                          {"realtime": 2, "count": 1, "response": []}]
    code, out, err = cli("benchmark", "score", "ovo-bench", write_json(tmp_path / "r.json", forward))
    assert code == 0, err
    assert "Task: REC, Acc: 50.00" in out and "Total Avg." not in out
    assert "no overall average: the results hold no probe of backward, realtime" in out


def test_bad_results_files_are_one_line(tmp_path):
    bad = copy.deepcopy(RESULTS_CHOICE)
    del bad["realtime"][1]["ground_truth"]
    path = write_json(tmp_path / "r.json", bad)
    code, _, err = cli("benchmark", "score", "ovo-bench", path)
    assert code == 2 and f"{path}, record realtime[1], field 'ground_truth': missing" in err
    code, _, err = cli("benchmark", "score", "ovo-bench", write_json(tmp_path / "s.json", {"backward": []}))
    assert code == 2 and "field 'realtime': missing or not a list" in err
