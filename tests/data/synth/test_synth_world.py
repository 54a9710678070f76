"""Planning, rendering, determinism and visibility of actions in the synthetic world."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from streamvlm.data.synth import generate_world, plan_video, render_video_frames, split_of
from streamvlm.data.synth.vocabulary import COLOURS, KIND_RADIUS, TASKS, VERBS

from .conftest import TINY


def _decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_vocabulary_is_rich_enough():
    assert len(VERBS) >= 6 and len(TASKS) >= 8
    kinds = [k for k in KIND_RADIUS if k != "drawer"]
    assert len(COLOURS) * len(kinds) >= 20
    for task in TASKS:
        assert len(task.steps) >= 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_task_plans_a_consistent_video(seed):
    """All task types over several layouts: ordered, non-overlapping actions inside the video,
    steps in order, every action of a step inside the step."""
    tasks = set()
    for index in range(len(TASKS)):
        v = plan_video(seed, index, duration=60.0)
        tasks.add(v.task)
        assert len(v.steps) >= 2 and len(v.actions) >= 5
        ends = 0.0
        for a in v.actions:
            assert ends <= a.start < a.time < a.end <= v.duration
            assert 1.0 <= a.end - a.start <= 7.5
            ends = a.end
        for prev, s in zip([None] + v.steps, v.steps):
            assert 0 <= s.start < s.end <= v.duration
            assert prev is None or prev.end <= s.start
            assert all(v.actions[i].step == s.index and s.start <= v.actions[i].start for i in s.actions)
        descriptions = [o.description for o in v.objects]
        assert len(set(descriptions)) == len(descriptions)
    assert tasks == {t.name for t in TASKS}  # a block of len(TASKS) videos has each task once


def test_plan_is_a_pure_function_of_seed_and_index():
    assert plan_video(3, 5, duration=20) == plan_video(3, 5, duration=20)
    assert plan_video(3, 5, duration=20) != plan_video(4, 5, duration=20)
    assert [split_of(11, i) for i in range(50)] == [split_of(11, i) for i in range(50)]
    assert {split_of(11, i) for i in range(200)} == {"train", "val", "test"}


def test_generation_is_deterministic(tiny_world, tmp_path):
    again = generate_world(tmp_path / "again", **TINY)
    annotations = [f"annotations/{p.name}" for p in (tiny_world.root / "annotations").iterdir()]
    for name in ["world.json", "splits.json"] + annotations:
        assert (tiny_world.root / name).read_bytes() == (again.root / name).read_bytes(), name
    for v in tiny_world.videos:
        assert np.array_equal(_decode(tiny_world.video_path(v.uid)), _decode(again.video_path(v.uid)))


def test_fewer_videos_give_a_prefix_of_the_world(tiny_world):
    """A video depends on (seed, index) only, not on how many videos are generated."""
    assert plan_video(TINY["seed"], 1, duration=10.0, fps=8.0, size=64) == tiny_world.videos[1]


def test_forced_split(tmp_path):
    world = generate_world(tmp_path / "w", 2, 99, duration=5.0, size=32, split="test", workers=1, progress=False)
    assert [v.split for v in world.videos] == ["test", "test"]
    assert json.loads((tmp_path / "w" / "splits.json").read_text())["train"] == []


def test_video_decodes_to_the_rendered_frames(tiny_world):
    v = tiny_world.videos[0]
    decoded = _decode(tiny_world.video_path(v.uid))
    assert decoded.shape == (80, 64, 64, 3) == (v.num_frames, v.size, v.size, 3)
    rendered = np.stack(list(render_video_frames(v)))
    assert np.abs(decoded.astype(int) - rendered).mean() < 6.0  # only h264/yuv420p loss
    with av.open(str(tiny_world.video_path(v.uid))) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.format.name == "yuv420p" and float(s.average_rate) == 8.0


def _idle_and_action_change(v, frames):
    times = np.arange(len(frames)) / v.fps
    diff = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))  # change into frame i+1
    t = times[1:]
    busy = np.zeros(len(t), bool)
    idle = np.ones(len(t), bool)
    for a in v.actions:
        busy |= (t > a.start + 0.2) & (t < a.end - 0.2)
        idle &= (t < a.start - 1.0) | (t > a.end + 1.5)
    return diff[busy].mean(), diff[idle].mean() if idle.any() else None


def test_actions_change_pixels_more_than_idle_periods():
    """Despite jitter, light changes and the fly, frames change far more while an action is
    under way than while the wearer is idle."""
    ratios = []
    for index in range(6):
        v = plan_video(5, index, duration=40.0, fps=4.0, size=64)
        busy, idle = _idle_and_action_change(v, np.stack(list(render_video_frames(v))))
        if idle is not None:
            ratios.append(busy / idle)
    assert len(ratios) >= 3, "plans should leave idle periods"
    assert min(ratios) > 1.5 and np.mean(ratios) > 2.5, ratios


def test_moved_object_leaves_its_place():
    """Where an object stood changes once it has been picked up and put somewhere else; a far
    corner of the frame barely changes meanwhile."""
    v = plan_video(2, 0, duration=40.0, fps=4.0, size=64)
    frames = list(render_video_frames(v))
    pick, put = next((a, b) for a, b in zip(v.actions, v.actions[1:])
                     if a.verb == "pick" and b.obj == a.obj and np.hypot(a.x - b.x, a.y - b.y) > 0.3)
    before = frames[int(pick.start * v.fps)].astype(int)
    after = frames[min(int(np.ceil(put.end * v.fps)), len(frames) - 1)].astype(int)
    r = int(0.05 * v.size)
    cx, cy = int(pick.x * v.size), int(pick.y * v.size)
    window = np.s_[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r]
    corner = np.s_[0:2 * r, 0:2 * r] if cx > v.size // 2 else np.s_[0:2 * r, -2 * r:]
    moved = np.abs(after[window] - before[window]).mean()
    assert moved > 30 and moved > 5 * np.abs(after[corner] - before[corner]).mean(), moved
