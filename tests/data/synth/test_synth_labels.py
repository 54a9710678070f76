"""Per-frame labels of the synthetic world follow its actions."""

from __future__ import annotations

import numpy as np

from streamvlm.data.synth.labels import COLOUR_CLASSES, KIND_CLASSES, LABEL_FIELDS, VERB_CLASSES, frame_labels
from streamvlm.data.synth.planner import plan_video

COLUMN = {name: i for i, name in enumerate(LABEL_FIELDS)}


def _video():
    spec = plan_video(3, 0, duration=60.0, fps=8.0, size=64)
    assert len(spec.actions) >= 4
    return spec


def test_no_action_no_label():
    spec = _video()
    first = spec.actions[0].start
    assert first > 0
    rows = frame_labels(spec, [first / 2])  # before the first action: empty hand, nothing under way
    assert rows.shape == (1, len(LABEL_FIELDS)) and rows.dtype == np.int64
    assert rows.tolist() == [[0] * len(LABEL_FIELDS)]


def test_action_fields_name_the_action_object_and_target():
    spec = _video()
    for action in spec.actions:
        row = frame_labels(spec, [(action.start + action.end) / 2])[0]
        assert VERB_CLASSES[row[COLUMN["verb"]]] == action.verb
        for role, oid in (("object", action.obj), ("target", action.target)):
            kind, colour = KIND_CLASSES[row[COLUMN[f"{role}_kind"]]], COLOUR_CLASSES[row[COLUMN[f"{role}_colour"]]]
            if oid is None:
                assert (kind, colour) == ("none", "none")
            else:
                assert (kind, colour) == (spec.object(oid).kind, spec.object(oid).colour)


def test_held_object_from_pick_until_it_is_put_away():
    spec = _video()
    checked = 0
    for i, action in enumerate(spec.actions[:-1]):
        if action.verb != "pick":
            continue
        release = next(a for a in spec.actions[i + 1:] if a.obj == action.obj)
        before, during = action.time - 0.05, (action.time + release.time) / 2
        rows = frame_labels(spec, [before, during, release.time + 0.05])
        obj = spec.object(action.obj)
        expected = [KIND_CLASSES.index(obj.kind), COLOUR_CLASSES.index(obj.colour)]
        assert rows[0, :2].tolist() == [0, 0]
        assert rows[1, :2].tolist() == expected
        if release.verb in ("put_down", "put_in", "stack", "put_on"):
            assert rows[2, :2].tolist() == [0, 0]
        checked += 1
    assert checked >= 1
