"""Live-like streams of the synthetic world: tasks chained one after another with idle stretches
(of up to minutes) between and within them, annotated and rendered consistently."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest

from streamvlm.cli import main
from streamvlm.data.convert.livechat import goalstep_tasks
from streamvlm.data.formats.ego4d import read_goalstep, read_narration
from streamvlm.data.synth import (
    LiveOptions,
    SynthWorld,
    formats,
    generate_world,
    is_live,
    plan_stream,
    plan_video,
    render_video_frames,
)
from streamvlm.data.synth.labels import LABEL_FIELDS, VERB_CLASSES, frame_labels
from streamvlm.data.synth.planner import task_of
from streamvlm.data.synth.vocabulary import step_taxonomy

from .test_synth_world import _decode, _idle_and_action_change

LIVE = LiveOptions(live_fraction=1.0, idle_min=4.0, idle_max=8.0)
STREAM_WORLD = dict(num_videos=2, seed=11, duration=150.0, size=64, fps=2.0, workers=1, progress=False, live=LIVE)
COLUMN = {name: i for i, name in enumerate(LABEL_FIELDS)}


@pytest.fixture(scope="module")
def stream_world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("streams") / "world", **STREAM_WORLD)


def _streams(live: LiveOptions, duration: float = 600.0, n: int = 9, seed: int = 4):
    return [plan_stream(seed, i, live, duration=duration, fps=2.0, size=32) for i in range(n)]


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- defaults unchanged
def test_default_worlds_are_unchanged():
    """Plans and annotations of clip worlds, fingerprinted with the code before streams existed."""
    videos = [plan_video(7, i, duration=60.0) for i in range(9)]
    videos += [plan_video(3, i, duration=17.5, fps=4.0, size=32) for i in range(3)]
    plans = []
    for v in videos:
        d = asdict(v)
        assert d.pop("parts") is None and d.pop("idle") is None
        plans.append(d)
    assert _fingerprint(plans) == "d5f40705315cb48b"
    notes = [formats.narrations(videos), formats.goalstep(videos), formats.coin(videos), formats.lta(videos, "train")]
    assert _fingerprint(notes) == "ce470d3d799a92da"
    assert all(plan_video(7, i, live=LiveOptions()) == plan_video(7, i) for i in range(9))


def test_a_clip_world_json_has_no_stream_fields(tiny_world):
    data = json.loads((tiny_world.root / "world.json").read_text())
    assert "live" not in data["options"]
    assert all("parts" not in v and "idle" not in v for v in data["videos"])
    assert SynthWorld.load(tiny_world.root).options.live == LiveOptions()


# ---------------------------------------------------------------------------- determinism, mixing
def test_streams_are_a_pure_function_of_seed_index_and_options():
    live = LiveOptions(live_fraction=1.0, idle_max=60.0)
    assert plan_stream(2, 3, live, duration=300) == plan_stream(2, 3, live, duration=300)
    assert plan_stream(2, 3, live, duration=300) != plan_stream(2, 4, live, duration=300)
    assert plan_stream(2, 3, live, duration=300) != plan_stream(2, 3, LiveOptions(idle_max=90.0), duration=300)


def test_a_longer_stream_continues_a_shorter_one():
    """Same video, longer duration or more tasks: the shorter stream is a prefix of the longer."""
    live = LiveOptions(live_fraction=1.0, idle_max=60.0)
    for index in range(4):
        short, long = plan_stream(6, index, live, duration=400), plan_stream(6, index, live, duration=1200)
        assert long.actions[:len(short.actions)] == short.actions
        assert [p.task for p in long.parts[:len(short.parts)]] == [p.task for p in short.parts]
        two = plan_stream(6, index, LiveOptions(tasks_per_video=2), duration=1200)
        three = plan_stream(6, index, LiveOptions(tasks_per_video=3), duration=1200)
        assert len(two.parts) == 2 and len(three.parts) == 3
        assert three.actions[:len(two.actions)] == two.actions


def test_live_fraction_mixes_streams_into_a_clip_world():
    live = LiveOptions(live_fraction=0.3, live_duration=300.0)
    picked = [is_live(1, i, live) for i in range(300)]
    assert 0.22 < np.mean(picked) < 0.38
    assert picked == [is_live(1, i, LiveOptions(live_fraction=0.3)) for i in range(300)]
    for i in range(12):
        v = plan_video(1, i, duration=60.0, live=live)
        if picked[i]:
            assert v.parts is not None and v.duration == 300.0 and v.parts[0].task == task_of(1, i).name
        else:
            assert v == plan_video(1, i, duration=60.0)
    assert not any(is_live(1, i, LiveOptions()) for i in range(300))
    assert all(is_live(1, i, LiveOptions(live_fraction=1.0)) for i in range(300))


# ---------------------------------------------------------------------------- idle stretches
@pytest.mark.parametrize("distribution", ["loguniform", "uniform"])
def test_idle_stretches_have_the_configured_lengths(distribution):
    live = LiveOptions(live_fraction=1.0, idle_min=20.0, idle_max=240.0, idle_distribution=distribution)
    lengths = []
    for v in _streams(live, duration=1800.0, n=6):
        assert v.idle and v.idle == sorted(v.idle)
        for start, end in v.idle:
            assert 0 <= start < end <= v.duration
            lengths.append(end - start)
            assert all(a.end <= start or a.start >= end for a in v.actions), "an action in an idle stretch"
            assert not any(start <= a.time <= end for a in v.actions), "a narration in an idle stretch"
        for part in v.parts[1:]:  # one idle stretch around every cut
            assert sum(start < part.start < end for start, end in v.idle) == 1
    lengths = np.array(lengths)
    assert lengths.min() >= 20.0 - 1e-3 and lengths.max() <= 240.0 + 1e-3
    assert (lengths > 120).any() and (lengths < 60).any()  # minutes and less
    if distribution == "loguniform":  # as many stretches in [20, 69] s as in [69, 240] s
        assert 0.3 < np.mean(lengths < np.sqrt(20 * 240)) < 0.7
    else:
        assert 0.1 < np.mean(lengths < np.sqrt(20 * 240)) < 0.4


def test_idle_within_tasks_only_with_an_empty_hand():
    live = LiveOptions(live_fraction=1.0, idle_min=10.0, idle_max=20.0, idle_within=1.0)
    within = 0
    for v in _streams(live, duration=900.0, n=5):
        for start, end in v.idle:
            part = next(p for p in v.parts if p.start <= start < p.end)
            if part.start < end <= part.end and start > part.start:  # inside one task's table time
                within += 1
            held = frame_labels(v, [start + 1.5, (start + end) / 2, end - 0.01])
            assert not held.any(), "the hand holds something or acts during an idle stretch"
    assert within >= 5
    none = _streams(LiveOptions(live_fraction=1.0, idle_within=0.0), n=4)
    assert all(len(v.idle) == len(v.parts) - 1 + (bool(v.idle) and v.idle[0][0] == 0.0) for v in none)


def test_long_streams_go_minutes_without_a_narration():
    """What the training clips never had (they stay under 14 s without a narration)."""
    for v in _streams(LiveOptions(live_fraction=1.0), duration=3600.0, n=2):
        times = [0.0] + [a.time for a in v.actions] + [v.duration]
        assert max(np.diff(times)) > 120 and len(v.parts) >= 10


# ---------------------------------------------------------------------------- chained tasks
def test_tasks_are_chained_with_consistent_labels():
    taxonomy = {sid: task for sid, task, _ in step_taxonomy()}
    for index, v in enumerate(_streams(LiveOptions(live_fraction=1.0, idle_max=60.0), duration=900.0)):
        assert len(v.parts) >= 3 and v.parts[0].task == task_of(4, index).name
        assert v.parts[0].start == 0.0 and v.parts[-1].end == v.duration
        ids = [oid for p in v.parts for oid in p.objects]
        assert sorted(ids) == sorted(o.id for o in v.objects) and len(set(ids)) == len(ids)
        for prev, part in zip(v.parts, v.parts[1:]):
            assert prev.end == part.start and prev.task != part.task
        assert v.goal.count(",") + 2 == len({p.goal for p in v.parts}) or len({p.goal for p in v.parts}) == 1
        ends = 0.0
        for i, a in enumerate(v.actions):
            assert ends <= a.start < a.time < a.end <= v.duration - 0.2 + 1e-9
            ends = a.end
            part = next(p for p in v.parts if p.start <= a.start < p.end)
            assert a.end < part.end and {a.obj, a.target, a.tool} - {None} <= set(part.objects)
            if a.step >= 0:
                assert i in v.steps[a.step].actions
        for s, step in enumerate(v.steps):
            assert step.index == s and v.actions[step.actions[0]].start == step.start
            part = next(p for p in v.parts if p.start <= step.start < p.end)
            assert taxonomy[step.step_id] == part.task and step.end < part.end
        for prev, step in zip(v.steps, v.steps[1:]):
            assert prev.end <= step.start
        for start, end, scene in v.scenes():  # each task's table, alone
            descriptions = [o.description for o in scene.objects]
            assert len(set(descriptions)) == len(descriptions)
            assert all(start <= a.start and a.end < end for a in scene.actions)


def test_the_table_is_re_laid_mid_pause_with_an_empty_hand():
    v = _streams(LiveOptions(live_fraction=1.0, idle_min=6.0, idle_max=12.0), duration=400.0, n=1)[0]
    assert len(v.parts) >= 3
    cuts = [p.start for p in v.parts[1:]]
    rows = frame_labels(v, [t + dt for t in cuts for dt in (-0.3, 0.0, 0.3)])
    assert not rows.any()  # nothing held, nothing under way around a cut


# ---------------------------------------------------------------------------- rendered frames
def test_stream_frames_show_each_part_as_its_own_clip():
    """Frame i of a stream is the frame of the part on screen at i/fps, rendered alone; the scene
    changes at a cut, and barely inside idle stretches away from it."""
    v = plan_stream(3, 1, LiveOptions(idle_min=8.0, idle_max=16.0), duration=220.0, fps=2.0, size=32)
    assert len(v.parts) >= 2
    frames = np.stack(list(render_video_frames(v)))
    assert frames.shape == (v.num_frames, 32, 32, 3)
    times = np.arange(v.num_frames) / v.fps
    for start, end, scene in v.scenes():
        alone = np.stack(list(render_video_frames(scene)))
        shown = (times >= start) & (times < end)
        assert np.array_equal(frames[shown], alone[shown])
    change = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    for part in v.parts[1:]:
        at_cut = int(np.ceil(part.start * v.fps))  # first frame of the new table
        span = next((s, e) for s, e in v.idle if s < part.start < e)
        quiet = [i for i in range(len(change)) if span[0] + 1.5 < times[i] and times[i + 1] < span[1] - 0.5
                 and i + 1 != at_cut]
        assert change[at_cut - 1] > 3 * max(np.median(change[quiet]), 0.5)
    busy, idle = _idle_and_action_change(v, frames)
    assert busy > 1.5 * idle


def test_stream_world_files_match_the_ground_truth(stream_world):
    root = stream_world.root
    assert all(v.parts for v in stream_world.videos)
    again = SynthWorld.load(root)
    assert again.videos == stream_world.videos and again.options.live == LIVE
    notes = {v.video_uid: v for v in read_narration(root / "annotations" / "narration.json")}
    raw = json.loads((root / "annotations" / "narration.json").read_text())
    coin = json.loads((root / "annotations" / "COIN.json").read_text())["database"]
    goalsteps = {g.video_uid: g for s in ("train", "val", "test")
                 for g in read_goalstep(root / "annotations" / f"goalstep_{s}.json")}
    for v in stream_world.videos:
        (texts,) = notes[v.uid].passes.values()
        assert [(n.time, n.text) for n in texts] == [(a.time, a.narration) for a in v.actions]
        summaries = raw[v.uid]["narration_pass_1"]["summaries"]
        assert [(s["start_sec"], s["end_sec"]) for s in summaries] == [(p.start, p.end) for p in v.parts]
        assert (v.uid in coin) == (len(v.parts) == 1)
        g = goalsteps[v.uid]
        assert g.goal_description == v.goal and [s.description for s in g.steps] == [s.description for s in v.steps]
        (task,) = goalstep_tasks([g])
        assert [(s.start, s.end) for s in task.steps] == [(s.start, s.end) for s in v.steps]
        decoded = _decode(stream_world.video_path(v.uid))
        assert decoded.shape == (v.num_frames, 64, 64, 3)
        rendered = np.stack(list(render_video_frames(v)))
        assert np.abs(decoded.astype(int) - rendered).mean() < 6.0
        labels = frame_labels(v, np.arange(v.num_frames) / v.fps)
        for a in v.actions:  # mid-action frames are labelled with the action
            mid = int(round((a.start + a.end) / 2 * v.fps))
            assert VERB_CLASSES[labels[mid, COLUMN["verb"]]] == a.verb
        for start, end in v.idle:
            inside = (np.arange(v.num_frames) / v.fps > start + 1.0) & (np.arange(v.num_frames) / v.fps < end)
            assert not labels[inside].any()


def test_stream_generation_is_deterministic(stream_world, tmp_path):
    again = generate_world(tmp_path / "again", **STREAM_WORLD)
    annotations = [f"annotations/{p.name}" for p in (stream_world.root / "annotations").iterdir()]
    for name in ["world.json", "splits.json"] + annotations:
        assert (stream_world.root / name).read_bytes() == (again.root / name).read_bytes(), name
    v = stream_world.videos[0]
    assert np.array_equal(_decode(stream_world.video_path(v.uid)), _decode(again.video_path(v.uid)))


# ---------------------------------------------------------------------------- command line
def test_cli_writes_streams(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["synth", "--out", str(out), "--videos", "2", "--seed", "3", "--duration", "20", "--size", "32",
            "--fps", "2", "--workers", "1", "--live-fraction", "1", "--live-duration", "140", "--idle-min", "4",
            "--idle-max", "9", "--idle-distribution", "uniform", "--idle-within", "0.5", "--tasks-per-video", "2"]
    assert main(args) == 0
    assert "2 live-like" in capsys.readouterr().out
    world = SynthWorld.load(out)
    assert world.options.live == LiveOptions(live_fraction=1.0, live_duration=140.0, idle_min=4.0, idle_max=9.0,
                                             idle_distribution="uniform", idle_within=0.5, tasks_per_video=2)
    assert all(v.duration == 140.0 and 1 <= len(v.parts) <= 2 for v in world.videos)


@pytest.mark.parametrize("bad", [["--idle-min", "10", "--idle-max", "5"], ["--idle-min", "1"],
                                 ["--live-fraction", "1.5"], ["--idle-within", "-0.1"], ["--live-duration", "2"],
                                 ["--tasks-per-video", "-1"], ["--idle-distribution", "normal"]])
def test_cli_refuses_bad_stream_arguments(tmp_path, capsys, bad):
    assert main(["synth", "--out", str(tmp_path / "w"), "--videos", "1"] + bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamvlm: error:") and "Traceback" not in err
    assert not (tmp_path / "w").exists()
