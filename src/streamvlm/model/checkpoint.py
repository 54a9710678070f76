"""Saving and loading checkpoints (safetensors only), and the released VideoLLM-online adapter.

Our layout (``save_pretrained``)::

    config.json            StreamVLMConfig
    checkpoint.json        {"format": "streamvlm", "version": 1, "weights": "full"|"trainable",
                            "frame_encoder": true|false}
    model.safetensors      every weight (weights = "full"; the config then embeds the LM and
                           tower configs, so the folder is self-contained), or
    trainable.safetensors  LoRA + connector only (weights = "trainable"; the base LM and tower are
                           loaded from the paths in the config)
    tokenizer files

The released ``chenjoya/videollm-online-8b-v1plus`` is a PEFT adapter (``adapter_config.json`` +
``adapter_model.safetensors``) whose keys are ``base_model.model.<llama module>.lora_{A,B}.weight``
and ``base_model.model.connector.{0,2}.{weight,bias}``; :func:`load_videollm_online` maps it onto
a :class:`~streamvlm.model.vlm.StreamVLM` built from the base LLM and vision tower paths.

Loading treats every file as untrusted: a broken or hostile file raises a one-line
:class:`~streamvlm.errors.CheckpointError` naming the file and the field at fault, before anything
large is allocated (the checks live in :mod:`streamvlm.model.hf_checks`).
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from ..errors import CheckpointError, ConfigError
from ..settings import load_json, save_json
from .config import LoraSettings, StreamVLMConfig, VisionConfig
from .hf_checks import ANSI_ESCAPES, is_int, one_line, read_json_object, short_repr
from .vlm import StreamVLM

FORMAT = "streamvlm"
VERSION = 1

def save_pretrained(model: StreamVLM, path: str | Path, *, full: bool = True) -> None:
    """Write ``model`` to folder ``path``: config, tokenizer and weights (see module doc)."""
    from .language_model import base_model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config: StreamVLMConfig = copy.deepcopy(model.config)
    if full:
        lm_config = base_model(model.language_model).config.to_dict()
        config.llm_config, config.llm_name_or_path = lm_config, None
        if model.frame_encoder is not None:
            tower = model.frame_encoder.tower.config.to_dict()
            tower.pop("_name_or_path", None)  # where the tower was loaded from: not part of the model
            config.vision.tower_config, config.vision.name_or_path = tower, None
            config.vision.image_size = model.frame_encoder.image_size
        _save(save_model, model, path / "model.safetensors")
    else:
        if config.llm_name_or_path is None:
            raise ConfigError("save_pretrained(full=False) needs a pretrained base LM (llm_name_or_path)")
        trainable = {k: v.detach().contiguous().cpu() for k, v in model.named_parameters() if v.requires_grad}
        _save(save_file, trainable, path / "trainable.safetensors")
    save_json(config, path / "config.json")
    meta = {"format": FORMAT, "version": VERSION, "weights": "full" if full else "trainable",
            "frame_encoder": model.frame_encoder is not None}
    (path / "checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")
    model.tokenizer.save_pretrained(str(path))


def _save(save: Any, weights: Any, file: Path) -> None:
    """``save(weights, file)`` (safetensors), its I/O failures (a full disk) as the OSError naming ``file``."""
    from ..outputs import os_error

    try:
        save(weights, str(file))
    except SafetensorError as exc:
        raise os_error(exc, file) or exc from None


def _check_shapes(file: Path, model: torch.nn.Module, rename=lambda k: k) -> list[str]:
    """Compare tensor shapes in ``file`` with ``model``; return the file's keys (after ``rename``)."""
    state = model.state_dict()
    try:
        with safe_open(str(file), framework="pt") as f:
            keys = list(f.keys())
            for key in keys:
                target = rename(key)
                if target in state:
                    shape = tuple(f.get_slice(key).get_shape())
                    if shape != tuple(state[target].shape):
                        raise CheckpointError(
                            f"{file}: tensor '{key}' has shape {list(shape)}, the model expects "
                            f"{list(state[target].shape)} (checkpoint for another model size?)"
                        )
    except SafetensorError as exc:
        raise CheckpointError(f"{file}: not a readable safetensors file "
                              f"(truncated or corrupt: {one_line(exc)})") from None
    return [rename(k) for k in keys]


def check_finite(file: Path, tensors: Any) -> None:
    """Refuse weights holding NaN or infinities (a diverged run saved them): such a model loads and
    then answers every frame with nothing. ``tensors``: (name, tensor) pairs read from ``file``."""
    for name, tensor in tensors:
        if not tensor.is_floating_point():
            continue
        # One reduction per tensor, no [N] bool copy: a NaN or an infinity makes the sum non-finite;
        # a finite sum too large for float32 is told apart by the exact check.
        total = tensor.sum(dtype=torch.float64 if tensor.dtype == torch.float64 else torch.float32)
        if not bool(torch.isfinite(total)) and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{file}: tensor '{name}' holds NaN or infinite values (saved by a run that "
                                  "diverged?); refused")


def read_checkpoint_meta(meta_file: Path) -> dict[str, Any]:
    """``checkpoint.json``, checked: format, version, ``weights`` and ``frame_encoder``."""
    meta = read_json_object(meta_file)
    fmt, version = meta.get("format"), meta.get("version")
    if fmt != FORMAT or not is_int(version) or version != VERSION:
        raise CheckpointError(f"{meta_file}: unsupported checkpoint format {short_repr(fmt)} v{short_repr(version)} "
                              f"(expected 'format': {FORMAT!r}, 'version': {VERSION})")
    weights = meta.get("weights")
    if not isinstance(weights, str) or weights not in ("full", "trainable"):
        raise CheckpointError(f"{meta_file}: field 'weights' must be \"full\" or \"trainable\", "
                              f"got {short_repr(weights)}")
    frame_encoder = meta.get("frame_encoder", False)
    if not isinstance(frame_encoder, bool):
        raise CheckpointError(f"{meta_file}: field 'frame_encoder' must be true or false, "
                              f"got {short_repr(frame_encoder)}")
    return {**meta, "frame_encoder": frame_encoder}


def load_pretrained(path: str | Path, *, with_vision: bool = True, dtype: torch.dtype | None = None,
                    device: str | torch.device | None = None):
    """Load a folder written by :func:`save_pretrained`. Errors name the missing file or bad key."""
    from .language_model import load_tokenizer
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint folder (no such directory)")
    meta_file = path / "checkpoint.json"
    if not meta_file.is_file():
        if (path / "adapter_config.json").is_file():
            raise CheckpointError(
                f"{path}: this is a PEFT adapter (VideoLLM-online layout); load it with "
                "load_videollm_online(adapter, llm_path, vision_path)"
            )
        raise CheckpointError(f"{path}: missing checkpoint.json (not a streamvlm checkpoint)")
    meta = read_checkpoint_meta(meta_file)
    full = meta["weights"] == "full"
    config_file = path / "config.json"
    weights = path / ("model.safetensors" if full else "trainable.safetensors")
    missing_files = [p.name for p in (config_file, weights) if not p.is_file()]
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        missing_files.append("tokenizer.json")
    if missing_files:
        raise CheckpointError(f"{path}: missing {', '.join(missing_files)}")
    config = load_json(StreamVLMConfig, config_file)
    tokenizer = load_tokenizer(path)
    if tokenizer.eos_token_id is None:
        raise CheckpointError(f"{path / 'tokenizer_config.json'}: the tokenizer has no 'eos_token'")
    use_vision = with_vision and meta["frame_encoder"]
    try:  # built in its dtype on its device; a full checkpoint overwrites every weight, so its init is cheap
        model = StreamVLM.from_config(config, tokenizer, with_vision=use_vision, dtype=dtype, device=device,
                                      init="cheap" if full else "full")
    except ConfigError as exc:  # the nested llm_config / vision.tower_config, or a field that does not fit
        raise CheckpointError(f"{config_file}: {exc}") from None
    keys = _check_shapes(weights, model)
    if full:
        missing, unexpected = load_model(model, str(weights), strict=False)
        if not use_vision:
            unexpected = [k for k in unexpected if not k.startswith("frame_encoder.")]
        if missing or unexpected:
            what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise CheckpointError(f"{weights}: weights do not match the model: {what}")
        state = model.state_dict()
        check_finite(weights, ((k, state[k]) for k in keys if k in state))
    else:
        state = model.state_dict()
        unknown = [k for k in keys if k not in state]
        if unknown:
            raise CheckpointError(f"{weights}: unexpected tensor '{unknown[0]}'")
        tensors = load_file(str(weights))
        check_finite(weights, tensors.items())
        model.load_state_dict(tensors, strict=False)
    if dtype is not None:
        model.to(dtype)  # what peft created in float32 (LoRA weights)
    return model.eval()


# ---------------------------------------------------------------------------- upstream adapter
def _adapter_lora_settings(cfg_file: Path, adapter_cfg: dict[str, Any]) -> LoraSettings:
    """LoRA settings from a PEFT ``adapter_config.json``, every field checked."""
    defaults = LoraSettings()

    def bad(field: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{cfg_file}: field '{field}' must be {expected}, got {short_repr(adapter_cfg[field])}")

    r = adapter_cfg.get("r", defaults.r)
    if not is_int(r) or r <= 0:
        raise bad("r", "a positive integer")
    alpha = adapter_cfg.get("lora_alpha", defaults.alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise bad("lora_alpha", "a positive number")
    if alpha != int(alpha):
        raise bad("lora_alpha", "a whole number")
    dropout = adapter_cfg.get("lora_dropout", defaults.dropout)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise bad("lora_dropout", "a number in [0, 1)")
    target = adapter_cfg.get("target_modules")
    if target is None:
        target = defaults.target_modules
    elif isinstance(target, list):
        if not target or not all(isinstance(t, str) and t for t in target):
            raise bad("target_modules", "a non-empty list of module names or a regex string")
        target = "|".join(f"(.*\\.)?{re.escape(t)}" for t in target)
    elif isinstance(target, str):
        try:
            re.compile(target)
        except re.error as exc:
            raise CheckpointError(f"{cfg_file}: field 'target_modules' is not a valid regex ({exc})") from None
    else:
        raise bad("target_modules", "a non-empty list of module names or a regex string")
    for field in ("use_rslora", "use_dora"):  # would change the adapter's maths: refuse, not approximate
        if adapter_cfg.get(field):
            raise CheckpointError(f"{cfg_file}: field '{field}' is set; only plain LoRA adapters are supported")
    for field in ("rank_pattern", "alpha_pattern"):
        if adapter_cfg.get(field):
            raise CheckpointError(f"{cfg_file}: field '{field}' is set; "
                                  "only one rank and alpha for all modules are supported")
    return LoraSettings(r=r, alpha=int(alpha), dropout=float(dropout), target_modules=target)


_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.*?)(?:\. Please use|\n\n|$)", re.S)


def load_torch_weights(file: Path) -> dict[str, torch.Tensor]:
    """A ``torch.save``d dict of tensors, loaded with ``weights_only=True`` (no code runs).

    Only the zip archive format is opened, memory-mapped (a raw pickle is refused unread); a
    pickle that needs code, and a truncated or garbage file, raise a one-line CheckpointError.
    """
    try:
        is_zip = zipfile.is_zipfile(file)
        with open(file, "rb") as f:
            head = f.read(2)
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read ({one_line(exc)})") from None
    if not is_zip:
        if head[:1] == b"\x80":  # pickle PROTO opcode: a raw pickle, which can run code on load
            raise CheckpointError(f"{file}: refused: raw pickled file (a pickle can run code on load, so it is "
                                  "not opened); use safetensors")
        raise CheckpointError(f"{file}: not a PyTorch weights file (truncated or corrupt); use safetensors")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notes from torch's safe unpickler
            tensors = torch.load(str(file), map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        match = _UNPICKLER_DETAIL.search(ANSI_ESCAPES.sub("", str(exc)))
        detail = one_line(match.group(1), 120) if match else "not plain tensors"
        raise CheckpointError(f"{file}: refused: pickled file with code; use safetensors ({detail})") from None
    except Exception as exc:  # noqa: BLE001 - zip/record errors: RuntimeError, EOFError, ValueError, ...
        raise CheckpointError(f"{file}: not a readable PyTorch weights file "
                              f"(truncated or corrupt: {one_line(exc, 160)})") from None
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in tensors.items()):
        raise CheckpointError(f"{file}: expected a mapping of tensor names to tensors, got {type(tensors).__name__}")
    return tensors


def load_videollm_online(
    adapter_path: str | Path,
    llm_name_or_path: str,
    vision_name_or_path: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    frame_fps: float = 2.0,
):
    """Load the released VideoLLM-online adapter (MISSION 1.6 layout) onto its base LLM and tower.

    The model is live1+ (pooled + 3x3 tokens, SigLIP mean = std = 0.5, upstream's bicubic resize
    and centred padding), interval token ``,``, upstream text layout; LoRA settings are read from
    ``adapter_config.json``.
    """
    from .language_model import load_tokenizer
    adapter_path = Path(adapter_path)
    cfg_file = adapter_path / "adapter_config.json"
    weights = adapter_path / "adapter_model.safetensors"
    legacy = adapter_path / "adapter_model.bin"
    if not cfg_file.is_file():
        raise CheckpointError(f"{adapter_path}: missing adapter_config.json (not a PEFT adapter folder)")
    if not weights.is_file() and not legacy.is_file():
        raise CheckpointError(f"{adapter_path}: missing adapter_model.safetensors")
    lora = _adapter_lora_settings(cfg_file, read_json_object(cfg_file))
    tensors = None if weights.is_file() else load_torch_weights(legacy)  # refuse a bad file before any model
    config = StreamVLMConfig(
        llm_name_or_path=llm_name_or_path,
        vision=VisionConfig(name_or_path=vision_name_or_path, use_pooled=True, pool_size=3, resize="upstream"),
        lora=lora,
        interval_token=",",
        last_frame_label="next_token",  # trained with upstream's labels (docs/upstream.md)
        reply_cap=99,  # upstream stops a reply at 100 tokens, eos included
        frame_fps=frame_fps,
    )
    tokenizer = load_tokenizer(llm_name_or_path)
    try:
        model = StreamVLM.from_config(config, tokenizer, dtype=dtype, device=device)
    except ConfigError as exc:  # LoRA settings that do not fit the base model, tokenizer without ','
        raise CheckpointError(f"{adapter_path}: {exc}") from None

    def rename(key: str) -> str:
        if not key.startswith("base_model.model."):
            return key
        rest = key[len("base_model.model."):]
        if rest.startswith("connector."):
            return rest
        for part in (".lora_A.", ".lora_B."):
            if part in rest:
                rest = rest.replace(part, part + "default.")
        return "language_model.base_model.model." + rest

    if tensors is None:
        keys = _check_shapes(weights, model, rename)
        tensors = load_file(str(weights))
    else:
        keys = [rename(k) for k in tensors]
    state = model.state_dict()
    unknown = [k for k in keys if k not in state]
    if unknown:
        raise CheckpointError(f"{adapter_path}: adapter tensor for '{unknown[0]}' has no place in the model")
    expected = {k for k in state if ".lora_" in k or k.startswith("connector.")}
    absent = sorted(expected - set(keys))
    if absent:
        raise CheckpointError(f"{adapter_path}: adapter lacks '{absent[0]}' ({len(absent)} tensors missing)")
    check_finite(weights if weights.is_file() else legacy, tensors.items())
    renamed = {rename(k): v for k, v in tensors.items()}
    for key, value in renamed.items():
        if tuple(value.shape) != tuple(state[key].shape):
            raise CheckpointError(f"{adapter_path}: tensor '{key}' has shape {list(value.shape)}, "
                                  f"expected {list(state[key].shape)}")
    model.load_state_dict(renamed, strict=False)
    return model.eval()
