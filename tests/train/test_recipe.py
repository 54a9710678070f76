"""The recipe end to end on a tiny model: loss falls, checkpoints save and load, resume is exact."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from streamvlm.errors import ConfigError
from streamvlm.model.checkpoint import load_pretrained
from streamvlm.train.config import load_train_config
from streamvlm.train.recipe import train
from streamvlm.train.state import latest_checkpoint

from .conftest import tiny_overrides, write_dataset


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in metrics(out) if "loss" in m}


def test_train_saves_and_resumes_exactly(tmp_path, synth_data):
    full = tmp_path / "full"
    cfg = load_train_config(None, tiny_overrides(synth_data, full, **{"optim.max_steps": 8, "save_every": 4,
                                                                        "data.val": synth_data["val"]}))
    assert train(cfg) == full
    curve = losses(full)
    assert list(curve) == list(range(1, 9))
    assert curve[8] < curve[1] - 0.5, curve
    record = metrics(full)[0]
    assert {"lm_loss", "stream_loss", "lr", "tokens_per_s", "grad_norm"} <= set(record)
    assert any("val_loss" in m for m in metrics(full))
    assert latest_checkpoint(full).name == "checkpoint-000008"
    assert (full / "checkpoint-000004" / "trainer_state.pt").is_file()

    # Resume from step 4 in a new folder: steps 5..8 must repeat the uninterrupted run.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-000004", resumed / "checkpoint-000004")
    cfg = load_train_config(None, tiny_overrides(synth_data, resumed, **{"optim.max_steps": 8, "save_every": 4,
                                                                           "resume": True}))
    train(cfg)
    again = losses(resumed)
    assert list(again) == [5, 6, 7, 8]
    for step, loss in again.items():
        assert loss == pytest.approx(curve[step], rel=1e-5, abs=1e-6)

    # The final checkpoint is an ordinary model folder.
    model = load_pretrained(full / "checkpoint-000008")
    state = torch.load(full / "checkpoint-000008" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 8
    tokens = torch.randn(9, 10, 32)
    assert model.frame_encoder is None and model.config.vision_hidden_size == 32
    assert model.project_frames(tokens).shape == (9, 10, model.config.llm_hidden_size)


def test_interrupt_saves_a_resumable_checkpoint(tmp_path, synth_data):
    out = tmp_path / "run"
    cfg = load_train_config(None, tiny_overrides(synth_data, out, **{"optim.max_steps": 400}))

    def interrupt() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / "metrics.jsonl").is_file():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    ckpt = latest_checkpoint(out)
    step = int(ckpt.name.split("-")[1])
    assert 1 <= step < 400
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    cfg = load_train_config(None, tiny_overrides(synth_data, out, **{"optim.max_steps": step + 2, "resume": True}))
    train(cfg)
    assert latest_checkpoint(out).name == f"checkpoint-{step + 2:06d}"


@pytest.mark.parametrize("method", ["interleaved", "per_frame"])
def test_baseline_methods_train(tmp_path, synth_data, method):
    out = tmp_path / method
    cfg = load_train_config(None, tiny_overrides(synth_data, out, **{"optim.max_steps": 2, "data.method": method,
                                                                       "loss.kind": "focal"}))
    train(cfg)
    assert all(m["stream_loss"] == 0.0 for m in metrics(out))  # no frame decision is learned


def test_lora_trains_adapters_and_connector_only(tmp_path, synth_data, monkeypatch):
    import streamvlm.train.recipe as recipe

    built, build_model = {}, recipe.build_model

    def build_and_snapshot(*args):  # keeps the model and a copy of its weights before training
        built["model"] = model = build_model(*args)
        built["before"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return model

    monkeypatch.setattr(recipe, "build_model", build_and_snapshot)
    out = tmp_path / "lora"
    cfg = load_train_config(None, tiny_overrides(synth_data, out, **{
        "optim.max_steps": 2, "lora.enabled": True, "lora.r": 4, "lora.alpha": 8,
        "lora.target_modules": "model.*(q_proj|v_proj)", "gradient_checkpointing": True, "precision": "bf16"}))
    train(cfg)

    before, after = built["before"], built["model"].state_dict()
    adapters = [k for k in before if "lora_B" in k]
    connector = [k for k in before if k.startswith("connector.")]
    frozen = [k for k in before if "lora_" not in k and not k.startswith("connector.")]
    assert len(adapters) == 2 * 2 and connector and frozen  # q_proj and v_proj of the tiny LM's 2 layers
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert set(adapters) | set(connector) <= set(changed), "an adapter or the connector did not train"
    assert not set(frozen) & set(changed), f"frozen weights changed: {sorted(set(frozen) & set(changed))[:3]}"

    # The saved checkpoint reloads with those adapters (and the trained connector).
    model = load_pretrained(latest_checkpoint(out))
    assert model.config.lora is not None and model.config.lora.r == 4
    reloaded = model.state_dict()
    assert set(reloaded) == set(after)
    for key in adapters + connector + frozen:
        assert torch.equal(reloaded[key], after[key]), key


def test_feature_width_mismatch_is_a_clear_error(tmp_path):
    data = write_dataset(tmp_path / "wide", width=48)
    cfg = load_train_config(None, tiny_overrides(data, tmp_path / "out", **{"optim.max_steps": 1}))
    with pytest.raises(ConfigError, match="width 48.*expects 32"):
        train(cfg)


def test_malformed_data_fails_before_the_model_loads(tmp_path, synth_data, monkeypatch):
    Path(synth_data["train"]).write_text('{"version": 1, "id": "x", "video": "../escape.mp4", "fps": 2.0, '
                                         '"conversation": []}\n')
    import streamvlm.train.recipe as recipe

    monkeypatch.setattr(recipe, "build_model", lambda *a: pytest.fail("the model was built"))
    cfg = load_train_config(None, tiny_overrides(synth_data, tmp_path / "out"))
    with pytest.raises(Exception, match="train.jsonl.*video"):
        train(cfg)


def test_tokenizer_corpus_and_connector_learning_rate(tmp_path, synth_data, monkeypatch):
    """A first stage can train on other data than the one its tokenizer learns from
    (``tokenizer.corpus``), and the connector can learn at its own rate (``optim.connector_lr``)."""
    import streamvlm.train.recipe as recipe

    corpus = tmp_path / "corpus.jsonl"
    lines = Path(synth_data["train"]).read_text().splitlines()
    corpus.write_text("\n".join(line.replace("pick up", "juggle") for line in lines) + "\n")
    seen, train_tokenizer = [], recipe.train_tokenizer
    monkeypatch.setattr(recipe, "train_tokenizer",
                        lambda texts, size: seen.extend(texts) or train_tokenizer(texts, size))
    cfg = load_train_config(None, tiny_overrides(synth_data, tmp_path / "stage", **{
        "optim.max_steps": 1, "tokenizer.corpus": str(corpus), "optim.connector_lr": 0.02}))
    runner = recipe.TrainingRecipe(cfg)
    runner.setup()
    said = " ".join(seen)
    assert "You juggle the cup." in said and "pick up" not in said  # the corpus's texts, not data.train's
    connector = {id(p) for p in runner.unwrapped.connector.parameters()}
    rates = {id(p): g["initial_lr"] for g in runner.optimizer.param_groups for p in g["params"]}
    assert {rates[i] for i in connector} == {0.02} and set(rates.values()) == {0.02, 3e-3}
    with pytest.raises(ConfigError, match="tokenizer.corpus"):
        load_train_config(None, tiny_overrides(synth_data, tmp_path / "x", **{
            "tokenizer.corpus": str(tmp_path / "missing.jsonl")})).check_paths()
