"""Per-frame ground truth of the synthetic world: what a single frame shows.

Used to pretrain a small vision tower on the world's frames before the language model learns to
talk about them (the role SigLIP's own pretraining plays for the real model). Every field is a
class index; 0 always means "none".

- ``held_kind`` / ``held_colour``: the object in the hand.
- ``verb``: the action under way (between its start and end).
- ``object_kind`` / ``object_colour``: the object that action acts on.
- ``target_kind`` / ``target_colour``: where it goes (``put_in``, ``pour``, ``stack``, ...).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np

from .render import Timeline
from .spec import VideoSpec
from .vocabulary import COLOURS, KIND_RADIUS, VERBS

NONE = "none"
KIND_CLASSES: tuple[str, ...] = (NONE, *KIND_RADIUS)
COLOUR_CLASSES: tuple[str, ...] = (NONE, *COLOURS)
VERB_CLASSES: tuple[str, ...] = (NONE, *VERBS)

#: Field name -> its classes, in the column order of :func:`frame_labels`.
LABEL_FIELDS: dict[str, tuple[str, ...]] = {
    "held_kind": KIND_CLASSES,
    "held_colour": COLOUR_CLASSES,
    "verb": VERB_CLASSES,
    "object_kind": KIND_CLASSES,
    "object_colour": COLOUR_CLASSES,
    "target_kind": KIND_CLASSES,
    "target_colour": COLOUR_CLASSES,
}


def _object_classes(spec: VideoSpec, oid: str | None) -> tuple[int, int]:
    if oid is None:
        return 0, 0
    obj = spec.object(oid)
    return KIND_CLASSES.index(obj.kind), COLOUR_CLASSES.index(obj.colour)


def frame_labels(spec: VideoSpec, times: Sequence[float]) -> np.ndarray:
    """Labels of the frames of ``spec`` shown at ``times`` (seconds) -> int64 ``[N, F]``, one
    column per :data:`LABEL_FIELDS` entry."""
    scenes = spec.scenes()
    starts = [start for start, _, _ in scenes]
    timelines: dict[int, Timeline] = {}
    rows = np.zeros((len(times), len(LABEL_FIELDS)), dtype=np.int64)
    for i, t in enumerate(times):
        k = max(bisect_right(starts, t) - 1, 0)  # the part of a stream on screen at t
        if k not in timelines:
            timelines[k] = Timeline(scenes[k][2])
        timeline, shown = timelines[k], scenes[k][2]
        held = next((o.id for o in shown.objects if timeline.state(o.id, t).holder == "hand"), None)
        action = timeline.current(t)
        verb = VERB_CLASSES.index(action.verb) if action is not None else 0
        obj = _object_classes(spec, action.obj if action is not None else None)
        target = _object_classes(spec, action.target if action is not None else None)
        rows[i] = (*_object_classes(spec, held), verb, *obj, *target)
    return rows
