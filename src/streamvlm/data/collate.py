"""Batching rendered conversations with padding, for training and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..model.conversation import IGNORE_INDEX, RenderedConversation


@dataclass
class Sample:
    """One training sample: a rendered conversation and its frames.

    ``frames`` holds one entry per frame placeholder group, in order: pre-extracted frame tokens
    ``[N, T, D_vision]`` (float) or normalised pixels ``[N, 3, S, S]``.
    """

    rendered: RenderedConversation
    frames: Tensor | None
    key: str = ""


@dataclass
class Batch:
    """``input_ids``/``attention_mask``/``labels``: ``[B, L]`` (right-padded; pads are not learned);
    ``frames``: all samples' frames concatenated in reading order (``[sum N, ...]``) or None."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    frames: Tensor | None
    keys: list[str]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device),
            None if self.frames is None else self.frames.to(device), self.keys,
        )


def collate(samples: Sequence[Sample], pad_id: int) -> Batch:
    if not samples:
        raise ValueError("collate: no samples")
    length = max(len(s.rendered.input_ids) for s in samples)
    b = len(samples)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((b, length), dtype=torch.long)
    for i, s in enumerate(samples):
        n = len(s.rendered.input_ids)
        input_ids[i, :n] = torch.tensor(s.rendered.input_ids)
        labels[i, :n] = torch.tensor(s.rendered.labels)
        attention_mask[i, :n] = 1
        got = 0 if s.frames is None else s.frames.shape[0]
        if got != s.rendered.num_frames:
            raise ValueError(f"sample {s.key or i}: conversation has {s.rendered.num_frames} frames, {got} given")
    frames = [s.frames for s in samples if s.frames is not None and s.frames.shape[0]]
    return Batch(input_ids, attention_mask, labels, torch.cat(frames) if frames else None, [s.key for s in samples])
