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
a :class:`~streamvlm.model.StreamVLM` built from the base LLM and vision tower paths.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from transformers import AutoTokenizer

from .config import LoraSettings, StreamVLMConfig, VisionConfig
from .errors import CheckpointError, ConfigError
from .language_model import base_model
from .typed_json import load_json, save_json

FORMAT = "streamvlm"
VERSION = 1


def save_pretrained(model, path: str | Path, *, full: bool = True) -> None:
    """Write ``model`` to folder ``path``: config, tokenizer and weights (see module doc)."""
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
        save_model(model, str(path / "model.safetensors"))
    else:
        if config.llm_name_or_path is None:
            raise ConfigError("save_pretrained(full=False) needs a pretrained base LM (llm_name_or_path)")
        trainable = {k: v.detach().contiguous().cpu() for k, v in model.named_parameters() if v.requires_grad}
        save_file(trainable, str(path / "trainable.safetensors"))
    save_json(config, path / "config.json")
    meta = {"format": FORMAT, "version": VERSION, "weights": "full" if full else "trainable",
            "frame_encoder": model.frame_encoder is not None}
    (path / "checkpoint.json").write_text(json.dumps(meta, indent=2) + "\n")
    model.tokenizer.save_pretrained(str(path))


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
        raise CheckpointError(f"{file}: not a readable safetensors file (truncated or corrupt: {exc})") from None
    return [rename(k) for k in keys]


def load_pretrained(path: str | Path, *, with_vision: bool = True, dtype: torch.dtype | None = None,
                    device: str | torch.device | None = None):
    """Load a folder written by :func:`save_pretrained`. Errors name the missing file or bad key."""
    from .model import StreamVLM

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
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_file}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{meta_file}: unsupported checkpoint format {meta.get('format')!r} v{meta.get('version')!r}")
    weights = path / ("model.safetensors" if meta.get("weights") == "full" else "trainable.safetensors")
    missing_files = [p.name for p in (path / "config.json", weights) if not p.is_file()]
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        missing_files.append("tokenizer.json")
    if missing_files:
        raise CheckpointError(f"{path}: missing {', '.join(missing_files)}")
    config = load_json(StreamVLMConfig, path / "config.json")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    use_vision = with_vision and bool(meta.get("frame_encoder"))
    model = StreamVLM.from_config(config, tokenizer, with_vision=use_vision)
    keys = _check_shapes(weights, model)
    if meta.get("weights") == "full":
        missing, unexpected = load_model(model, str(weights), strict=False)
        if not use_vision:
            unexpected = [k for k in unexpected if not k.startswith("frame_encoder.")]
        if missing or unexpected:
            what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise CheckpointError(f"{weights}: weights do not match the model: {what}")
    else:
        state = model.state_dict()
        unknown = [k for k in keys if k not in state]
        if unknown:
            raise CheckpointError(f"{weights}: unexpected tensor '{unknown[0]}'")
        model.load_state_dict(load_file(str(weights)), strict=False)
    if dtype is not None:
        model.to(dtype)
    if device is not None:
        model.to(device)
    return model.eval()


# ---------------------------------------------------------------------------- upstream adapter
def load_videollm_online(
    adapter_path: str | Path,
    llm_name_or_path: str,
    vision_name_or_path: str,
    *,
    dtype: torch.dtype | None = None,
    frame_fps: float = 2.0,
):
    """Load the released VideoLLM-online adapter (MISSION 1.6 layout) onto its base LLM and tower.

    The model is live1+ (pooled + 3x3 tokens, SigLIP mean = std = 0.5), interval token ``,``,
    upstream text layout; LoRA settings are read from ``adapter_config.json``.
    """
    from .model import StreamVLM

    adapter_path = Path(adapter_path)
    cfg_file = adapter_path / "adapter_config.json"
    weights = adapter_path / "adapter_model.safetensors"
    legacy = adapter_path / "adapter_model.bin"
    if not cfg_file.is_file():
        raise CheckpointError(f"{adapter_path}: missing adapter_config.json (not a PEFT adapter folder)")
    if not weights.is_file() and not legacy.is_file():
        raise CheckpointError(f"{adapter_path}: missing adapter_model.safetensors")
    try:
        adapter_cfg = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({exc})") from None
    target = adapter_cfg.get("target_modules")
    if isinstance(target, list):
        target = "|".join(f"(.*\\.)?{t}" for t in target)
    lora = LoraSettings(r=int(adapter_cfg.get("r", 128)), alpha=int(adapter_cfg.get("lora_alpha", 256)),
                        dropout=float(adapter_cfg.get("lora_dropout", 0.05)), target_modules=target or LoraSettings().target_modules)
    config = StreamVLMConfig(
        llm_name_or_path=llm_name_or_path,
        vision=VisionConfig(name_or_path=vision_name_or_path, use_pooled=True, pool_size=3),
        lora=lora,
        interval_token=",",
        frame_fps=frame_fps,
    )
    tokenizer = AutoTokenizer.from_pretrained(llm_name_or_path)
    model = StreamVLM.from_config(config, tokenizer, dtype=dtype)

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

    if weights.is_file():
        keys = _check_shapes(weights, model, rename)
        tensors = load_file(str(weights))
    else:
        tensors = torch.load(str(legacy), map_location="cpu", weights_only=True)
        keys = [rename(k) for k in tensors]
    state = model.state_dict()
    unknown = [k for k in keys if k not in state]
    if unknown:
        raise CheckpointError(f"{adapter_path}: adapter tensor for '{unknown[0]}' has no place in the model")
    expected = {k for k in state if ".lora_" in k or k.startswith("connector.")}
    absent = sorted(expected - set(keys))
    if absent:
        raise CheckpointError(f"{adapter_path}: adapter lacks '{absent[0]}' ({len(absent)} tensors missing)")
    renamed = {rename(k): v for k, v in tensors.items()}
    for key, value in renamed.items():
        if tuple(value.shape) != tuple(state[key].shape):
            raise CheckpointError(f"{adapter_path}: tensor '{key}' has shape {list(value.shape)}, expected {list(state[key].shape)}")
    model.load_state_dict(renamed, strict=False)
    return model.eval()
