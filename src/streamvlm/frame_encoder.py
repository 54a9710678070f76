"""Frame encoder: a Hugging Face image tower plus the paper's frame-token recipe.

Frames (uint8 RGB) are resized so the long side is ``image_size``, zero-padded to a square
(aspect kept) and normalised per tower family. The tower runs on the square image; each frame
becomes ``T = use_pooled + pool_size**2`` tokens: the pooled/CLS token, then a
``pool_size x pool_size`` adaptive average pool of the patch grid (live1+: 1 + 3x3 = 10; live1: 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    CLIPVisionConfig,
    CLIPVisionModel,
    PretrainedConfig,
    PreTrainedModel,
    SiglipVisionConfig,
    SiglipVisionModel,
    Siglip2VisionConfig,
    Siglip2VisionModel,
)

from .config import VisionConfig
from .errors import ConfigError

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class TowerFamily:
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    has_cls: bool
    """The first token of ``last_hidden_state`` is a CLS token (CLIP), not a patch."""


_SIGLIP = TowerFamily(SiglipVisionConfig, SiglipVisionModel, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), False)
_SIGLIP2 = TowerFamily(Siglip2VisionConfig, Siglip2VisionModel, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), False)
_CLIP = TowerFamily(CLIPVisionConfig, CLIPVisionModel, tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD), True)

TOWER_FAMILIES: dict[str, TowerFamily] = {
    "siglip": _SIGLIP,
    "siglip_vision_model": _SIGLIP,
    "siglip2": _SIGLIP2,
    "siglip2_vision_model": _SIGLIP2,
    "clip": _CLIP,
    "clip_vision_model": _CLIP,
}


def _family(model_type: str) -> TowerFamily:
    try:
        return TOWER_FAMILIES[model_type]
    except KeyError:
        raise ConfigError(
            f"vision: unsupported image tower type {model_type!r} (supported: {', '.join(sorted(TOWER_FAMILIES))})"
        ) from None


def build_tower(config: VisionConfig) -> tuple[PreTrainedModel, TowerFamily]:
    """Load the tower named by ``config.name_or_path``, or build a random one from ``tower_config``."""
    config.validate()
    if config.name_or_path is not None:
        model_type = AutoConfig.from_pretrained(config.name_or_path).model_type
        family = _family(model_type)
        return family.model_class.from_pretrained(config.name_or_path), family
    tower_config = dict(config.tower_config or {})
    model_type = tower_config.pop("model_type", None)
    if model_type is None:
        raise ConfigError("vision.tower_config: missing 'model_type' (e.g. 'siglip_vision_model')")
    family = _family(model_type)
    hf_config = family.config_class(**tower_config)
    return family.model_class(hf_config), family


class FrameEncoder(nn.Module):
    """Image tower + frame-token recipe. ``forward``: ``[N, 3, S, S]`` pixels -> ``[N, T, D_vision]``."""

    def __init__(self, config: VisionConfig, tower: PreTrainedModel, family: TowerFamily) -> None:
        super().__init__()
        self.config = config
        self.tower = tower
        self.family = family
        tower_cfg = tower.config
        self.patch_size: int = tower_cfg.patch_size
        self.image_size: int = config.image_size or getattr(tower_cfg, "image_size", None) or 0
        if family is _SIGLIP2 and not config.image_size:
            side = int(round(tower_cfg.num_patches ** 0.5))
            self.image_size = side * self.patch_size
        if self.image_size <= 0 or self.image_size % self.patch_size:
            raise ConfigError(
                f"vision.image_size: {self.image_size} must be a positive multiple of the patch size {self.patch_size}"
            )
        if config.use_pooled and family is not _CLIP and not getattr(tower_cfg, "vision_use_head", True):
            raise ConfigError("vision.use_pooled: this SigLIP tower has no pooling head (vision_use_head=false)")
        self.hidden_size: int = tower_cfg.hidden_size
        mean = config.image_mean or list(family.mean)
        std = config.image_std or list(family.std)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, config: VisionConfig) -> FrameEncoder:
        tower, family = build_tower(config)
        return cls(config, tower, family)

    @property
    def tokens_per_frame(self) -> int:
        return self.config.tokens_per_frame

    @property
    def dtype(self) -> torch.dtype:
        return next(self.tower.parameters()).dtype

    @torch.no_grad()
    def preprocess(self, frames: Tensor) -> Tensor:
        """uint8 frames ``[N, H, W, 3]`` (or ``[N, 3, H, W]``) -> normalised ``[N, 3, S, S]``.

        Resize so the long side is ``S`` (aspect kept), zero-pad bottom/right to a square, then
        scale to [0, 1] and normalise with the tower's mean/std (padding is black before that).
        """
        if frames.dim() == 3:
            frames = frames[None]
        if frames.dim() != 4:
            raise ValueError(f"frames: expected [N, H, W, 3] or [N, 3, H, W], got shape {tuple(frames.shape)}")
        if frames.shape[-1] == 3 and frames.shape[1] != 3:
            frames = frames.permute(0, 3, 1, 2)
        n, _, h, w = frames.shape
        size = self.image_size
        scale = size / max(h, w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        x = frames.to(device=self.mean.device, dtype=torch.float32)
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp(0, 255)
        if (new_h, new_w) != (size, size):
            x = F.pad(x, (0, size - new_w, 0, size - new_h), value=0.0)
        x = (x / 255.0 - self.mean) / self.std
        return x.to(self.dtype)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """``[N, 3, S, S]`` normalised pixels -> frame tokens ``[N, T, D_vision]``."""
        n = pixel_values.shape[0]
        side = pixel_values.shape[-1] // self.patch_size
        if self.family is _SIGLIP2:
            p = self.patch_size
            patches = pixel_values.reshape(n, 3, side, p, side, p).permute(0, 2, 4, 3, 5, 1).reshape(n, side * side, -1)
            mask = torch.ones(n, side * side, dtype=torch.int32, device=pixel_values.device)
            shapes = torch.tensor([[side, side]] * n, dtype=torch.long, device=pixel_values.device)
            out = self.tower(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes)
        else:
            out = self.tower(pixel_values=pixel_values)
        hidden = out.last_hidden_state
        tokens = []
        if self.config.use_pooled:
            pooled = hidden[:, 0] if self.family.has_cls else out.pooler_output
            tokens.append(pooled[:, None])
        if self.config.pool_size:
            grid = hidden[:, 1:] if self.family.has_cls else hidden
            grid = grid.reshape(n, side, side, -1).permute(0, 3, 1, 2)
            grid = F.adaptive_avg_pool2d(grid, self.config.pool_size).flatten(2).transpose(1, 2)
            tokens.append(grid)
        return torch.cat(tokens, dim=1)

    def encode_frames(self, frames: Tensor, batch_size: int = 64) -> Tensor:
        """uint8 frames ``[N, H, W, 3]`` -> frame tokens ``[N, T, D_vision]``, in chunks."""
        outs = [self(self.preprocess(frames[i : i + batch_size])) for i in range(0, len(frames), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.tokens_per_frame, self.hidden_size)


FRAME_ENCODER_FILE = "frame_encoder.json"
"""Written next to a tower's own files by :func:`save_frame_encoder`: the frame-token recipe."""


def save_frame_encoder(encoder: FrameEncoder, path: str | Path) -> None:
    """Write ``encoder`` as a folder: the tower (``save_pretrained``, so ``vision.name_or_path``
    can name it) plus :data:`FRAME_ENCODER_FILE` with the frame-token recipe."""
    path = Path(path)
    encoder.tower.save_pretrained(str(path))
    cfg = encoder.config
    recipe = {"use_pooled": cfg.use_pooled, "pool_size": cfg.pool_size, "image_size": encoder.image_size,
              "image_mean": cfg.image_mean, "image_std": cfg.image_std}
    (path / FRAME_ENCODER_FILE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")


def is_frame_encoder_dir(path: str | Path) -> bool:
    return (Path(path) / FRAME_ENCODER_FILE).is_file()


def load_frame_encoder(path: str | Path) -> FrameEncoder:
    """Load a folder written by :func:`save_frame_encoder`."""
    path = Path(path)
    try:
        recipe = json.loads((path / FRAME_ENCODER_FILE).read_text(encoding="utf-8"))
        config = VisionConfig(name_or_path=str(path), **recipe)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"{path / FRAME_ENCODER_FILE}: not a frame-encoder recipe ({err})") from None
    config.validate()
    return FrameEncoder.from_config(config)
