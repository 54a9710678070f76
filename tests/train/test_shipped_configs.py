"""Every shipped recipe and DeepSpeed config loads and validates (nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamvlm.model.config import UPSTREAM_LORA_TARGETS
from streamvlm.train.config import load_train_config, shipped_configs
from streamvlm.train.deepspeed import FILLED_KEYS, fill_deepspeed_config, read_deepspeed_config

REPO = Path(__file__).resolve().parents[2]
DEEPSPEED = sorted((REPO / "configs" / "deepspeed").glob("*.json"))


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_validates(name):
    cfg = load_train_config(name)  # strict: any wrong key, type or range raises
    if cfg.deepspeed is not None:
        assert (REPO / cfg.deepspeed).is_file()


def test_expected_recipes_are_shipped():
    names = set(shipped_configs())
    for base in ("tiny-synth", "live1plus-llama3-8b-ego4d"):
        for variant in ("", "-interleaved", "-per-frame", "-focal", "-ohem"):
            assert base + variant in names
    assert "live1-llama3-8b-ego4d" in names


@pytest.mark.parametrize("name,tokens", [("live1plus-llama3-8b-ego4d", 10), ("live1-llama3-8b-ego4d", 1)])
def test_paper_settings(name, tokens):
    cfg = load_train_config(name)
    model = cfg.model.config
    assert model.llm_name_or_path == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert model.vision.name_or_path == "google/siglip-large-patch16-384"
    assert model.tokens_per_frame == tokens and model.frame_fps == 2.0
    lora = cfg.lora.settings()
    assert (lora.r, lora.alpha, lora.target_modules) == (128, 256, UPSTREAM_LORA_TARGETS)
    assert cfg.optim.lr == 2e-4 and cfg.loss.tau == 1.0 and cfg.loss.kind == "ce"
    assert cfg.precision == "bf16" and cfg.gradient_checkpointing
    assert read_deepspeed_config(REPO / cfg.deepspeed)["zero_optimization"]["stage"] == 2


def test_tiny_synth_is_small():
    cfg = load_train_config("tiny-synth")
    llm, tower = cfg.model.config.llm_config, cfg.model.config.vision.tower_config
    assert 128 <= llm["hidden_size"] <= 256 and llm["num_hidden_layers"] == 4
    assert tower["image_size"] == 64 and tower["patch_size"] == 8 and 2 <= tower["num_hidden_layers"] <= 4
    assert cfg.tokenizer.path == "train" and cfg.precision == "fp32"


def test_variants_override_one_thing():
    base = load_train_config("tiny-synth")
    assert load_train_config("tiny-synth-per-frame").data.method == "per_frame"
    ohem = load_train_config("tiny-synth-ohem")
    assert ohem.loss.kind == "ohem" and ohem.optim == base.optim and ohem.model == base.model


@pytest.mark.parametrize("path", DEEPSPEED, ids=lambda p: p.name)
def test_deepspeed_config_structure(path):
    ds = read_deepspeed_config(path)
    assert ds["zero_optimization"]["stage"] in (2, 3)
    cfg = load_train_config("live1plus-llama3-8b-ego4d", ["optim.grad_accum=4", "optim.batch_size=2"])
    filled = fill_deepspeed_config(ds, cfg)

    def get(key: str):
        node = filled
        for part in key.split("."):
            node = node[part]
        return node

    assert "auto" not in json.dumps(filled)  # the recipe fills every "auto"
    assert [get(k) for k in FILLED_KEYS] == [2, 4, 1.0, True, False]
    assert "train_batch_size" not in filled
    assert ds == read_deepspeed_config(path)  # the input is not modified


def test_deepspeed_config_errors(tmp_path):
    bad = tmp_path / "ds.json"
    bad.write_text('{"zero_optimization": {"stage": 7}}')
    with pytest.raises(Exception, match="stage must be 0 to 3"):
        read_deepspeed_config(bad)
