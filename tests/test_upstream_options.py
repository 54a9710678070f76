"""Where streamvlm and upstream differ, the choice is a named option; upstream's recipes and the
released layout pick upstream's (docs/upstream.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streamvlm.evaluation.files import EvalSettings, resolve_rules
from streamvlm.model.presets import tiny_config
from streamvlm.train.config import load_train_config, shipped_configs


@pytest.mark.parametrize("name", [n for n in shipped_configs() if n.startswith("live1")])
def test_upstream_recipes_use_upstream_labels_and_preprocessing(name):
    model = load_train_config(name).model.config
    assert model.last_frame_label == "next_token"
    assert model.vision.resize == "upstream"
    assert model.reply_cap == 99  # upstream stops a reply at 100 tokens, eos included
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


def test_reply_cap_is_the_models_unless_the_generation_settings_name_one():
    import torch

    from streamvlm.engine.options import GenerationConfig
    from streamvlm.engine.session import StreamEngine

    from .helpers import tiny_model

    model = tiny_model()
    model.config.reply_cap = 7
    frame = torch.zeros(model.config.tokens_per_frame, model.config.llm_hidden_size)

    def reply_length(generation: GenerationConfig) -> int:
        session = StreamEngine(model, generation).new_session()
        session.push_query("What is this?", 0.0)
        events = session.push_frame(frame, 0.0)
        return len([e for e in events if e.role == "assistant"][0].token_ids)

    model.language_model.lm_head.weight.data.zero_()
    model.language_model.lm_head.bias = None
    eos = model.token_ids.eos_id
    with torch.no_grad():  # a model that never says eos: every reply runs to the cap
        model.language_model.lm_head.weight[(eos + 1) % model.vocab_size] = 1.0
    assert reply_length(GenerationConfig()) == 7
    assert reply_length(GenerationConfig(max_new_tokens=3)) == 3
