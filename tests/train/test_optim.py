"""The optimizer and schedule shared by the recipe and tower pretraining."""

from __future__ import annotations

import math

import pytest
import torch

from streamvlm.train.optim import make_optimizer, make_scheduler


def lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_optimizer_decays_matrices_only_and_skips_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    model[2].requires_grad_(False)
    optimizer = make_optimizer(model.parameters(), lr=0.1, weight_decay=0.01, betas=(0.8, 0.9))
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [(3, 4)] and decayed["weight_decay"] == 0.01
    assert [p.shape for p in plain["params"]] == [(3,), (3,), (3,)] and plain["weight_decay"] == 0.0
    assert decayed["betas"] == (0.8, 0.9) and decayed["lr"] == 0.1


def test_cosine_schedule_warms_up_over_ceil_ratio_steps_then_decays_to_zero():
    param = torch.nn.Parameter(torch.zeros(2, 2))
    scheduler = make_scheduler(make_optimizer([param], lr=1.0, weight_decay=0.0), 0.05, 30)
    got = lrs(scheduler, 31)
    warmup = math.ceil(0.05 * 30)  # 2
    want = [s / warmup for s in range(warmup)]
    want += [0.5 * (1 + math.cos(math.pi * (s - warmup) / (30 - warmup))) for s in range(warmup, 31)]
    assert got == pytest.approx(want, abs=1e-12)
    assert got[30] == pytest.approx(0.0, abs=1e-12)


def test_constant_schedule():
    param = torch.nn.Parameter(torch.zeros(2, 2))
    scheduler = make_scheduler(make_optimizer([param], lr=0.5, weight_decay=0.0), 0.25, 8, "constant")
    assert lrs(scheduler, 6) == pytest.approx([0.0, 0.25, 0.5, 0.5, 0.5, 0.5])


def test_own_learning_rate_for_some_parameters_follows_the_same_schedule():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = make_optimizer(model.parameters(), lr=0.1, weight_decay=0.01, own_lr=(model[1].parameters(), 0.5))
    groups = [(tuple(p.shape for p in g["params"]), g["lr"], g["weight_decay"]) for g in optimizer.param_groups]
    assert groups == [(((3, 4),), 0.1, 0.01), (((3,),), 0.1, 0.0), (((2, 3),), 0.5, 0.01), (((2,),), 0.5, 0.0)]
    scheduler = make_scheduler(optimizer, 0.5, 4)
    scheduler.optimizer.step()
    scheduler.step()  # halfway through the warmup: every rate at half its peak
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.05, 0.25, 0.25])
