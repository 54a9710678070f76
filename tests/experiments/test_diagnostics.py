"""The silence separation: a perfect model separates fully, a constant one not at all."""

from __future__ import annotations

import pytest

from streamvlm.evaluation.stream_eval import EvalSample
from streamvlm.experiments.diagnostics import silence_probabilities, silence_separation

from .test_per_frame_eval import TURNS, StandIn, frames


@pytest.mark.parametrize("per_frame_layout", [False, True])
def test_a_perfect_model_separates_speak_and_silent_frames(per_frame_layout):
    model = StandIn("oracle")
    if not per_frame_layout:
        model.silent = model.token_ids.silence_id  # the stand-in's silence: the interval token
    sample = EvalSample(TURNS, frames(model), 2.0)
    pairs = silence_probabilities(model, sample, per_frame_layout)
    assert len(pairs) == 4 + 3  # the learned decisions of the two timed turns
    assert [speaks for _, speaks in pairs] == [False] * 3 + [True] + [False] * 2 + [True]
    result = silence_separation(model, [sample], per_frame_layout)
    assert result["p_silence_speak"] == pytest.approx(0.0, abs=1e-6)
    assert result["p_silence_silent"] == pytest.approx(1.0, abs=1e-6)


def test_a_constant_model_does_not_separate():
    model = StandIn("silent")
    result = silence_separation(model, [EvalSample(TURNS, frames(model), 2.0)], True)
    assert result["p_silence_speak"] == pytest.approx(result["p_silence_silent"])
