"""Pretrain a small vision tower on the synthetic world's frames.

The real model starts from a pretrained SigLIP; a tower built from scratch for the synthetic
world needs its own pretraining, or the language model has to discover colours and objects
through the sparse signal of a few reply words. Here the tower learns to tell, from one frame,
the object in the hand, the action under way, the object it acts on and its target (the
world's ground truth, :mod:`streamvlm.data.synth.labels`), through linear heads on exactly the
frame tokens the language model will see (pooled token + pooled grid, ``[N, T, D]``). The
optimizer and schedule are the training recipe's (:mod:`streamvlm.train.optim`: AdamW without
decay on biases and norms, linear warmup from 0, cosine decay to 0), with gradients clipped to 1.

The result is a frame-encoder folder (:func:`streamvlm.frame_encoder.save_frame_encoder`) that
``streamvlm encode --model`` reads and that a training config names with
``model.config.vision.name_or_path``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..config import VisionConfig
from ..data.synth.labels import LABEL_FIELDS, frame_labels
from ..data.synth.spec import SynthWorld
from ..errors import DataError
from ..frame_encoder import FrameEncoder, save_frame_encoder
from ..video import open_source
from .config import TowerPretrainOptions
from .optim import make_optimizer, make_scheduler


def load_world_frames(world_dir: str | Path, fps: float, image_size: int, *,
                      progress: bool = True) -> tuple[Tensor, Tensor]:
    """Decode every video of a synthetic world at ``fps`` -> uint8 frames ``[N, H, W, 3]`` and
    their labels int64 ``[N, F]`` (columns: :data:`~streamvlm.data.synth.labels.LABEL_FIELDS`)."""
    from tqdm.auto import tqdm

    world = SynthWorld.load(world_dir)
    images, labels = [], []
    for spec in tqdm(world.videos, desc=f"decode {Path(world_dir).name}", unit="video", disable=not progress):
        path = world.video_path(spec.uid)
        if not path.is_file():
            raise DataError("video listed in world.json is missing", file=str(path))
        with open_source(path, fps=fps, max_side=image_size, allow_urls=False) as source:
            frames = list(source)
        images += [f.image for f in frames]
        labels.append(frame_labels(spec, [f.time for f in frames]))
    if not images:
        raise DataError("no frames decoded", file=str(world_dir))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.concatenate(labels))


class LabelHeads(nn.Module):
    """One linear classifier per label field over the flattened frame tokens.
    ``[N, T, D]`` -> logits ``[N, sum(classes)]`` (split with :meth:`split`)."""

    def __init__(self, tokens_per_frame: int, hidden_size: int) -> None:
        super().__init__()
        self.sizes = [len(classes) for classes in LABEL_FIELDS.values()]
        self.linear = nn.Linear(tokens_per_frame * hidden_size, sum(self.sizes))

    def forward(self, tokens: Tensor) -> list[Tensor]:
        return list(self.linear(tokens.flatten(1)).split(self.sizes, dim=-1))


def _loss_and_hits(encoder: FrameEncoder, heads: LabelHeads, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy over fields (mean over frames), and hits ``[F]`` per field."""
    logits = heads(encoder(encoder.preprocess(images)))
    loss = sum(nn.functional.cross_entropy(lg, labels[:, i]) for i, lg in enumerate(logits))
    hits = torch.stack([(lg.argmax(-1) == labels[:, i]).sum() for i, lg in enumerate(logits)])
    return loss, hits


@torch.no_grad()
def label_accuracy(encoder: FrameEncoder, heads: LabelHeads, images: Tensor, labels: Tensor,
                   batch_size: int = 256) -> dict[str, float]:
    """Per-field accuracy of the heads on ``images``."""
    encoder.eval()
    hits = torch.zeros(len(LABEL_FIELDS))
    for i in range(0, len(images), batch_size):
        hits += _loss_and_hits(encoder, heads, images[i:i + batch_size], labels[i:i + batch_size])[1].float()
    encoder.train()
    return {name: float(h) / len(images) for name, h in zip(LABEL_FIELDS, hits)}


def pretrain_tower(vision: VisionConfig, train_world: str | Path, out_dir: str | Path, *,
                   heldout_world: str | Path | None = None, options: TowerPretrainOptions | None = None,
                   progress: bool = True) -> dict:
    """Train a tower built from ``vision`` on ``train_world``'s frames and save it to ``out_dir``.

    Returns (and writes to ``out_dir/pretrain.json``) the options, the first and final (smoothed)
    training loss and per-field accuracy on ``heldout_world`` when given.
    """
    from tqdm.auto import tqdm

    opt = options or TowerPretrainOptions()
    torch.manual_seed(opt.seed)
    encoder = FrameEncoder.from_config(vision)
    heads = LabelHeads(encoder.tokens_per_frame, encoder.hidden_size)
    images, labels = load_world_frames(train_world, opt.fps, encoder.image_size, progress=progress)
    params = [p for m in (encoder, heads) for p in m.parameters()]
    total = math.ceil(len(images) / opt.batch_size) * opt.epochs
    optimizer = make_optimizer(params, opt.lr, opt.weight_decay)  # the training recipe's AdamW and schedule
    schedule = make_scheduler(optimizer, opt.warmup_ratio, total, "cosine")
    generator = torch.Generator().manual_seed(opt.seed)
    encoder.train()
    start, running, first = time.monotonic(), None, None
    bar = tqdm(total=total, desc="pretrain tower", unit="step", disable=not progress, dynamic_ncols=True)
    for _ in range(opt.epochs):
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(images), opt.batch_size):
            idx = order[i:i + opt.batch_size]
            loss, _ = _loss_and_hits(encoder, heads, images[idx], labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            value = loss.item()
            first = value if first is None else first
            running = value if running is None else 0.95 * running + 0.05 * value
            bar.set_postfix(loss=f"{running:.3f}")
            bar.update()
    bar.close()
    report: dict = {"options": asdict(opt), "frames": len(images), "steps": total, "first_loss": first,
                    "final_loss": running, "minutes": round((time.monotonic() - start) / 60, 2)}
    if heldout_world is not None:
        h_images, h_labels = load_world_frames(heldout_world, opt.fps, encoder.image_size, progress=progress)
        report["heldout_accuracy"] = label_accuracy(encoder, heads, h_images, h_labels)
    out = Path(out_dir)
    save_frame_encoder(encoder, out)
    (out / "pretrain.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
