"""Checkpoints: exact round trip, trainable-only saves, the released VideoLLM-online adapter layout,
and clear errors for broken folders."""

import contextlib
import io
import json
import pickle
import re

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

from streamvlm.errors import CheckpointError, ConfigError
from streamvlm.model.checkpoint import load_pretrained, load_videollm_online, save_pretrained
from streamvlm.model.config import UPSTREAM_LORA_TARGETS, LoraSettings, StreamVLMConfig, VisionConfig
from streamvlm.model.presets import tiny_llm_config, train_tokenizer
from streamvlm.model.vlm import StreamVLM

from ..helpers import tiny_model
from .test_vlm import CONVERSATION


def logits_of(model, seed=0):
    rendered = model.renderer.render(CONVERSATION)
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (rendered.num_frames, 32, 32, 3), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        return model(torch.tensor([rendered.input_ids]), pixel_values=model.frame_encoder.preprocess(frames)).logits


def randomize_lora(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)


@pytest.mark.parametrize("llm, vision, lora", [("llama", "siglip", False), ("qwen2", "clip", True)])
def test_round_trip_is_exact(tmp_path, llm, vision, lora):
    model = tiny_model(llm, vision)
    if lora:
        model = tiny_model(llm, vision)
        model.config.lora = LoraSettings(r=4, alpha=8, dropout=0.0)
        from streamvlm.model.language_model import apply_lora

        model.language_model = apply_lora(model.language_model, model.config.lora)
        randomize_lora(model)
    save_pretrained(model, tmp_path / "ckpt")
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.config.tokens_per_frame == model.config.tokens_per_frame
    assert loaded.token_ids == model.token_ids
    for (k1, v1), (k2, v2) in zip(sorted(model.state_dict().items()), sorted(loaded.state_dict().items())):
        assert k1 == k2 and torch.equal(v1, v2), k1
    assert torch.equal(logits_of(model.eval()), logits_of(loaded))


def save_base(tmp_path, vocab_size):
    """A tiny 'pretrained' Llama + tokenizer and SigLIP tower saved like hub checkpoints."""
    tok = train_tokenizer()
    cfg = tiny_llm_config("llama", vocab_size=len(tok))
    cfg.pop("model_type")
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(**cfg))
    llm.save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    tower = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                 num_attention_heads=2, image_size=32, patch_size=8))
    tower.save_pretrained(tmp_path / "vision")
    return tok


def test_trainable_only_save_reloads_on_the_base(tmp_path):
    save_base(tmp_path, None)
    config = StreamVLMConfig(llm_name_or_path=str(tmp_path / "llm"),
                             vision=VisionConfig(name_or_path=str(tmp_path / "vision")),
                             lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    model = StreamVLM.from_config(config)
    randomize_lora(model)
    save_pretrained(model, tmp_path / "ft", full=False)
    files = load_file(str(tmp_path / "ft" / "trainable.safetensors"))
    assert files and all(".lora_" in k or k.startswith("connector.") for k in files)
    loaded = load_pretrained(tmp_path / "ft")
    assert torch.equal(logits_of(model.eval()), logits_of(loaded))


class UpstreamLiveLlama(LlamaForCausalLM):
    """How upstream builds its model: a Llama causal LM that owns the connector."""

    def __init__(self, config):
        super().__init__(config)
        self.connector = nn.Sequential(nn.Linear(32, config.hidden_size), nn.GELU(),
                                       nn.Linear(config.hidden_size, config.hidden_size))


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # upstream side: peft on transformers 5
@pytest.mark.filterwarnings("ignore:Setting `save_embedding_layers`:UserWarning")  # upstream side: peft save
def test_released_adapter_layout_loads_with_identical_logits(tmp_path):
    tok = save_base(tmp_path, None)
    # the upstream side: base + connector, LoRA through peft with the released settings, saved by peft
    upstream = UpstreamLiveLlama.from_pretrained(tmp_path / "llm")
    peft_cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=UPSTREAM_LORA_TARGETS,
                          modules_to_save=["connector"], task_type="CAUSAL_LM")
    upstream = get_peft_model(upstream, peft_cfg)
    randomize_lora(upstream)
    upstream.save_pretrained(tmp_path / "adapter")
    keys = set(load_file(str(tmp_path / "adapter" / "adapter_model.safetensors")))
    assert "base_model.model.lm_head.lora_A.weight" in keys
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert {"base_model.model.connector.0.weight", "base_model.model.connector.2.bias"} <= keys

    ours = load_videollm_online(tmp_path / "adapter", str(tmp_path / "llm"), str(tmp_path / "vision"))
    assert ours.token_ids.frame_id == len(tok)  # <v> = len(tokenizer) - 1, past the embedding table
    assert ours.token_ids.interval_id == tok.convert_tokens_to_ids(",")
    assert ours.config.tokens_per_frame == 10

    upstream.eval()
    rendered = ours.renderer.render(CONVERSATION)
    ids = torch.tensor([rendered.input_ids])
    frame_tokens = torch.randn(rendered.num_frames, 10, 32)
    with torch.no_grad():
        embeds = upstream.get_input_embeddings()(ids.clamp(max=len(tok) - 1))
        connector = upstream.base_model.model.connector
        embeds[ids == ours.token_ids.frame_id] = connector(frame_tokens).flatten(0, 1)
        expected = upstream(inputs_embeds=embeds).logits
        got = ours(ids, frame_tokens=frame_tokens).logits
    assert torch.allclose(got, expected, atol=1e-6)
    with torch.no_grad(), ours.language_model.disable_adapter():  # the adapter really changed the model
        assert not torch.allclose(got, ours.language_model(inputs_embeds=embeds).logits, atol=1e-3)
    # the layout of the released model: upstream's labels and preprocessing, evaluation rules
    assert ours.config.last_frame_label == "next_token" and ours.config.vision.resize == "upstream"
    check_released_adapter_commands(tmp_path, ours)


def check_released_adapter_commands(tmp_path, ours):
    """``streamvlm encode`` and ``streamvlm eval`` load the same adapter through the one loader: the
    features have the adapter's frame tokens (10 of the tower's width), the metrics are those of
    ``ours`` under the released model's own (upstream) evaluation rules."""
    from streamvlm.cli import main
    from streamvlm.data.features import load_frames, read_info
    from streamvlm.data.synth import generate_world
    from streamvlm.evaluation.files import EvalSettings, evaluate_file

    world = generate_world(tmp_path / "world", 1, 3, duration=4.0, size=48, split="test", workers=1, progress=False)
    video = world.video_path(world.videos[0].uid)
    flags = ["--model", str(tmp_path / "adapter"), "--llm", str(tmp_path / "llm"), "--vision", str(tmp_path / "vision")]
    assert main(["encode", str(world.root), "--out", str(tmp_path / "features"), "--fps", "2", *flags]) == 0
    rel = video.relative_to(world.root).as_posix()
    feature_file = tmp_path / "features" / (rel + ".safetensors")
    n = read_info(feature_file).num_frames
    feats = load_frames(feature_file, 0, n)
    assert n >= 4 and tuple(feats.shape) == (n, 10, 32)
    first = n // 2
    record = {"version": 1, "id": "a", "video": rel, "fps": 2.0, "start": 0.0, "conversation": [
        {"role": "stream", "num_frames": first, "learn": True},
        {"role": "assistant", "content": "cool.", "learn": True}, {"role": "user", "content": "what?"},
        {"role": "assistant", "content": "so cool.", "learn": True},
        {"role": "stream", "num_frames": n - first, "learn": True},
        {"role": "assistant", "content": "cool?", "learn": True}]}
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps(record) + "\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval", str(data), "--features", str(tmp_path / "features"), "--json", "--no-progress", *flags])
    assert code == 0
    result = json.loads(out.getvalue())
    assert (result["rules"], result["threshold"]) == ("upstream", 0.0)  # the released model's own rules
    expected = evaluate_file(ours, data, tmp_path / "features", EvalSettings(), progress=False)
    for key in ("lm_ppl", "time_diff", "fluency", "lm_correctness"):
        assert result[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key


def test_broken_checkpoints_are_named(tmp_path):
    model = tiny_model()
    save_pretrained(model, tmp_path / "ok")
    with pytest.raises(CheckpointError, match="no such directory"):
        load_pretrained(tmp_path / "nope")
    # missing weights
    import shutil

    shutil.copytree(tmp_path / "ok", tmp_path / "missing")
    (tmp_path / "missing" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_pretrained(tmp_path / "missing")
    # truncated weights
    shutil.copytree(tmp_path / "ok", tmp_path / "truncated")
    w = tmp_path / "truncated" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_pretrained(tmp_path / "truncated")
    # wrong shapes: a checkpoint of a wider connector
    shutil.copytree(tmp_path / "ok", tmp_path / "shapes")
    w = tmp_path / "shapes" / "model.safetensors"
    tensors = load_file(str(w))
    tensors["connector.0.weight"] = torch.zeros(64, 48)
    save_file(tensors, str(w))
    with pytest.raises(CheckpointError, match=re.escape("'connector.0.weight' has shape [64, 48]")):
        load_pretrained(tmp_path / "shapes")
    # unknown config key
    shutil.copytree(tmp_path / "ok", tmp_path / "config")
    cfg = json.loads((tmp_path / "config" / "config.json").read_text())
    cfg["frame_tokne"] = "<v>"
    (tmp_path / "config" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"config\.json: frame_tokne: unknown key"):
        load_pretrained(tmp_path / "config")


def test_pickled_adapter_that_runs_code_is_refused(tmp_path):
    save_base(tmp_path, None)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    with open(tmp_path / "adapter" / "adapter_model.bin", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(CheckpointError, match=r"adapter_model\.bin: refused: raw pickled file .*use safetensors"):
        load_videollm_online(tmp_path / "adapter", str(tmp_path / "llm"), str(tmp_path / "vision"))
    # the same object inside a torch zip archive: torch's weights-only unpickler refuses it
    torch.save({"x": Evil()}, tmp_path / "adapter" / "adapter_model.bin")
    with pytest.raises(CheckpointError, match=r"adapter_model\.bin: refused: pickled file with code; use safetensors"):
        load_videollm_online(tmp_path / "adapter", str(tmp_path / "llm"), str(tmp_path / "vision"))


def test_adapter_with_wrong_shapes(tmp_path):
    save_base(tmp_path, None)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    save_file({"base_model.model.connector.0.weight": torch.zeros(64, 1024)},
              str(tmp_path / "adapter" / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError, match=re.escape("'base_model.model.connector.0.weight' has shape [64, 1024]")):
        load_videollm_online(tmp_path / "adapter", str(tmp_path / "llm"), str(tmp_path / "vision"))
