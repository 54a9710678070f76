"""A tiny synthetic training set built on the fly: conversations + random frame features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from streamvlm.data.features import feature_path, write_features
from streamvlm.model.frame_record import FrameRecord

TOKENS_PER_FRAME = 10
FEATURE_WIDTH = 32  # the hidden size of the tiny preset's image tower
FRAMES = FrameRecord("streamvlm", 32)  # how the tiny preset takes frames (its tower is not built here)


def conversation(i: int) -> list[dict]:
    obj = ["cup", "box", "knife"][i % 3]
    return [
        {"role": "system", "content": "Narrate what you see."},
        {"role": "stream", "num_frames": 4, "learn": True, "time": 0.0},
        {"role": "assistant", "content": f"You pick up the {obj}.", "time": 1.5, "learn": True},
        {"role": "stream", "num_frames": 3, "learn": True, "time": 2.0},
        {"role": "assistant", "content": f"You put the {obj} down.", "time": 3.0, "learn": True},
        {"role": "stream", "num_frames": 2, "learn": 1, "time": 3.5},
    ]


def write_dataset(root: Path, count: int = 6, width: int = FEATURE_WIDTH, seed: int = 0,
                  frames: FrameRecord | None = FRAMES) -> dict[str, str]:
    """Write ``train.jsonl``, ``val.jsonl`` and ``features/`` (recording ``frames``) under ``root``;
    return data paths."""
    gen = torch.Generator().manual_seed(seed)
    lines = []
    for i in range(count):
        video = f"clips/v{i}.mp4"
        tokens = torch.randn(9, TOKENS_PER_FRAME, width, generator=gen)
        write_features(feature_path(root / "features", video), tokens, 2.0, video, frames)
        lines.append(json.dumps({"version": 1, "id": f"c{i}", "video": video, "fps": 2.0, "start": 0.0,
                                 "conversation": conversation(i)}))
    (root / "train.jsonl").write_text("\n".join(lines[:-2]) + "\n")
    (root / "val.jsonl").write_text("\n".join(lines[-2:]) + "\n")
    return {"train": str(root / "train.jsonl"), "val": str(root / "val.jsonl"), "features": str(root / "features")}


def tiny_overrides(data: dict[str, str], output_dir: Path, **extra) -> list[str]:
    """Overrides for a tiny features-only run on the data of :func:`write_dataset`."""
    items = {
        "model.preset": "tiny", "model.with_vision": False, "tokenizer.path": "train", "tokenizer.vocab_size": 320,
        "data.train": data["train"], "data.features": data["features"], "optim.lr": 3e-3,
        "optim.batch_size": 2, "optim.warmup_ratio": 0.0, "output_dir": str(output_dir), **extra,
    }
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in items.items()]


@pytest.fixture
def synth_data(tmp_path: Path) -> dict[str, str]:
    return write_dataset(tmp_path / "data")
