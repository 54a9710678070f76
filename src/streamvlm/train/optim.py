"""The optimizer and learning-rate schedule shared by the training recipe and tower pretraining.

AdamW without weight decay on biases and norms (1-D parameters); a linear warmup from 0 over
``ceil(warmup_ratio * total_steps)`` steps, then cosine decay to 0 at ``total_steps`` (or a
constant rate). Both are stepped once per optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from torch.optim.lr_scheduler import LambdaLR

Schedule = Literal["cosine", "constant"]


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.999), *,
                   own_lr: tuple[Iterable[torch.nn.Parameter], float] | None = None) -> torch.optim.AdamW:
    """AdamW over the parameters that require grad: ``weight_decay`` on matrices (``dim >= 2``),
    none on biases and norms. ``own_lr`` ``(parameters, rate)`` gives those parameters their own
    learning rate (e.g. the connector's), scheduled as the others are."""
    params = [p for p in params if p.requires_grad]
    special = {id(p) for p in own_lr[0]} if own_lr is not None else set()
    groups = []
    for chosen, rate in (([p for p in params if id(p) not in special], lr),
                         ([p for p in params if id(p) in special], own_lr[1] if own_lr else lr)):
        groups += [{"params": [p for p in chosen if p.dim() >= 2], "weight_decay": weight_decay, "lr": rate},
                   {"params": [p for p in chosen if p.dim() < 2], "weight_decay": 0.0, "lr": rate}]
        if own_lr is None:
            break  # two groups, as optimizer states saved before own_lr existed hold
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    """``ceil(warmup_ratio * total_steps)``: the steps whose rate rises linearly from 0."""
    return math.ceil(warmup_ratio * total_steps)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_ratio: float, total_steps: int,
                   schedule: Schedule = "cosine") -> LambdaLR:
    """Linear warmup (``lr * s / warmup`` at step ``s``), then cosine decay to 0 at
    ``total_steps``, or constant. transformers' schedules, so resumed runs load older states."""
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    warmup = warmup_steps(warmup_ratio, total_steps)
    if schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    if schedule != "cosine":
        raise ValueError(f"schedule: expected 'cosine' or 'constant', got {schedule!r}")
    return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
