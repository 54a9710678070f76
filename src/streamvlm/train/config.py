"""The training config: typed sections, validated by :mod:`streamvlm.settings`.

A config file is one JSON object with the sections below; every field is documented where it is
declared. :func:`load_train_config` reads a file (a path, or the name of a shipped recipe such as
``tiny-synth``), applies ``key=value`` overrides with dotted paths (``optim.lr=1e-4``; values are
parsed as JSON when possible, else kept as strings) and validates the result, so an unknown key,
a wrong type or a value out of range fails with the key's name before any model loads.
:meth:`TrainConfig.check_paths` checks that the files it names exist, also before any model loads.

This module imports neither torch nor transformers (the CLI reads it to build ``--help``).
"""

from __future__ import annotations

import os
from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from ..errors import ConfigError
from ..model.config import UPSTREAM_LORA_TARGETS, LoraSettings, StreamVLMConfig, VisionConfig
from ..model.presets import PresetName
from ..outputs import check_output
from ..settings import (
    Fps,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    load_file,
    settings,
    shipped_configs,
)

DataMethod = Literal["streaming", "interleaved", "per_frame"]
Precision = Literal["fp32", "bf16", "fp16"]


@settings
class ModelSection:
    """Which model to train: exactly one of ``config``, ``init_from`` and ``preset``."""

    config: StreamVLMConfig | None = None
    """A full model config (pretrained parts by path, or random parts from ``llm_config`` /
    ``vision.tower_config``)."""
    init_from: str | None = None
    """A checkpoint folder written by ``save_pretrained`` (e.g. an earlier run) to start from."""
    preset: PresetName | None = None
    """A named config from :mod:`streamvlm.model.presets`: ``tiny``, ``tiny-qwen2`` or
    ``videollm-online-8b`` (random weights of the 8B-v1+ shapes)."""
    with_vision: bool = True
    """Build the image tower. Set false when training on pre-extracted features only (the
    checkpoint then has no tower; ``vision_hidden_size`` must be known)."""
    train_vision: bool = False
    """Train the image tower too (needed for a randomly initialised tower fed raw frames)."""

    def __post_init__(self) -> None:
        given = [name for name in ("config", "init_from", "preset") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of 'config', 'init_from', 'preset' (got {', '.join(given) or 'none'})")
        if self.train_vision and not self.with_vision:
            raise ValueError("train_vision: needs with_vision = true")


@settings
class TokenizerSection:
    """The tokenizer: the model's own (default), a path, or ``"train"``."""

    path: str | None = None
    """``None``: the tokenizer of ``model.init_from`` or ``model.config.llm_name_or_path``; a hub
    id or folder; or ``"train"``: a byte-level BPE trained on the training conversations' texts."""
    vocab_size: Annotated[int, Field(ge=300, le=1_000_000)] = 512
    """Vocabulary size of a trained BPE (``path = "train"``; at least 300: bytes + specials)."""
    corpus: str | None = None
    """With ``path = "train"``: the conversation JSONL whose texts the BPE is trained on (default:
    ``data.train``), e.g. the streaming dialogues when a first stage trains on other data."""


@settings
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
    max_samples: PositiveInt | None = None
    """Use only the first N conversations of ``train`` (quick runs)."""
    num_workers: Annotated[int, Field(ge=0, le=256)] = 0
    """DataLoader worker processes."""

    def __post_init__(self) -> None:
        if self.features is not None and self.videos is not None:
            raise ValueError("set only one of 'features' (a features folder) and 'videos' (a video root)")


@settings
class LossSection:
    """The training loss (see :mod:`streamvlm.model.loss`)."""

    kind: Literal["ce", "focal", "ohem"] = "ce"
    """How frame decisions are weighed: plain cross-entropy (the paper's choice), focal or OHEM."""
    tau: NonNegativeFloat = 1.0
    """Stream loss weight (``stream_loss_weight``), saved into the model config."""
    focal_gamma: Annotated[float, Field(ge=0, le=10)] = 2.0
    """Focal loss exponent: ``(1 - p)^gamma`` down-weighs easy frame decisions (0 is plain CE)."""
    ohem_keep: Annotated[float, Field(gt=0, le=1)] = 0.25
    """OHEM: fraction of the hardest frame decisions of a batch that count."""


@settings
class OptimSection:
    """AdamW with linear warmup then cosine decay to zero."""

    lr: Annotated[float, Field(gt=0, le=1)] = 2e-4
    """Peak learning rate."""
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    """AdamW weight decay (not applied to biases and norms)."""
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    """AdamW betas."""
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.05
    """Fraction of the optimizer steps spent warming the learning rate up from 0."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning rate after the warmup: cosine decay to zero, or constant."""
    connector_lr: Annotated[float, Field(gt=0, le=1)] | None = None
    """Peak learning rate of the connector (default: ``lr``), with the same warmup and decay."""
    max_grad_norm: PositiveFloat | None = 1.0
    """Clip the gradient norm (``None``: no clipping)."""
    grad_accum: PositiveInt = 1
    """Micro-batches accumulated per optimizer step (per process)."""
    batch_size: PositiveInt = 1
    """Conversations per micro-batch per process."""
    epochs: PositiveInt = 1
    """Passes over the training data (unless ``max_steps`` stops earlier)."""
    max_steps: PositiveInt | None = None
    """Stop after this many optimizer steps (overrides ``epochs``)."""


@settings
class LoraSection:
    """LoRA on the language model (peft); off: the whole LM is trained. The connector is always
    trained."""

    enabled: bool = False
    """Train LoRA adapters instead of the whole language model."""
    r: PositiveInt = 128
    """Rank of the LoRA matrices."""
    alpha: PositiveInt = 256
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    """Dropout on the LoRA input, in [0, 1)."""
    target_modules: str = UPSTREAM_LORA_TARGETS
    """Regex over the causal LM's module names (matched in full, as peft does)."""

    def settings(self) -> LoraSettings | None:
        """The model's LoRA settings, or None when LoRA is off."""
        if not self.enabled:
            return None
        return LoraSettings(r=self.r, alpha=self.alpha, dropout=self.dropout, target_modules=self.target_modules)


@settings
class TrainConfig:
    """Everything one training run needs."""

    model: ModelSection
    """The model to train."""
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    """Its tokenizer."""
    data: DataSection = field(default_factory=DataSection)
    """The training (and validation) data."""
    loss: LossSection = field(default_factory=LossSection)
    """The loss."""
    optim: OptimSection = field(default_factory=OptimSection)
    """Optimizer, schedule and batch sizes."""
    lora: LoraSection = field(default_factory=LoraSection)
    """LoRA settings."""
    precision: Precision = "fp32"
    """``fp32``, ``bf16`` (autocast; CPU or GPU) or ``fp16`` (GPU only)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about 30% slower)."""
    deepspeed: str | None = None
    """A DeepSpeed JSON config (e.g. ``configs/deepspeed/zero2.json``); needs ``pip install
    streamvlm[deepspeed]`` and a launch through ``accelerate launch`` or ``torchrun`` on GPUs."""
    output_dir: str = "runs/train"
    """Folder of the checkpoints (``checkpoint-NNNNNN``), ``metrics.jsonl`` and ``train_config.json``."""
    save_every: NonNegativeInt = 0
    """Save a checkpoint every N optimizer steps (0: only at the end and on interruption)."""
    eval_every: NonNegativeInt = 0
    """Evaluate ``data.val`` every N optimizer steps (0: after each epoch only)."""
    log_every: PositiveInt = 1
    """Log the loss every N optimizer steps."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Seed of the model initialisation and of the data order."""
    resume: bool | str = False
    """``true``: continue from the latest checkpoint in ``output_dir``; a path: from that
    checkpoint folder; ``false``: start afresh."""

    def __post_init__(self) -> None:
        if self.data.videos is not None and not self.model.with_vision:
            raise ValueError("data.videos: raw frames need the image tower (model.with_vision = true)")
        if self.tokenizer.path == "train" and self.model.init_from is not None:
            raise ValueError("tokenizer.path: 'train' builds a new vocabulary; a model from init_from keeps its own")

    def check_paths(self) -> None:
        """Check that the data and files named exist (before any model loads)."""
        data = self.data
        if data.train is None:
            raise ConfigError("data.train: a training conversation JSONL is required")
        if data.features is None and data.videos is None:
            raise ConfigError("data: set one of 'features' (a features folder) and 'videos' (a video root)")
        for name, value, folder in (("data.train", data.train, False), ("data.val", data.val, False),
                                    ("data.features", data.features, True), ("data.videos", data.videos, True),
                                    ("deepspeed", self.deepspeed, False),
                                    ("tokenizer.corpus", self.tokenizer.corpus, False),
                                    ("model.init_from", self.model.init_from, True)):
            if value is None:
                continue
            path = Path(value)
            if not (path.is_dir() if folder else path.is_file()):
                raise ConfigError(f"{name}: no such {'folder' if folder else 'file'}: {value}")
        if isinstance(self.resume, str) and not Path(self.resume).is_dir():
            raise ConfigError(f"resume: no such checkpoint folder: {self.resume}")
        out = Path(self.output_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"output_dir: {out} exists and is not a folder")
        check_output(out, name="output_dir", folder=True)  # a folder that can be written (not /proc, read-only)
        if self.resume is False and any(out.glob("checkpoint-*")):
            raise ConfigError(f"output_dir: {out} holds checkpoints of an earlier run; continue it with resume=true, "
                              "or choose another output_dir")


@settings
class TowerPretrainOptions:
    """How a small vision tower is pretrained on a synthetic world. The defaults are the embedded
    default model's."""

    fps: Fps = 2.0
    """Frames per second sampled from each video (the language model's frame rate)."""
    epochs: PositiveInt = 3
    """Passes over the frames."""
    batch_size: PositiveInt = 128
    """Frames per optimizer step."""
    lr: Annotated[float, Field(gt=0, le=1)] = 2e-3
    """Peak learning rate."""
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.01
    """AdamW weight decay."""
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.05
    """Fraction of the steps spent warming the learning rate up."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Seed of the initialisation and of the frame order."""


def load_train_config(name_or_path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a config file or shipped recipe, apply overrides, validate (no path checks)."""
    return load_file(TrainConfig, name_or_path, overrides or [])


__all__ = ["DataSection", "LoraSection", "LossSection", "ModelSection", "OptimSection", "TokenizerSection",
           "TowerPretrainOptions", "TrainConfig", "load_train_config", "recipe_vision", "shipped_configs"]


def recipe_vision(name_or_path: str | os.PathLike) -> VisionConfig:
    """The vision tower config of a training recipe (what ``pretrain-tower`` pretrains)."""
    model = load_train_config(name_or_path).model.config
    if model is None or model.vision.tower_config is None:
        raise ConfigError(f"{name_or_path}: model.config.vision.tower_config is needed (the tower to build)")
    return model.vision
