"""Where streamvlm and upstream differ, the choice is a named option; upstream's recipes and the
released layout pick upstream's (docs/upstream.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streamvlm.evaluation.files import EvalSettings, resolve_rules
from streamvlm.presets import tiny_config
from streamvlm.train.config import load_train_config, shipped_configs


@pytest.mark.parametrize("name", [n for n in shipped_configs() if n.startswith("live1")])
def test_upstream_recipes_use_upstream_labels_and_preprocessing(name):
    model = load_train_config(name).model.config
    assert model.last_frame_label == "next_token"
    assert model.vision.resize == "upstream"
    assert resolve_rules(EvalSettings(), model)["rules"] == "upstream"


def test_own_recipes_keep_streamvlm_rules():
    model = load_train_config("tiny-synth").model.config
    assert (model.last_frame_label, model.vision.resize) == ("silence", "streamvlm")
    assert resolve_rules(EvalSettings(), model) == {"rules": "streamvlm", "threshold": 0.725, "timing": "reply_frame",
                                                    "missing_metric": "skip"}


def test_rules_default_to_the_models_own_and_each_field_overrides():
    upstream_model = replace(tiny_config(), last_frame_label="next_token")
    assert resolve_rules(EvalSettings(), upstream_model) == {
        "rules": "upstream", "threshold": 0.0, "timing": "learned_frames", "missing_metric": "neutral"}
    assert resolve_rules(EvalSettings(rules="streamvlm"), upstream_model)["threshold"] == 0.725
    mixed = resolve_rules(EvalSettings(rules="upstream", missing_metric="skip", threshold=0.3), tiny_config())
    assert mixed == {"rules": "upstream", "threshold": 0.3, "timing": "learned_frames", "missing_metric": "skip"}
