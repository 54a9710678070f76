"""The training config: typed sections loaded strictly from JSON, with ``key=value`` overrides.

A config file is one JSON object with the sections below; every field is documented where it is
declared. :func:`load_train_config` reads a file (a path, or the name of a shipped recipe such as
``tiny-synth``), applies command-line overrides with dotted paths (``optim.lr=1e-4``; values are
parsed as JSON when possible, else kept as strings) and converts the result with
:func:`streamvlm.typed_json.from_dict`, so an unknown key or a wrong type fails before training
with a message naming the key. :meth:`TrainConfig.validate` checks values and data paths, still
before any model loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..config import LoraSettings, StreamVLMConfig, UPSTREAM_LORA_TARGETS
from ..errors import ConfigError
from ..typed_json import from_dict

DataMethod = Literal["streaming", "interleaved", "per_frame"]
Precision = Literal["fp32", "bf16", "fp16"]

PRESETS = ("tiny", "tiny-qwen2", "videollm-online-8b")


@dataclass
class ModelSection:
    """Which model to train: exactly one of ``config``, ``init_from`` and ``preset``."""

    config: StreamVLMConfig | None = None
    """A full model config (pretrained parts by path, or random parts from ``llm_config`` /
    ``vision.tower_config``)."""
    init_from: str | None = None
    """A checkpoint folder written by ``save_pretrained`` (e.g. an earlier run) to start from."""
    preset: str | None = None
    """A named config from :mod:`streamvlm.presets`: ``tiny``, ``tiny-qwen2`` or
    ``videollm-online-8b`` (random weights of the 8B-v1+ shapes)."""
    with_vision: bool = True
    """Build the image tower. Set false when training on pre-extracted features only (the
    checkpoint then has no tower; ``vision_hidden_size`` must be known)."""
    train_vision: bool = False
    """Train the image tower too (needed for a randomly initialised tower fed raw frames)."""

    def validate(self) -> None:
        given = [name for name in ("config", "init_from", "preset") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigError(f"model: set exactly one of 'config', 'init_from', 'preset' (got {given or 'none'})")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"model.preset: unknown preset {self.preset!r} (known: {', '.join(PRESETS)})")
        if self.config is not None:
            self.config.validate()


@dataclass
class TokenizerSection:
    """The tokenizer: the model's own (default), a path, or ``"train"``."""

    path: str | None = None
    """``None``: the tokenizer of ``model.init_from`` or ``model.config.llm_name_or_path``; a hub
    id or folder; or ``"train"``: a byte-level BPE trained on the training conversations' texts."""
    vocab_size: int = 512
    """Vocabulary size of a trained BPE (``path = "train"``)."""


@dataclass
class DataSection:
    """Training data: conversation JSONL files plus frame features or raw videos."""

    train: str | None = None
    """Conversation JSONL (format in ``docs/data-format.md``) used for training."""
    val: str | None = None
    """Optional conversation JSONL evaluated after each epoch (and every ``eval_every`` steps)."""
    features: str | None = None
    """Folder of frame features written by ``streamvlm encode`` (one safetensors file per video)."""
    videos: str | None = None
    """Root folder of the raw videos (frames decoded and encoded during training; small runs)."""
    method: DataMethod = "streaming"
    """``streaming`` (LM + streaming EOS loss), ``interleaved`` (LM loss on the annotated replies
    only; frame decisions not learned) or ``per_frame`` (an assistant turn after every frame,
    empty replies meaning silence, replies learned, no stream loss)."""
    max_samples: int | None = None
    """Use only the first N conversations of ``train`` (quick runs)."""
    num_workers: int = 0
    """DataLoader worker processes."""

    def validate(self, check_paths: bool) -> None:
        if self.train is None:
            raise ConfigError("data.train: a training conversation JSONL is required")
        if (self.features is None) == (self.videos is None):
            raise ConfigError("data: set exactly one of 'features' (a features folder) and 'videos' (a video root)")
        if self.max_samples is not None and self.max_samples <= 0:
            raise ConfigError(f"data.max_samples: must be > 0, got {self.max_samples}")
        if not check_paths:
            return
        for name, is_dir in (("train", False), ("val", False), ("features", True), ("videos", True)):
            value = getattr(self, name)
            if value is None:
                continue
            path = Path(value)
            if not (path.is_dir() if is_dir else path.is_file()):
                what = "folder" if is_dir else "file"
                raise ConfigError(f"data.{name}: no such {what}: {value}")


@dataclass
class LossSection:
    """The training loss (see :mod:`streamvlm.loss`)."""

    kind: Literal["ce", "focal", "ohem"] = "ce"
    """How frame decisions are weighed: plain cross-entropy (the paper's choice), focal or OHEM."""
    tau: float = 1.0
    """Stream loss weight (``stream_loss_weight``), saved into the model config."""
    focal_gamma: float = 2.0
    ohem_keep: float = 0.25
    """OHEM: fraction of the hardest frame decisions of a batch that count."""

    def validate(self) -> None:
        if self.tau < 0:
            raise ConfigError(f"loss.tau: must be >= 0, got {self.tau}")
        if not 0 < self.ohem_keep <= 1:
            raise ConfigError(f"loss.ohem_keep: must be in (0, 1], got {self.ohem_keep}")


@dataclass
class OptimSection:
    """AdamW with linear warmup then cosine decay to zero."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_ratio: float = 0.05
    """Fraction of the optimizer steps spent warming the learning rate up from 0."""
    schedule: Literal["cosine", "constant"] = "cosine"
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm (``None``: no clipping)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step (per process)."""
    batch_size: int = 1
    """Conversations per micro-batch per process."""
    epochs: int = 1
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides ``epochs``)."""

    def validate(self) -> None:
        for name in ("grad_accum", "batch_size", "epochs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"optim.{name}: must be > 0, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"optim.max_steps: must be > 0, got {self.max_steps}")
        if self.lr <= 0:
            raise ConfigError(f"optim.lr: must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"optim.warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas: need 2 values, got {self.betas}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError(f"optim.max_grad_norm: must be > 0 or null, got {self.max_grad_norm}")


@dataclass
class LoraSection:
    """LoRA on the language model (peft); off: the whole LM is trained. The connector is always
    trained."""

    enabled: bool = False
    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: str = UPSTREAM_LORA_TARGETS
    """Regex over the causal LM's module names (matched in full, as peft does)."""

    def settings(self) -> LoraSettings | None:
        if not self.enabled:
            return None
        settings = LoraSettings(r=self.r, alpha=self.alpha, dropout=self.dropout, target_modules=self.target_modules)
        settings.validate()
        return settings


@dataclass
class TrainConfig:
    """Everything one training run needs."""

    model: ModelSection = field(default_factory=ModelSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    lora: LoraSection = field(default_factory=LoraSection)
    precision: Precision = "fp32"
    """``fp32``, ``bf16`` (autocast; CPU or GPU) or ``fp16`` (GPU only)."""
    gradient_checkpointing: bool = False
    deepspeed: str | None = None
    """A DeepSpeed JSON config (e.g. ``configs/deepspeed/zero2.json``); needs ``pip install
    streamvlm[deepspeed]`` and a launch through ``accelerate launch`` or ``torchrun`` on GPUs."""
    output_dir: str = "runs/train"
    save_every: int = 0
    """Save a checkpoint every N optimizer steps (0: only at the end and on interruption)."""
    eval_every: int = 0
    """Evaluate ``data.val`` every N optimizer steps (0: after each epoch only)."""
    log_every: int = 1
    seed: int = 0
    resume: bool | str = False
    """``true``: continue from the latest checkpoint in ``output_dir``; a path: from that
    checkpoint folder; ``false``: start afresh."""

    def validate(self, check_paths: bool = True) -> None:
        """Check values (and, with ``check_paths``, that the data files exist). Loads nothing."""
        self.model.validate()
        self.data.validate(check_paths)
        self.loss.validate()
        self.optim.validate()
        self.lora.settings()
        if self.model.train_vision and not self.model.with_vision:
            raise ConfigError("model.train_vision: needs model.with_vision = true")
        if self.data.videos is not None and not self.model.with_vision:
            raise ConfigError("data.videos: raw frames need the image tower (model.with_vision = true)")
        if self.tokenizer.path == "train" and self.model.init_from is not None:
            raise ConfigError("tokenizer.path: 'train' builds a new vocabulary; a model from init_from keeps its own")
        if self.tokenizer.vocab_size < 300:
            raise ConfigError(f"tokenizer.vocab_size: must be >= 300 (byte alphabet + specials), got {self.tokenizer.vocab_size}")
        for name in ("save_every", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.log_every <= 0:
            raise ConfigError(f"log_every: must be > 0, got {self.log_every}")
        if check_paths and self.deepspeed is not None and not Path(self.deepspeed).is_file():
            raise ConfigError(f"deepspeed: no such file: {self.deepspeed}")
        if check_paths and self.model.init_from is not None and not Path(self.model.init_from).is_dir():
            raise ConfigError(f"model.init_from: no such checkpoint folder: {self.model.init_from}")


# ---------------------------------------------------------------------------- loading
def shipped_configs() -> list[str]:
    """Names of the recipe configs shipped in ``streamvlm/configs`` (without ``.json``)."""
    folder = resources.files("streamvlm") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _read_config_file(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.is_file():
        shipped = resources.files("streamvlm") / "configs" / f"{name_or_path}.json"
        if not shipped.is_file():
            raise ConfigError(
                f"{name_or_path}: no such config file, and not a shipped recipe (shipped: {', '.join(shipped_configs())})"
            )
        text, source = shipped.read_text(encoding="utf-8"), f"{name_or_path}.json"
    else:
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    base = data.pop("base", None)
    if base is not None:  # a small override of another recipe
        if not isinstance(base, str):
            raise ConfigError(f"{source}: 'base' must name a config")
        data = merge(_read_config_file(base), data)
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: objects merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (``1e-4``, ``true``, ``null``, ``[1,2]``), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a raw config dict (missing or null parents become objects)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. optim.lr=1e-4)")
        parts = key.split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                if node.get(part) is not None:
                    raise ConfigError(f"override {item!r}: '{'.'.join(parts[: i + 1])}' is not an object")
                node[part] = {}
            node = node[part]
        node[parts[-1]] = parse_value(value)
    return data


def load_train_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a config file or shipped recipe, apply overrides, convert strictly (no path checks)."""
    data = _read_config_file(name_or_path) if name_or_path is not None else {}
    data = apply_overrides(data, overrides or [])
    try:
        config = from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{name_or_path}: {exc}" if name_or_path else str(exc)) from None
    return config
