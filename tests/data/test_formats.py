"""Readers of the real annotation formats: typed output, and every malformed input named."""

from __future__ import annotations

import json

import pytest

from streamvlm.data.formats import read_coin, read_goalstep, read_lta, read_narration
from streamvlm.errors import DataError

NARRATION = {"vid": {"narration_pass_1": {"narrations": [
    {"timestamp_sec": 2.0, "timestamp_frame": 60, "narration_text": "#C C b", "annotation_uid": "u2"},
    {"timestamp_sec": 1.0, "timestamp_frame": 30, "narration_text": "#C C a", "annotation_uid": "u1"}]}}}
GOALSTEP = {"videos": [{"video_uid": "g", "start_time": 0.0, "end_time": 9.0, "goal_category": "COOK",
                        "goal_description": "make tea", "segments": [
                            {"start_time": 4.0, "end_time": 8.0, "step_category": "s", "step_description": "pour water",
                             "segments": [{"start_time": 4.0, "end_time": 5.0, "step_category": "x",
                                           "step_description": "lift kettle"}]},
                            {"start_time": 0.5, "end_time": 3.0, "step_category": "s",
                             "step_description": "boil water"}]}]}
COIN = {"database": {"yt1": {"duration": 20.0, "class": "MakeTea", "subset": "training", "recipe_type": 3,
                             "start": 1.0, "end": 12.0,
                             "annotation": [{"id": "1", "segment": [1.0, 4.0], "label": "boil water"}]}}}
LTA = {"clips": [{"clip_uid": "c", "video_uid": "v", "action_idx": 0, "verb": "take", "noun": "cup",
                  "verb_label": 1, "noun_label": 2, "action_clip_start_sec": 1.0, "action_clip_end_sec": 2.0,
                  "clip_parent_start_sec": 10.0}]}


def write(tmp_path, data, name="a.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_readers_return_typed_sorted_records(tmp_path):
    (video,) = read_narration(write(tmp_path, NARRATION))
    assert [(n.time, n.text, n.annotation_uid) for n in video.passes["narration_pass_1"]] == [
        (1.0, "#C C a", "u1"), (2.0, "#C C b", "u2")]
    (g,) = read_goalstep(write(tmp_path, GOALSTEP))
    assert g.goal_description == "make tea" and [s.description for s in g.steps] == ["boil water", "pour water"]
    assert g.steps[1].substeps[0].description == "lift kettle"
    (c,) = read_coin(write(tmp_path, COIN))
    assert (c.task, c.start, c.end, c.segments[0].label) == ("make tea", 1.0, 12.0, "boil water")
    (a,) = read_lta(write(tmp_path, LTA))
    assert (a.start, a.end, a.verb_label, a.noun) == (11.0, 12.0, 1, "cup")


def mutate(data, path, value):
    data = json.loads(json.dumps(data))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


CASES = [
    (read_narration, NARRATION, ("vid", "narration_pass_1", "narrations", 1, "narration_text"), 5,
     "vid/narration_pass_1/narrations[1]", "narration_text", "expected str"),
    (read_narration, NARRATION, ("vid", "narration_pass_1", "narrations", 0, "timestamp_sec"), -1,
     "vid/narration_pass_1/narrations[0]", "timestamp_sec", ">= 0"),
    (read_goalstep, GOALSTEP, ("videos", 0, "segments", 1, "end_time"), 0.1,
     "videos[0] (g)/segments[1]", "end_time", "ends before it starts"),
    (read_goalstep, GOALSTEP, ("videos", 0, "goal_description"), KeyError,
     "videos[0] (g)", "goal_description", "missing"),
    (read_goalstep, GOALSTEP, ("videos", 0, "segments", 0, "segments", 0, "start_time"), "4",
     "videos[0] (g)/segments[0]/segments[0]", "start_time", "expected int or float"),
    (read_coin, COIN, ("database", "yt1", "annotation", 0, "segment"), [4.0, 1.0],
     "yt1/annotation[0]/segment", "end", "ends before it starts"),
    (read_coin, COIN, ("database", "yt1", "subset"), "train", "yt1", "subset", "expected one of"),
    (read_coin, COIN, ("database", "yt1", "duration"), True, "yt1", "duration", "expected int or float"),
    (read_lta, LTA, ("clips", 0, "verb_label"), 1.5, "clips[0]", "verb_label", "expected int"),
]


@pytest.mark.parametrize("reader,data,path,value,record,field,message", CASES)
def test_malformed_fields_name_file_record_and_field(tmp_path, reader, data, path, value, record, field, message):
    file = write(tmp_path, mutate(data, path, value))
    with pytest.raises(DataError) as info:
        reader(file)
    err = info.value
    assert (err.file, err.record, err.field) == (str(file), record, field)
    assert message in str(err) and str(file) in str(err)


@pytest.mark.parametrize("reader, data, path", [
    (read_narration, NARRATION, ("vid", "narration_pass_1", "narrations", 0, "timestamp_sec")),
    (read_lta, LTA, ("clips", 0, "action_clip_end_sec")),
])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**40])
def test_non_finite_and_huge_numbers_are_refused_with_their_position(tmp_path, reader, data, path, value):
    file = write(tmp_path, mutate(data, path, value))
    with pytest.raises(DataError, match=r"refused JSON at line \d+ column \d+: ") as info:
        reader(file)
    assert info.value.file == str(file)


def test_deep_nesting_is_refused_without_recursion_errors(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"videos": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(DataError, match="nested more than 64 levels"):
        read_goalstep(deep)


@pytest.mark.parametrize("reader", [read_narration, read_goalstep, read_coin, read_lta])
def test_truncated_json_bad_utf8_and_missing_file(tmp_path, reader):
    truncated = write(tmp_path, json.dumps(GOALSTEP)[:40], "t.json")
    with pytest.raises(DataError, match="invalid JSON at line 1") as info:
        reader(truncated)
    assert info.value.file == str(truncated)
    bad = tmp_path / "b.json"
    bad.write_bytes(b'{"videos": ["\xff\xfe"]}')
    with pytest.raises(DataError, match="not valid UTF-8 at byte 13"):
        reader(bad)
    with pytest.raises(DataError, match="cannot read"):
        reader(tmp_path / "missing.json")


def test_wrong_top_level_types(tmp_path):
    with pytest.raises(DataError, match="field 'videos': expected list"):
        read_goalstep(write(tmp_path, {"videos": {}}))
    with pytest.raises(DataError, match="record <root>: expected an object, got list"):
        read_narration(write(tmp_path, []))
    with pytest.raises(DataError, match="record vid: no narration pass"):
        read_narration(write(tmp_path, {"vid": {"other": 1}}))
