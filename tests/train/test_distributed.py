"""Data parallel on 2 CPU processes (torchrun, gloo): loss falls, rank 0 alone writes, shards differ."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from streamvlm.settings import apply
from streamvlm.train.recipe import epoch_batches

from .conftest import tiny_overrides, write_dataset


def test_shards_are_disjoint_and_equal_in_length():
    shards = [epoch_batches(7, 2, epoch=3, seed=1, rank=r, world=2) for r in range(2)]
    flat = [[i for b in s for i in b] for s in shards]
    assert len(shards[0]) == len(shards[1]) and len(flat[0]) == 3
    assert not set(flat[0]) & set(flat[1])
    assert epoch_batches(7, 2, 3, 1, 0, 2) == shards[0]  # a pure function of (seed, epoch)
    assert epoch_batches(7, 2, 4, 1, 0, 2) != shards[0]


def test_torchrun_two_cpu_processes(tmp_path):
    data = write_dataset(tmp_path / "data", count=10)  # 8 training conversations
    out = tmp_path / "run"
    config = tmp_path / "config.json"
    overrides = tiny_overrides(data, out, **{"optim.max_steps": 6, "optim.batch_size": 1, "save_every": 3})
    config.write_text(json.dumps(apply({}, overrides)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv_backend", "c10d",
           "--rdzv_endpoint", "localhost:0", "-m", "streamvlm.cli", "train", str(config)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 process(es)" in result.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))  # rank 0 alone writes: no duplicated lines
    assert all(r["conversations"] == 2 for r in records)  # one conversation per rank per step
    assert records[3]["epoch"] == 1.0  # 8 conversations / 2 ranks = 4 steps per epoch: shards differ
    assert records[-1]["loss"] < records[0]["loss"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000003", "checkpoint-000006"]
