"""Hostile or broken model folders: every failure is one CheckpointError naming the file and the
field at fault, raised before anything large is allocated (no traceback, no huge allocation)."""

import io
import json
import pickle
import shutil
import struct
import warnings

import pytest
import torch
from safetensors.torch import save_file

import streamvlm.model.hf_checks as hf_checks
from streamvlm.errors import CheckpointError, UserError
from streamvlm.model.checkpoint import load_pretrained, load_videollm_online, save_pretrained
from streamvlm.model.config import LoraSettings
from streamvlm.model.frame_encoder import load_frame_encoder, save_frame_encoder
from streamvlm.model.language_model import apply_lora

from ..helpers import tiny_model


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One valid tiny checkpoint (full weights, frame encoder) and a frame-encoder folder."""
    root = tmp_path_factory.mktemp("hostile")
    model = tiny_model()
    save_pretrained(model, root / "ok")
    save_frame_encoder(model.frame_encoder, root / "tower")
    lora = tiny_model("qwen2", "clip")
    lora.config.lora = LoraSettings(r=4, alpha=8, dropout=0.0)
    lora.language_model = apply_lora(lora.language_model, lora.config.lora)
    save_pretrained(lora, root / "lora")
    return root


def broken_copy(saved, tmp_path, name="ckpt"):
    shutil.copytree(saved / name if name == "tower" else saved / "ok", tmp_path / name)
    return tmp_path / name


def edit_json(file, edit):
    data = json.loads(file.read_text())
    edit(data)
    file.write_text(json.dumps(data))


def expect(fragments, call, *args):
    with pytest.raises(CheckpointError) as info:
        call(*args)
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------------------- config.json: nested HF configs
LLM_CASES = [
    ({"num_hidden_layers": "two"}, (), "llm_config.num_hidden_layers: must be a positive integer, got 'two'"),
    ({"hidden_size": 1.5}, (), "llm_config.hidden_size: must be a positive integer, got 1.5"),
    ({"hidden_size": True}, (), "llm_config.hidden_size: must be a positive integer"),
    ({"num_attention_heads": 0}, (), "llm_config.num_attention_heads: must be a positive integer, got 0"),
    ({"hidden_size": 0}, (), "llm_config.hidden_size: must be a positive integer, got 0"),
    ({"vocab_size": -5}, (), "llm_config.vocab_size: must be a positive integer, got -5"),
    ({"num_key_value_heads": 3}, (), "llm_config.num_key_value_heads: 3 does not divide num_attention_heads 4"),
    ({"hidden_size": 66}, ("head_dim",), "llm_config.hidden_size: 66 is not divisible by num_attention_heads 4"),
    ({"model_type": "nope"}, (), "llm_config.model_type: unknown model type 'nope'"),
    ({"model_type": 3}, (), "llm_config.model_type: unknown model type 3"),
    ({"model_type": "siglip_vision_model"}, (), "llm_config.model_type: 'siglip_vision_model' is not a causal"),
    ({"hidden_act": "nope"}, (), "llm_config.hidden_act: unknown activation 'nope'"),
    ({"dtype": "int8"}, (), "llm_config.dtype: must be null or one of"),
    ({"pad_token_id": 10**6}, (), "llm_config.pad_token_id: must be null or a token id below vocab_size 512"),
    ({"rms_norm_eps": "x"}, (), "llm_config: not a valid llama config (Validation error for field 'rms_norm_eps'"),
]


@pytest.mark.parametrize("update, drop, fragment", LLM_CASES)
def test_bad_llm_config_is_named(saved, tmp_path, update, drop, fragment):
    folder = broken_copy(saved, tmp_path)

    def edit(cfg):
        cfg["llm_config"].update(update)
        for key in drop:
            cfg["llm_config"].pop(key)

    edit_json(folder / "config.json", edit)
    expect([str(folder / "config.json"), fragment], load_pretrained, folder)


TOWER_CASES = [
    ({"hidden_size": "x"}, "vision.tower_config.hidden_size: must be a positive integer, got 'x'"),
    ({"num_hidden_layers": -1}, "vision.tower_config.num_hidden_layers: must be a positive integer, got -1"),
    ({"patch_size": 0}, "vision.tower_config.patch_size: must be a positive integer, got 0"),
    ({"num_attention_heads": 3}, "vision.tower_config.hidden_size: 32 is not divisible by num_attention_heads 3"),
    ({"model_type": "resnet"}, "vision.tower_config.model_type: unsupported image tower type 'resnet'"),
    ({"num_channels": 4}, "vision.tower_config.num_channels: frames are RGB, so the tower needs 3 channels, got 4"),
    ({"hidden_act": 5}, "vision.tower_config: not a valid siglip_vision_model config"),
]


@pytest.mark.parametrize("update, fragment", TOWER_CASES)
def test_bad_tower_config_is_named(saved, tmp_path, update, fragment):
    folder = broken_copy(saved, tmp_path)
    edit_json(folder / "config.json", lambda cfg: cfg["vision"]["tower_config"].update(update))
    expect([str(folder / "config.json"), fragment], load_pretrained, folder)


@pytest.mark.parametrize("where, update, drop", [
    ("llm_config", {"hidden_size": 10**7}, ("head_dim",)),
    ("llm_config", {"vocab_size": 10**10}, ()),
    ("llm_config", {"num_hidden_layers": 10**9}, ()),
    ("vision.tower_config", {"image_size": 10**6, "patch_size": 1}, ()),
])
def test_absurd_sizes_are_refused_before_allocating(saved, tmp_path, monkeypatch, where, update, drop):
    """Counted on the meta device (nothing allocated), and refused when the weights would not fit."""
    folder = broken_copy(saved, tmp_path)

    def edit(cfg):
        sub = cfg["llm_config"] if where == "llm_config" else cfg["vision"]["tower_config"]
        sub.update(update)
        for key in drop:
            sub.pop(key)

    edit_json(folder / "config.json", edit)
    allocated, real_empty = [], torch.empty

    def empty(*args, **kwargs):  # modules create their weights with torch.empty: count real ones
        tensor = real_empty(*args, **kwargs)
        if tensor.device.type != "meta":
            allocated.append(tensor.numel())
        return tensor

    monkeypatch.setattr(torch, "empty", empty)
    message = expect([str(folder / "config.json"), f"{where}: the model would have", "of memory available"],
                     load_pretrained, folder)
    assert " TB" in message or " PB" in message, message  # the estimated size is named
    assert sum(allocated) < 10**6, allocated


def test_model_larger_than_available_memory_is_refused(saved, tmp_path, monkeypatch):
    """The rule is the memory available now: a valid tiny model is refused on a "machine" with 10 KB."""
    folder = broken_copy(saved, tmp_path)
    monkeypatch.setattr(hf_checks, "available_memory", lambda device=None: (10**4, "cpu"))
    expect([str(folder / "config.json"), "llm_config: the model would have", "more than the 10.0 KB of memory "
            "available (cpu)"], load_pretrained, folder)


def test_memory_is_that_of_the_device_the_model_goes_to():
    with torch.device("meta"):
        assert hf_checks.available_memory() is None  # building on meta allocates nothing
    free, where = hf_checks.available_memory()
    assert where == "cpu" and free > 0
    if torch.cuda.is_available():
        with torch.device("cuda"):
            free, where = hf_checks.available_memory()
        assert where.startswith("cuda") and 0 < free <= torch.cuda.get_device_properties(0).total_memory


# ---------------------------------------------------------------------------- checkpoint.json
@pytest.mark.parametrize("content, fragment", [
    ('{"format": "streamvlm", "version": 1, "weights": 3, "frame_encoder": true}',
     "field 'weights' must be \"full\" or \"trainable\", got 3"),
    ('{"format": "streamvlm", "version": 1, "weights": "full", "frame_encoder": "yes"}',
     "field 'frame_encoder' must be true or false, got 'yes'"),
    ('{"format": "streamvlm", "version": 1, "frame_encoder": true}', "field 'weights' must be"),
    ('{"format": "streamvlm", "version": "1", "weights": "full"}', "unsupported checkpoint format"),
    ('{"format": "streamvlm", "version": true, "weights": "full"}', "unsupported checkpoint format"),
    ('["streamvlm", 1]', "expected a JSON object, got an array"),
    ("", "empty file"),
    ("{nope", "invalid JSON"),
    (b"\xff\xfe{}", "not valid UTF-8"),
])
def test_bad_checkpoint_json_is_named(saved, tmp_path, content, fragment):
    folder = broken_copy(saved, tmp_path)
    file = folder / "checkpoint.json"
    file.write_bytes(content if isinstance(content, bytes) else content.encode())
    expect([str(file), fragment], load_pretrained, folder)


# ---------------------------------------------------------------------------- tokenizer files
@pytest.mark.parametrize("content, fragment", [
    (b"", "empty file"),
    (b"hello", "not a tokenizer the tokenizers library can read"),
    (b"[1, 2]", "not a tokenizer the tokenizers library can read"),
    (b"{}", "not a tokenizer the tokenizers library can read"),
    (b'{"model": {"type": "Nope"}}', "not a tokenizer the tokenizers library can read"),
    (b"\xff\xfegarbage", "not a tokenizer the tokenizers library can read"),
])
def test_bad_tokenizer_json_is_named(saved, tmp_path, content, fragment):
    folder = broken_copy(saved, tmp_path)
    (folder / "tokenizer.json").write_bytes(content)
    expect([str(folder / "tokenizer.json"), fragment], load_pretrained, folder)


@pytest.mark.parametrize("content, fragment", [
    (b"{garbled", "invalid JSON"),
    (b"", "empty file"),
    (b"[]", "expected a JSON object, got an array"),
    (b'{"eos_token": 5}', "field 'eos_token' must be a token string, got 5"),
    (b'{"eos_token": "</s>", "tokenizer_class": 3}', "field 'tokenizer_class' must be a string, got 3"),
    (b'{"eos_token": "</s>", "extra_special_tokens": 3}', "field 'extra_special_tokens' must be a list"),
    (b'{"pad_token": "<pad>"}', "the tokenizer has no 'eos_token'"),
])
def test_bad_tokenizer_config_is_named(saved, tmp_path, content, fragment):
    folder = broken_copy(saved, tmp_path)
    (folder / "tokenizer_config.json").write_bytes(content)
    expect([str(folder / "tokenizer_config.json"), fragment], load_pretrained, folder)


def test_missing_tokenizer_config_is_named(saved, tmp_path):
    folder = broken_copy(saved, tmp_path)
    (folder / "tokenizer_config.json").unlink()
    expect([str(folder / "tokenizer_config.json"), "no 'eos_token'"], load_pretrained, folder)
    shutil.copy(saved / "ok" / "tokenizer_config.json", folder)
    (folder / "tokenizer.json").unlink()
    expect([str(folder / "tokenizer.json"), "no such file"], load_pretrained, folder)


# ---------------------------------------------------------------------------- weights files
def test_truncated_or_absurd_safetensors(saved, tmp_path):
    folder = broken_copy(saved, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    expect([str(weights), "not a readable safetensors file"], load_pretrained, folder)
    # a header that claims a tensor of 10^24 elements over 16 bytes of data
    header = json.dumps({"connector.0.weight": {"dtype": "F32", "shape": [10**12, 10**12],
                                                "data_offsets": [0, 16]}}).encode()
    weights.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    expect([str(weights), "not a readable safetensors file"], load_pretrained, folder)
    # a header length of 10^15 bytes
    weights.write_bytes(struct.pack("<Q", 10**15) + b"{}")
    expect([str(weights), "not a readable safetensors file"], load_pretrained, folder)
    # an empty tensor of absurd width: no data, but not the model's shape
    header = json.dumps({"connector.0.weight": {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]}}).encode()
    weights.write_bytes(struct.pack("<Q", len(header)) + header)
    expect([str(weights), "'connector.0.weight' has shape [0, 4611686018427387904]"], load_pretrained, folder)


def test_truncated_trainable_safetensors(saved, tmp_path):
    folder = broken_copy(saved, tmp_path)
    edit_json(folder / "checkpoint.json", lambda meta: meta.update(weights="trainable"))
    (folder / "model.safetensors").rename(folder / "trainable.safetensors")
    weights = folder / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    expect([str(weights), "not a readable safetensors file (truncated or corrupt"], load_pretrained, folder)


# ---------------------------------------------------------------------------- the released adapter layout
def adapter_folder(tmp_path, config, weights=None):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is None:
        save_file({"x": torch.zeros(1)}, str(folder / "adapter_model.safetensors"))
    else:
        (folder / "adapter_model.bin").write_bytes(weights)
    return folder


@pytest.mark.parametrize("config, fragment", [
    ("[1, 2]", "expected a JSON object, got an array"),
    ("{", "invalid JSON"),
    ({"r": "4"}, "field 'r' must be a positive integer, got '4'"),
    ({"r": 0}, "field 'r' must be a positive integer, got 0"),
    ({"r": -4}, "field 'r' must be a positive integer, got -4"),
    ({"r": 4.0}, "field 'r' must be a positive integer, got 4.0"),
    ({"r": 4, "lora_alpha": "8"}, "field 'lora_alpha' must be a positive number, got '8'"),
    ({"r": 4, "lora_alpha": 0}, "field 'lora_alpha' must be a positive number, got 0"),
    ({"r": 4, "lora_alpha": 8.5}, "field 'lora_alpha' must be a whole number, got 8.5"),
    ({"r": 4, "lora_dropout": 1.0}, "field 'lora_dropout' must be a number in [0, 1), got 1.0"),
    ({"r": 4, "lora_dropout": -0.1}, "field 'lora_dropout' must be a number in [0, 1), got -0.1"),
    ({"r": 4, "lora_dropout": "0.1"}, "field 'lora_dropout' must be a number in [0, 1), got '0.1'"),
    ({"r": 4, "target_modules": 3}, "field 'target_modules' must be a non-empty list"),
    ({"r": 4, "target_modules": []}, "field 'target_modules' must be a non-empty list"),
    ({"r": 4, "target_modules": ["q_proj", 3]}, "field 'target_modules' must be a non-empty list"),
    ({"r": 4, "target_modules": "(q_proj"}, "field 'target_modules' is not a valid regex"),
    ({"r": 4, "use_rslora": True}, "field 'use_rslora' is set; only plain LoRA adapters are supported"),
    ({"r": 4, "alpha_pattern": {"q_proj": 3}}, "field 'alpha_pattern' is set"),
])
def test_bad_adapter_config_is_named(tmp_path, config, fragment):
    folder = adapter_folder(tmp_path, config)
    expect([str(folder / "adapter_config.json"), fragment], load_videollm_online, folder, "llm", "vision")


def torch_saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("weights, fragment", [
    (torch_saved({"x": Evil()}), "refused: pickled file with code; use safetensors (Unsupported global: GLOBAL print"),
    (pickle.dumps({"x": Evil()}), "refused: raw pickled file"),
    (pickle.dumps({"x": Evil()}, protocol=2), "refused: raw pickled file"),
    (torch_saved({"x": torch.zeros(100)})[:300], "weights file (truncated or corrupt"),
    (torch_saved({"x": torch.zeros(100)})[:-30], "weights file (truncated or corrupt"),
    (b"garbage" * 10, "not a PyTorch weights file (truncated or corrupt)"),
    (b"", "not a PyTorch weights file"),
    (torch_saved([torch.zeros(1)]), "expected a mapping of tensor names to tensors, got list"),
])
def test_bad_adapter_bin_is_refused(tmp_path, capfd, weights, fragment):
    folder = adapter_folder(tmp_path, {"r": 4, "lora_alpha": 8}, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expect([str(folder / "adapter_model.bin"), fragment], load_videollm_online, folder, "llm", "vision")
    assert "code ran" not in capfd.readouterr().out


# ---------------------------------------------------------------------------- frame-encoder folders
@pytest.mark.parametrize("file, update, fragment", [
    ("config.json", {"hidden_size": 0}, "config.json: hidden_size: must be a positive integer, got 0"),
    ("config.json", {"num_attention_heads": 3},
     "config.json: hidden_size: 32 is not divisible by num_attention_heads 3"),
    ("config.json", {"num_channels": 1}, "config.json: num_channels: frames are RGB"),
    ("config.json", {"model_type": "bert"}, "config.json: model_type: unsupported image tower type 'bert'"),
    ("config.json", {"hidden_size": "x"}, "config.json: not a valid image tower config"),
    ("config.json", {"image_size": 10**6, "patch_size": 1}, "config.json: the model would have"),
    ("frame_encoder.json", {"pool_size": "3"}, "field 'pool_size' must be an integer in [0, 64], got '3'"),
    ("frame_encoder.json", {"use_pooled": 1}, "field 'use_pooled' must be true or false, got 1"),
    ("frame_encoder.json", {"image_mean": [0.5]}, "field 'image_mean' must be null or a list of 3 numbers"),
    ("frame_encoder.json", {"image_std": [0.5, 0, 0.5]}, "field 'image_std' must be a list of 3 numbers > 0"),
    ("frame_encoder.json", {"image_size": 30}, "vision.image_size: 30 must be a positive multiple of the patch size 8"),
    ("frame_encoder.json", {"pool_sizes": 3}, "unknown field 'pool_sizes'"),
])
def test_bad_frame_encoder_folder_is_named(saved, tmp_path, file, update, fragment):
    folder = broken_copy(saved, tmp_path, "tower")
    edit_json(folder / file, lambda cfg: cfg.update(update))
    expect([str(folder / file.split(":")[0]), fragment], load_frame_encoder, folder)


def test_garbage_frame_encoder_files_are_named(saved, tmp_path):
    folder = broken_copy(saved, tmp_path, "tower")
    (folder / "config.json").write_text("not json")
    expect([str(folder / "config.json"), "invalid JSON"], load_frame_encoder, folder)
    shutil.copy(saved / "tower" / "config.json", folder / "config.json")
    (folder / "frame_encoder.json").write_text("[]")
    expect([str(folder / "frame_encoder.json"), "expected a JSON object"], load_frame_encoder, folder)
    (folder / "frame_encoder.json").unlink()
    expect([str(folder / "frame_encoder.json"), "no such file"], load_frame_encoder, folder)
    shutil.copy(saved / "tower" / "frame_encoder.json", folder / "frame_encoder.json")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    expect([str(folder), "cannot load the image tower weights"], load_frame_encoder, folder)


# ---------------------------------------------------------------------------- a normal run is quiet
def test_loading_a_valid_checkpoint_emits_no_warning(saved, capfd):
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_pretrained(saved / "ok")
        lora = load_pretrained(saved / "lora")
        encoder = load_frame_encoder(saved / "tower")
    assert [str(w.message) for w in caught] == []
    err = capfd.readouterr().err  # progress bars of HF from_pretrained (the tower) are fine, warnings are not
    assert "warn" not in err.lower() and "[transformers]" not in err, err
    assert model.frame_encoder is not None and encoder.tokens_per_frame == 10
    assert any(".lora_A." in key for key in lora.state_dict())


# ---------------------------------------------------------------------------- base LLM / tower folders
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny 'pretrained' Llama + tokenizer and a SigLIP tower, saved like hub checkpoints."""
    from .test_checkpoint import save_base

    root = tmp_path_factory.mktemp("base")
    save_base(root, None)
    return root


def released_layout(tmp_path):
    return adapter_folder(tmp_path, {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0})


@pytest.mark.parametrize("name, breaks, fragments", [
    ("llm", lambda d: edit_json(d / "config.json", lambda c: c.update(hidden_size=0)),
     ["llm/config.json: hidden_size: must be a positive integer, got 0"]),
    ("llm", lambda d: edit_json(d / "config.json", lambda c: c.update(vocab_size=10**10)),
     ["llm/config.json: the model would have", "of memory available"]),
    ("llm", lambda d: (d / "config.json").write_text("[]"), ["llm/config.json: expected a JSON object"]),
    ("llm", lambda d: (d / "model.safetensors").write_bytes(b"\0" * 64),
     ["llm: cannot load the language model weights"]),
    ("llm", lambda d: (d / "tokenizer.json").write_text("{}"),
     ["llm/tokenizer.json: not a tokenizer the tokenizers library can read"]),
    ("vision", lambda d: edit_json(d / "config.json", lambda c: c.update(num_attention_heads=0)),
     ["vision/config.json: num_attention_heads: must be a positive integer, got 0"]),
    ("vision", lambda d: (d / "model.safetensors").write_bytes(b"\0" * 64),
     ["vision: cannot load the image tower weights"]),
])
def test_broken_base_folders_are_named(base, tmp_path, name, breaks, fragments):
    for part in ("llm", "vision"):
        shutil.copytree(base / part, tmp_path / part)
    breaks(tmp_path / name)
    adapter = released_layout(tmp_path)
    expect(fragments, load_videollm_online, adapter, str(tmp_path / "llm"), str(tmp_path / "vision"))
