"""Checkpoint folders of a run: model (``save_pretrained``) + ``trainer_state.pt`` + the config.

``OUTPUT_DIR/checkpoint-000120/`` holds the model files written by
:func:`streamvlm.model.checkpoint.save_pretrained` (loadable with :func:`~streamvlm.model.checkpoint.load_pretrained`),
``train_config.json`` (the resolved training config) and ``trainer_state.pt``: the optimizer,
scheduler, step and every rank's RNG states, as tensors and plain containers only, so it loads
with ``torch.load(weights_only=True)`` (no pickled code runs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

STATE_FILE = "trainer_state.pt"
_NAME = re.compile(r"checkpoint-(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step:06d}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint folder with the highest step that holds a trainer state, or None."""
    found = []
    for path in Path(output_dir).glob("checkpoint-*"):
        match = _NAME.search(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_trainer_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temporary file, then rename)."""
    tmp = path / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path / STATE_FILE)


def load_trainer_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{path}: missing {STATE_FILE} (not a resumable training checkpoint)")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated file, ...
        raise CheckpointError(f"{file}: cannot load trainer state ({type(exc).__name__}: {exc})") from None
