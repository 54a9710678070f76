"""Ego4D annotation files: ``narration.json``, GoalStep ``goalstep_*.json``, LTA ``fho_lta_*.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...jsonfiles import read_json
from .fields import Record

NARRATION_PASSES = ("narration_pass_1", "narration_pass_2")


@dataclass(frozen=True)
class Narration:
    """One timestamped narration of a pass (``text`` raw, e.g. ``"#C C picks up the knife"``)."""

    time: float
    text: str
    annotation_uid: str


@dataclass(frozen=True)
class NarrationVideo:
    """The narrations of one video, by pass name (``narration_pass_1``, ``narration_pass_2``)."""

    video_uid: str
    passes: dict[str, tuple[Narration, ...]]


def read_narration(path: str | Path) -> list[NarrationVideo]:
    """Read Ego4D ``narration.json``: ``{video_uid: {narration_pass_k: {"narrations": [...]}}}``."""
    file = str(path)
    root = Record(read_json(path), file, "<root>")
    videos = []
    for video_uid, entry in root.data.items():
        video = Record(entry, file, video_uid)
        passes: dict[str, tuple[Narration, ...]] = {}
        for name in NARRATION_PASSES:
            if name not in video.data:
                continue
            npass = video.child(video.data[name], name)
            items = npass.items("narrations")
            narrations = []
            for i, item in enumerate(items):
                rec = npass.child(item, f"narrations[{i}]")
                narrations.append(Narration(
                    time=rec.seconds("timestamp_sec"),
                    text=rec.text("narration_text"),
                    annotation_uid=rec.text("annotation_uid", optional=True) or name,
                ))
            passes[name] = tuple(sorted(narrations, key=lambda n: n.time))
        if not passes:
            video.fail(f"no narration pass (expected one of {', '.join(NARRATION_PASSES)})")
        videos.append(NarrationVideo(video_uid, passes))
    return videos


@dataclass(frozen=True)
class GoalStepSegment:
    """A step (or substep) of a GoalStep video, in seconds of the video."""

    start: float
    end: float
    category: str
    description: str
    substeps: tuple[GoalStepSegment, ...] = ()


@dataclass(frozen=True)
class GoalStepVideo:
    video_uid: str
    start: float
    end: float
    goal_category: str
    goal_description: str
    steps: tuple[GoalStepSegment, ...]


def _goalstep_segment(rec: Record) -> GoalStepSegment:
    start, end = rec.span("start_time", "end_time")
    subs = rec.get("segments", list, optional=True, default=[])
    return GoalStepSegment(
        start=start, end=end, category=rec.text("step_category"), description=rec.text("step_description"),
        substeps=tuple(_goalstep_segment(rec.child(s, f"segments[{i}]")) for i, s in enumerate(subs)),
    )


def read_goalstep(path: str | Path) -> list[GoalStepVideo]:
    """Read Ego4D GoalStep ``{"videos": [{video_uid, start_time, end_time, goal_*, segments}]}``."""
    file = str(path)
    root = Record(read_json(path), file, "<root>")
    videos = []
    for i, item in enumerate(root.items("videos")):
        rec = Record(item, file, f"videos[{i}]")
        uid = rec.text("video_uid")
        rec.record = f"videos[{i}] ({uid})"
        start, end = rec.span("start_time", "end_time")
        steps = tuple(_goalstep_segment(rec.child(s, f"segments[{j}]")) for j, s in enumerate(rec.items("segments")))
        videos.append(GoalStepVideo(uid, start, end, rec.text("goal_category"), rec.text("goal_description"),
                                    tuple(sorted(steps, key=lambda s: s.start))))
    return videos


@dataclass(frozen=True)
class LtaAction:
    """One action of an LTA clip; times in seconds of the parent video."""

    clip_uid: str
    video_uid: str
    action_idx: int
    verb: str
    noun: str
    verb_label: int
    noun_label: int
    start: float
    end: float


def read_lta(path: str | Path) -> list[LtaAction]:
    """Read Ego4D ``fho_lta_{train,val}.json`` (``{"clips": [...]}``), sorted by clip and action index."""
    file = str(path)
    root = Record(read_json(path), file, "<root>")
    actions = []
    for i, item in enumerate(root.items("clips")):
        rec = Record(item, file, f"clips[{i}]")
        offset = rec.seconds("clip_parent_start_sec", optional=True, default=0.0)
        start, end = rec.span("action_clip_start_sec", "action_clip_end_sec")
        actions.append(LtaAction(
            clip_uid=rec.text("clip_uid"), video_uid=rec.text("video_uid"), action_idx=rec.get("action_idx", int),
            verb=rec.text("verb"), noun=rec.text("noun"),
            verb_label=rec.get("verb_label", int), noun_label=rec.get("noun_label", int),
            start=offset + start, end=offset + end,
        ))
    return sorted(actions, key=lambda a: (a.clip_uid, a.action_idx))
