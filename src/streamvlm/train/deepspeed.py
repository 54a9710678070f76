"""DeepSpeed configs: read a shipped/user JSON and fill the keys the recipe owns.

The JSON files in ``configs/deepspeed/`` leave ``"auto"`` where a value must agree with the
training config; :func:`fill_deepspeed_config` replaces them (and overwrites explicit values of
these keys, so the two can never disagree).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..jsonfiles import read_json
from .config import TrainConfig

FILLED_KEYS = (
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "gradient_clipping",
    "bf16.enabled",
    "fp16.enabled",
)
"""Dotted keys the recipe sets from the training config."""


def read_deepspeed_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"deepspeed: no such file: {path}")
    data = read_json(path, error=ConfigError)
    stage = data.get("zero_optimization", {}).get("stage") if isinstance(data, dict) else None
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"deepspeed: {path}: zero_optimization.stage must be 0 to 3, got {stage!r}")
    return data


def fill_deepspeed_config(ds: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """A copy of ``ds`` with batch size, accumulation, clipping and precision from ``cfg``."""
    out = json.loads(json.dumps(ds))
    out["train_micro_batch_size_per_gpu"] = cfg.optim.batch_size
    out["gradient_accumulation_steps"] = cfg.optim.grad_accum
    out["gradient_clipping"] = cfg.optim.max_grad_norm if cfg.optim.max_grad_norm is not None else 0.0
    out.pop("train_batch_size", None)  # derived by DeepSpeed from the two above and the world size
    out.setdefault("bf16", {})["enabled"] = cfg.precision == "bf16"
    out.setdefault("fp16", {})["enabled"] = cfg.precision == "fp16"
    return out
