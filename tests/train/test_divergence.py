"""A NaN/inf loss or gradient stops training with one clear error before anything is saved:
in process, through the CLI (exit 2, one line), and on every rank of a torchrun run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from streamvlm.cli import main
from streamvlm.errors import UserError
from streamvlm.model.vlm import StreamVLM
from streamvlm.settings import apply
from streamvlm.train.config import load_train_config
from streamvlm.train.recipe import TrainingDiverged, train
from streamvlm.train.state import latest_checkpoint

from .conftest import tiny_overrides, write_dataset

# 4 training conversations, 2 per micro-batch: 2 optimizer steps per epoch; a checkpoint every step.
RUN = {"optim.max_steps": 4, "save_every": 1}


class _NanGradient(torch.autograd.Function):
    """Identity forward (the loss stays finite), NaN backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def break_loss_at(monkeypatch, call: int, how: str) -> None:
    """Make the ``call``-th loss computation (1-based) NaN (``how="loss"``) or give it NaN
    gradients (``how="grad"``); the loss goes through its one entry point, ``StreamVLM.loss``."""
    original, calls = StreamVLM.loss, []

    def loss(self, *args, **kwargs):
        parts = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == call:
            parts.loss = parts.loss * float("nan") if how == "loss" else _NanGradient.apply(parts.loss)
        return parts

    monkeypatch.setattr(StreamVLM, "loss", loss)


def checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("checkpoint-*"))


@pytest.mark.parametrize("how", ["loss", "grad"])
def test_non_finite_step_stops_before_saving(tmp_path, synth_data, monkeypatch, how):
    out = tmp_path / "run"
    break_loss_at(monkeypatch, 2, how)  # step 2
    cfg = load_train_config(None, tiny_overrides(synth_data, out, **RUN))
    with pytest.raises(TrainingDiverged) as info:
        train(cfg)
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    assert "step 2" in message and "optim.lr" in message and "lm_loss=" in message and "stream_loss=" in message
    assert ("loss=nan" in message) if how == "loss" else ("grad_norm=nan" in message and "loss=nan" not in message)
    # step 1's checkpoint is intact and the last one; nothing of step 2, no final save
    assert checkpoints(out) == ["checkpoint-000001"]
    assert torch.load(out / "checkpoint-000001" / "trainer_state.pt", weights_only=True)["step"] == 1
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_cli_exits_2_with_one_line(tmp_path, synth_data, monkeypatch, capsys):
    out = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(apply({}, tiny_overrides(synth_data, out))))
    break_loss_at(monkeypatch, 3, "loss")
    overrides = [f"{key}={value}" for key, value in RUN.items()]
    assert main(["train", str(config), *overrides]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [err.strip().splitlines()[-1]] and "Traceback" not in err
    assert errors[0].startswith("streamvlm: error: training diverged at step 3:")
    assert latest_checkpoint(out).name == "checkpoint-000002" and checkpoints(out)[-1] == "checkpoint-000002"


@pytest.mark.parametrize("override, key", [("loss.focal_gamma=-5", "loss.focal_gamma"),
                                           ("loss.ohem_keep=0", "loss.ohem_keep"),
                                           ("loss.tau=-1", "loss.tau"),
                                           ("loss.tau=NaN", "loss.tau"),
                                           ("optim.lr=2", "optim.lr")])
def test_cli_refuses_loss_options_that_could_diverge(tmp_path, synth_data, capsys, override, key):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(apply({}, tiny_overrides(synth_data, tmp_path / "run", **{"loss.kind": "focal"}))))
    assert main(["train", str(config), override]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and key in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


SCRIPT = """
import os, sys
import torch
from streamvlm.cli import main
from streamvlm.model.vlm import StreamVLM

if os.environ["RANK"] == "1":  # only rank 1 sees a NaN loss, at its 2nd micro-batch (step 2)
    original, calls = StreamVLM.loss, []

    def loss(self, *args, **kwargs):
        parts = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            parts.loss = parts.loss * float("nan")
        return parts

    StreamVLM.loss = loss
sys.exit(main(["train", sys.argv[1]]))
"""


def test_torchrun_every_rank_stops(tmp_path):
    data = write_dataset(tmp_path / "data", count=10)  # 8 training conversations
    out = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(apply({}, tiny_overrides(data, out, **{"optim.max_steps": 6, "optim.batch_size": 1,
                                                                         "save_every": 1}))))
    script = tmp_path / "nan_on_rank1.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv_backend", "c10d",
           "--rdzv_endpoint", "localhost:0", str(script), str(config)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode != 0
    # both ranks stopped at step 2 with the error (rank 0's own loss was finite)
    assert result.stderr.count("streamvlm: error: training diverged at step 2:") == 2, result.stderr[-3000:]
    assert checkpoints(out) == ["checkpoint-000001"]
