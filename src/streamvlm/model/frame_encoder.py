"""Frame encoder: a Hugging Face image tower plus the paper's frame-token recipe.

Frames (uint8 RGB) are resized so the long side is ``image_size``, zero-padded to a square
(aspect kept) and normalised per tower family. The tower runs on the square image; each frame
becomes ``T = use_pooled + pool_size**2`` tokens: the pooled/CLS token, then a
``pool_size x pool_size`` adaptive average pool of the patch grid (live1+: 1 + 3x3 = 10; live1: 1).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    CLIPVisionConfig,
    CLIPVisionModel,
    PretrainedConfig,
    PreTrainedModel,
    Siglip2VisionConfig,
    Siglip2VisionModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from ..errors import CheckpointError, ConfigError
from ..video.resize import FrameFit, upstream_frame_geometry
from .config import VisionConfig
from .frame_record import FrameRecord
from .hf_checks import (
    TOWER_SIZE_FIELDS,
    check_hf_config_values,
    check_model_fits,
    hf_config_values,
    one_line,
    pretrained_hf_config,
    read_json_object,
    short_repr,
    split_model_type,
)
from .materialise import InitMode, build_random, target_device

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


def _check_channels(values: dict, prefix: str, error: type = ConfigError) -> None:
    channels = values.get("num_channels", 3)
    if channels != 3:
        raise error(f"{prefix}num_channels: frames are RGB, so the tower needs 3 channels, got {short_repr(channels)}")


def tower_hf_config(tower_config: Any, prefix: str = "vision.tower_config") -> tuple[PretrainedConfig, TowerFamily]:
    """The HF config of an image tower from its dict (``model_type`` + fields), every size checked."""
    values, model_type = split_model_type(tower_config, prefix, "'siglip_vision_model'")
    if not isinstance(model_type, str) or model_type not in TOWER_FAMILIES:
        raise ConfigError(f"{prefix}.model_type: unsupported image tower type {short_repr(model_type)} "
                          f"(supported: {', '.join(sorted(TOWER_FAMILIES))})")
    family = TOWER_FAMILIES[model_type]
    defaults = family.config_class().to_dict()
    check_hf_config_values(values, TOWER_SIZE_FIELDS, f"{prefix}.", defaults=defaults)
    _check_channels(values, f"{prefix}.")
    try:
        return family.config_class(**values), family
    except Exception as exc:  # noqa: BLE001 - HF raises many kinds for bad values
        raise ConfigError(f"{prefix}: not a valid {model_type} config ({one_line(exc)})") from None


def _tower_builder(family: TowerFamily, dtype: torch.dtype):
    """``hf_config -> tower`` with its weights created in ``dtype`` (on the device new tensors go to)."""
    return lambda hf_config: family.model_class._from_config(hf_config, dtype=dtype)


def _load_pretrained_tower(name_or_path: str, dtype: torch.dtype | None,
                           device: torch.device) -> tuple[PreTrainedModel, TowerFamily]:
    hf_config, where = pretrained_hf_config(name_or_path, AutoConfig.from_pretrained, "image tower")
    model_type = hf_config.model_type
    if model_type not in TOWER_FAMILIES:
        raise CheckpointError(f"{where}model_type: unsupported image tower type {model_type!r} "
                              f"(supported: {', '.join(sorted(TOWER_FAMILIES))})")
    family = TOWER_FAMILIES[model_type]
    vision_config, _ = pretrained_hf_config(name_or_path, family.config_class.from_pretrained, "image tower")
    values = hf_config_values(vision_config)
    check_hf_config_values(values, TOWER_SIZE_FIELDS, where, error=CheckpointError)
    _check_channels(values, where, CheckpointError)
    build_dtype = dtype or getattr(vision_config, "dtype", None) or torch.get_default_dtype()
    check_model_fits(_tower_builder(family, build_dtype), vision_config, where.rstrip(": "), dtype=build_dtype,
                     device=device, error=CheckpointError)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:  # loaded straight onto the device, in the dtype
        return family.model_class.from_pretrained(name_or_path, device_map={"": device}, **kwargs), family
    except Exception as exc:  # noqa: BLE001 - missing, truncated or mismatched weight files
        raise CheckpointError(f"{name_or_path}: cannot load the image tower weights ({one_line(exc)})") from None


def build_tower(config: VisionConfig, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                *, init: InitMode = "full") -> tuple[PreTrainedModel, TowerFamily]:
    """Load the tower named by ``config.name_or_path``, or build a random one from ``tower_config``,
    in ``dtype`` (default float32) on ``device`` (default: where new tensors go); ``init``: how a
    random tower is initialised (:mod:`streamvlm.model.materialise`).

    Raises ConfigError for a bad ``tower_config`` (field named), CheckpointError for a bad folder;
    either before anything is allocated, including when the weights would not fit in memory.
    """
    device = target_device(device)
    if config.name_or_path is not None:
        return _load_pretrained_tower(config.name_or_path, dtype, device)
    hf_config, family = tower_hf_config(config.tower_config or {})
    dtype = dtype or torch.get_default_dtype()
    tower = build_random(_tower_builder(family, dtype), hf_config, "vision.tower_config", dtype=dtype,
                         device=device, init=init)
    return tower, family


def resize_pad_upstream(x: Tensor, size: int) -> Tensor:
    """``[N, 3, H, W]`` float pixels in [0, 255] -> ``[N, 3, size, size]``: bicubic resize (with
    antialiasing when shrinking, as ffmpeg's scaler filters), 8-bit rounding, black padding centred."""
    h, w = x.shape[-2:]
    new_h, new_w, top, left = upstream_frame_geometry(h, w, size)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    x = x.round().clamp(0, 255)
    return F.pad(x, (left, size - new_w - left, top, size - new_h - top), value=0.0)


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
        device = next(tower.parameters()).device  # beside the tower
        self.register_buffer("mean", torch.tensor(mean, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, device=device).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, config: VisionConfig, dtype: torch.dtype | None = None,
                    device: torch.device | str | None = None, *, init: InitMode = "full") -> FrameEncoder:
        """The tower of ``config`` (see :func:`build_tower`) with the frame-token recipe, on ``device``."""
        tower, family = build_tower(config, dtype, device, init=init)
        return cls(config, tower, family)

    @property
    def fit(self) -> FrameFit:
        """The size frames are scaled to before padding (decoders take it: ``open_source(fit=...)``)."""
        return FrameFit(self.image_size, self.config.resize)

    @property
    def tokens_per_frame(self) -> int:
        return self.config.tokens_per_frame

    @property
    def dtype(self) -> torch.dtype:
        return next(self.tower.parameters()).dtype

    @torch.no_grad()
    def preprocess(self, frames: Tensor) -> Tensor:
        """uint8 frames ``[N, H, W, 3]`` (or ``[N, 3, H, W]``) -> normalised ``[N, 3, S, S]``.

        Resize to :attr:`fit` (aspect kept), zero-pad to a square (bottom/right, or centred as
        upstream: ``vision.resize``), then scale to [0, 1] and normalise with the tower's mean/std
        (padding is black before that). Frames decoded for this encoder (``open_source(fit=...)``)
        arrive at the fitted size already: the one resize was FFmpeg's, at decoding, and none is
        done here; frames of another size are resized here with torch (bicubic or bilinear).
        """
        if frames.dim() == 3:
            frames = frames[None]
        if frames.dim() != 4:
            raise ValueError(f"frames: expected [N, H, W, 3] or [N, 3, H, W], got shape {tuple(frames.shape)}")
        if frames.shape[-1] == 3 and frames.shape[1] != 3:
            frames = frames.permute(0, 3, 1, 2)
        n, _, h, w = frames.shape
        size = self.image_size
        x = frames.to(device=self.mean.device, dtype=torch.float32)
        if self.config.resize == "upstream":
            x = resize_pad_upstream(x, size)
        else:
            new_h, new_w = self.fit.shape(h, w)
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

    @torch.no_grad()
    def frame_record(self) -> FrameRecord:
        """How this encoder makes frame tokens, as feature files record it: the fit, the pixel
        normalisation, the tower type and :data:`WEIGHT_SAMPLE` weights of its first and of its
        last matrix (evenly spaced; any other tower, trained or random, differs there)."""
        matrices = [t for _, t in sorted(self.tower.state_dict().items()) if t.is_floating_point() and t.dim() >= 2]
        sample: list[float] = []
        for tensor in (matrices[0], matrices[-1]) if matrices else ():
            flat = tensor.reshape(-1)
            index = torch.linspace(0, flat.numel() - 1, WEIGHT_SAMPLE, device=flat.device).long()
            sample += [float(f"{v:.6g}") for v in flat[index].float().cpu().tolist()]
        return FrameRecord(self.config.resize, self.image_size, tuple(self.mean.flatten().tolist()),
                           tuple(self.std.flatten().tolist()), self.tower.config.model_type, tuple(sample))

    def encode_frames(self, frames: Tensor, batch_size: int = 64) -> Tensor:
        """uint8 frames ``[N, H, W, 3]`` -> frame tokens ``[N, T, D_vision]``, in chunks."""
        outs = [self(self.preprocess(frames[i : i + batch_size])) for i in range(0, len(frames), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.tokens_per_frame, self.hidden_size)


WEIGHT_SAMPLE = 8
"""Weights per matrix in a :meth:`FrameEncoder.frame_record`."""


FRAME_ENCODER_FILE = "frame_encoder.json"
"""Written next to a tower's own files by :func:`save_frame_encoder`: the frame-token recipe."""


def save_frame_encoder(encoder: FrameEncoder, path: str | Path) -> None:
    """Write ``encoder`` as a folder: the tower (``save_pretrained``, so ``vision.name_or_path``
    can name it) plus :data:`FRAME_ENCODER_FILE` with the frame-token recipe."""
    path = Path(path)
    encoder.tower.save_pretrained(str(path))
    cfg = encoder.config
    recipe = {"use_pooled": cfg.use_pooled, "pool_size": cfg.pool_size, "image_size": encoder.image_size,
              "image_mean": cfg.image_mean, "image_std": cfg.image_std, "resize": cfg.resize}
    (path / FRAME_ENCODER_FILE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")


def is_frame_encoder_dir(path: str | Path) -> bool:
    return (Path(path) / FRAME_ENCODER_FILE).is_file()


_RECIPE_FIELDS = {"use_pooled", "pool_size", "image_size", "image_mean", "image_std", "resize"}


def _check_recipe(file: Path, recipe: dict[str, Any]) -> None:
    """Types and ranges of a frame-encoder recipe, with errors naming the field."""
    unknown = sorted(set(recipe) - _RECIPE_FIELDS)
    if unknown:
        raise CheckpointError(f"{file}: unknown field {unknown[0]!r} (expected {', '.join(sorted(_RECIPE_FIELDS))})")

    def bad(field: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{file}: field '{field}' must be {expected}, got {short_repr(recipe[field])}")

    if "use_pooled" in recipe and not isinstance(recipe["use_pooled"], bool):
        raise bad("use_pooled", "true or false")
    pool = recipe.get("pool_size", 0)
    if isinstance(pool, bool) or not isinstance(pool, int) or not 0 <= pool <= 64:
        raise bad("pool_size", "an integer in [0, 64]")
    size = recipe.get("image_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= 8192):
        raise bad("image_size", "null or an integer in [1, 8192]")
    if recipe.get("resize", "streamvlm") not in ("streamvlm", "upstream"):
        raise bad("resize", "'streamvlm' or 'upstream'")
    for field in ("image_mean", "image_std"):
        value = recipe.get(field)
        if value is None:
            continue
        if not (isinstance(value, list) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            raise bad(field, "null or a list of 3 numbers")
        if field == "image_std" and min(value) <= 0:
            raise bad(field, "a list of 3 numbers > 0")


def load_frame_encoder(path: str | Path, dtype: torch.dtype | None = None,
                       device: torch.device | str | None = None) -> FrameEncoder:
    """Load a folder written by :func:`save_frame_encoder`, in ``dtype`` on ``device``. A broken
    folder raises a one-line CheckpointError naming the file and field."""
    path = Path(path)
    file = path / FRAME_ENCODER_FILE
    recipe = read_json_object(file)
    _check_recipe(file, recipe)
    try:
        config = VisionConfig(name_or_path=str(path), **recipe)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{file}: not a frame-encoder recipe ({one_line(err)})") from None
    try:
        return FrameEncoder.from_config(config, dtype, device)
    except ConfigError as exc:  # the recipe does not fit the tower (image size vs patch size, ...)
        raise CheckpointError(f"{file}: {exc}") from None
