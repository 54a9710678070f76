"""Write the synthetic world's ground truth in the real datasets' annotation formats.

- Ego4D narrations (``narration.json``): one point per action at the moment it visibly happens,
  ``"#C C picks up the red cup"``, plus one ``#Summary`` per video (per task of a stream that
  chains several, over the time its table is shown).
- Ego4D GoalStep (``goalstep_{split}.json``): goal -> steps -> substeps (the atomic actions). A
  stream's goal names its tasks ("make tea, cut fruit and tidy the desk"), its steps are all of
  theirs, in order.
- COIN (``COIN.json``): task class and step segments; ``subset`` is ``training`` for the train
  split and ``testing`` for val and test. A top-level ``taxonomy`` lists each task's step ids.
  Streams of several tasks are not listed (a COIN video shows one task).
- Ego4D long-term anticipation (``fho_lta_{split}.json`` and ``fho_lta_taxonomy.json``): one
  clip per video (the whole video), one entry per action with verb/noun labels.

Each function returns plain JSON-ready dicts; :func:`write_annotations` writes them all.
"""

from __future__ import annotations

import json
from pathlib import Path

from .spec import VideoSpec
from .vocabulary import NOUNS, TASKS, VERBS, step_taxonomy

VERB_LABELS: tuple[str, ...] = tuple(v.label for v in VERBS.values())
SPLITS = ("train", "val", "test")


def narrations(videos: list[VideoSpec]) -> dict:
    """Ego4D ``narration.json`` content."""
    out = {}
    for v in videos:
        items = [{"timestamp_sec": a.time, "timestamp_frame": int(round(a.time * v.fps)),
                  "narration_text": a.narration, "annotation_uid": f"{v.uid}_n{i:03d}"}
                 for i, a in enumerate(v.actions)]
        spans = [(p.start, p.end, p.goal) for p in v.parts] if v.parts else [(0.0, v.duration, v.goal)]
        summaries = [{"start_sec": start, "end_sec": end, "summary_text": f"#Summary C tries to {goal} at a table."}
                     for start, end, goal in spans]
        out[v.uid] = {"narration_pass_1": {"narrations": items, "summaries": summaries}}
    return out


def goalstep(videos: list[VideoSpec]) -> dict:
    """Ego4D GoalStep content for ``videos`` (one split)."""
    out = []
    for v in videos:
        steps = []
        for s in v.steps:
            subs = [{"start_time": v.actions[i].start, "end_time": v.actions[i].end,
                     "step_category": f"{VERBS[v.actions[i].verb].label} {v.actions[i].noun}",
                     "step_description": v.actions[i].imperative, "segments": []} for i in s.actions]
            steps.append({"start_time": s.start, "end_time": s.end, "step_category": s.description,
                          "step_description": s.description, "step_id": s.step_id, "segments": subs})
        out.append({"video_uid": v.uid, "start_time": 0.0, "end_time": v.duration, "goal_category": v.task,
                    "goal_description": v.goal, "segments": steps})
    return {"videos": out}


def coin(videos: list[VideoSpec]) -> dict:
    """COIN ``COIN.json`` content (all splits) with a ``taxonomy`` of step ids per task."""
    recipe = {t.name: i + 1 for i, t in enumerate(TASKS)}
    database = {}
    for v in videos:
        if v.parts and len(v.parts) > 1:  # a COIN video shows one task instance: streams are left out
            continue
        ann = [{"id": str(s.step_id), "segment": [s.start, s.end], "label": s.description} for s in v.steps]
        database[v.uid] = {"duration": v.duration, "class": v.goal,
                           "subset": "training" if v.split == "train" else "testing",
                           "recipe_type": recipe[v.task], "start": ann[0]["segment"][0] if ann else 0.0,
                           "end": ann[-1]["segment"][1] if ann else 0.0, "annotation": ann,
                           "video_url": f"videos/{v.uid}.mp4"}
    taxonomy = {t.goal: {"recipe_type": recipe[t.name], "steps": {}} for t in TASKS}
    goals = {t.name: t.goal for t in TASKS}
    for sid, task, desc in step_taxonomy():
        taxonomy[goals[task]]["steps"][str(sid)] = desc
    return {"database": database, "taxonomy": taxonomy}


def lta(videos: list[VideoSpec], split: str) -> dict:
    """Ego4D LTA ``fho_lta_{split}.json`` content: one clip per video."""
    clips = []
    for v in videos:
        for i, a in enumerate(v.actions):
            clips.append({"clip_uid": f"{v.uid}_clip0", "video_uid": v.uid, "clip_id": v.index,
                          "clip_parent_start_sec": 0.0, "clip_parent_end_sec": v.duration,
                          "action_idx": i, "verb": VERBS[a.verb].label, "noun": a.noun,
                          "verb_label": VERB_LABELS.index(VERBS[a.verb].label), "noun_label": NOUNS.index(a.noun),
                          "action_clip_start_sec": a.start, "action_clip_end_sec": a.end,
                          "action_clip_start_frame": int(round(a.start * v.fps)),
                          "action_clip_end_frame": int(round(a.end * v.fps))})
    return {"version": "synth-1", "split": split, "clips": clips}


def lta_taxonomy() -> dict:
    return {"verbs": list(VERB_LABELS), "nouns": list(NOUNS)}


ANNOTATION_FILES = ("narration.json", "COIN.json", "fho_lta_taxonomy.json",
                    *(f"{kind}_{split}.json" for split in SPLITS for kind in ("goalstep", "fho_lta")))
"""Every file :func:`write_annotations` writes."""


def write_annotations(videos: list[VideoSpec], folder: Path) -> None:
    """Write every annotation file of ``videos`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, data: dict) -> None:
        (folder / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    dump("narration.json", narrations(videos))
    dump("COIN.json", coin(videos))
    dump("fho_lta_taxonomy.json", lta_taxonomy())
    for split in SPLITS:
        part = [v for v in videos if v.split == split]
        dump(f"goalstep_{split}.json", goalstep(part))
        dump(f"fho_lta_{split}.json", lta(part, split))
