"""The embedded default model: a tiny StreamVLM trained by this project's own recipe on the
synthetic world, shipped inside the package so that ``streamvlm demo`` works without any download.

It lives in ``streamvlm/assets/default_model`` (a ``save_pretrained`` folder, a few MB);
``streamvlm build-default`` rebuilds it (:mod:`streamvlm.experiments.default_model`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    import torch

    from .vlm import StreamVLM

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default_model"


def load_default_model(dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> StreamVLM:
    """Load the embedded default model in ``dtype`` on ``device`` (default: float32 on the CPU; eval mode)."""
    from .checkpoint import load_pretrained

    if not (DEFAULT_MODEL_DIR / "checkpoint.json").is_file():
        raise UserError(
            f"the embedded default model is missing from this installation ({DEFAULT_MODEL_DIR}); "
            "rebuild it with `streamvlm build-default --install` (about an hour on 2 CPU cores)"
        )
    return load_pretrained(DEFAULT_MODEL_DIR, dtype=dtype, device=device)
