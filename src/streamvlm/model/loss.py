"""The streaming loss: LM cross-entropy on replies + weighted cross-entropy on frame decisions.

``loss = sum_i w_i * l_i / N`` over the ``N`` learned positions, with ``w_i = tau`` at learned
frame decisions and 1 elsewhere (as upstream). ``kind`` changes ``l_i`` at frame decisions only:
``ce`` (the paper's choice), ``focal`` (``(1 - p)^gamma * ce``), ``ohem`` (only the hardest
``ohem_keep`` fraction of frame decisions in the batch count; the rest weigh 0).

Training and evaluation compute it through one entry point, :meth:`streamvlm.model.vlm.StreamVLM.loss`
(which knows the frame placeholder id), given the training config's loss section
(:class:`LossOptions`); :func:`streaming_loss` is the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .conversation import IGNORE_INDEX

LossKind = Literal["ce", "focal", "ohem"]


class LossOptions(Protocol):
    """What the loss reads from a config (:class:`streamvlm.train.config.LossSection` fits)."""

    kind: LossKind
    tau: float
    focal_gamma: float
    ohem_keep: float


@dataclass
class LossParts:
    """The total loss and its parts (means of unweighted CE, for logging)."""

    loss: Tensor
    lm_loss: Tensor
    stream_loss: Tensor
    num_lm: int
    num_stream: int


def streaming_loss(
    logits: Tensor,
    labels: Tensor,
    stream_mask: Tensor,
    tau: float = 1.0,
    kind: LossKind = "ce",
    focal_gamma: float = 2.0,
    ohem_keep: float = 0.25,
) -> LossParts:
    """``logits [B, L, V]``, ``labels [B, L]`` (aligned, -100 = ignored), ``stream_mask [B, L]``
    (True at learned frame decisions) -> :class:`LossParts`."""
    logits = logits.float()
    learned = labels != IGNORE_INDEX
    stream = stream_mask & learned
    lm = learned & ~stream
    safe = labels.clamp(min=0)
    ce = F.cross_entropy(logits.flatten(0, 1), safe.flatten(), reduction="none").view_as(labels)
    ce = ce * learned
    stream_term = ce
    if kind == "focal":
        # 1 - p = -expm1(-ce), clamped: (1 - p)^gamma has an infinite slope at p = 1 for gamma < 1,
        # which made the gradient of a perfectly confident decision NaN (0 * inf).
        stream_term = (-torch.expm1(-ce)).clamp(min=1e-12) ** focal_gamma * ce
    elif kind == "ohem":
        n = int(stream.sum())
        keep = torch.zeros_like(stream)
        if n:
            k = max(1, math.ceil(ohem_keep * n))
            hardest = ce[stream].topk(k).indices
            flat = torch.nonzero(stream.flatten()).squeeze(1)[hardest]
            keep.view(-1)[flat] = True
        stream_term = ce * keep
    elif kind != "ce":
        raise ValueError(f"loss kind: expected 'ce', 'focal' or 'ohem', got {kind!r}")
    num = int(learned.sum())
    total = (ce * lm).sum() + tau * (stream_term * stream).sum()
    loss = total / max(num, 1)
    num_lm, num_stream = int(lm.sum()), int(stream.sum())
    lm_loss = (ce * lm).sum() / max(num_lm, 1)
    stream_loss = (ce * stream).sum() / max(num_stream, 1)
    return LossParts(loss, lm_loss.detach(), stream_loss.detach(), num_lm, num_stream)
