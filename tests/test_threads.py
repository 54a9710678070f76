"""Thread defaults (streamvlm.threads): derived from the CPUs this process may use, never
oversubscribed, and ``--threads`` on every command that runs a model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streamvlm import threads as th
from streamvlm.cli.flags import parse
from tests.cli.conftest import short_clip  # noqa: F401 (fixture)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


def test_usable_cpus_take_the_affinity_and_the_quota_not_cpu_count(monkeypatch):
    monkeypatch.setattr(th.os, "cpu_count", lambda: 256)
    assert th.usable_cpus(affinity=8, quota=None, processes=1) == 8
    assert th.usable_cpus(affinity=8, quota=2.5, processes=1) == 3  # a quota of 2.5 CPUs: 3 threads
    assert th.usable_cpus(affinity=2, quota=16.0, processes=1) == 2
    assert th.usable_cpus(affinity=16, quota=None, processes=4) == 4  # torchrun: 4 processes share them
    assert th.usable_cpus(affinity=2, quota=None, processes=8) == 1
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: {0, 5, 7}, raising=False)
    monkeypatch.setattr(th, "cgroup_cpus", lambda root=None: None)
    assert th.affinity_cpus() == 3 and th.usable_cpus() == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert th.usable_cpus() == 1


def test_cgroup_quota_v2_v1_and_unlimited(tmp_path, monkeypatch):
    monkeypatch.setattr(th, "_own_cgroup_dirs", lambda root: [root])
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert th.cgroup_cpus(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert th.cgroup_cpus(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert th.cgroup_cpus(tmp_path / "v1") == 4.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert th.cgroup_cpus(tmp_path / "v1") is None
    assert th.cgroup_cpus(tmp_path / "nothing") is None


def test_the_tightest_quota_of_the_cgroup_and_its_parents_wins(tmp_path, monkeypatch):
    leaf = tmp_path / "a" / "b"
    leaf.mkdir(parents=True)
    (tmp_path / "a" / "cpu.max").write_text("200000 100000\n")
    (leaf / "cpu.max").write_text("max 100000\n")
    monkeypatch.setattr(th, "_own_cgroup_dirs", lambda root: [leaf, leaf.parent, root])
    assert th.cgroup_cpus(tmp_path) == 2.0


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256])
def test_defaults_never_oversubscribe(cpus):
    plan = th.plan_threads(cpus=cpus, device="cpu", decoding=True)
    assert plan.origin == "default" and plan.interop_threads == 1
    assert plan.torch_threads >= 1 and plan.decoder_threads >= 1
    # the encoder's and the LM's torch threads may run at once, beside the decoder
    assert 2 * plan.torch_threads + plan.decoder_threads <= max(cpus, 3)
    if cpus >= 4:  # and the cores are used
        assert 2 * plan.torch_threads + plan.decoder_threads >= cpus - 1
    alone = th.plan_threads(cpus=cpus, device="cpu", decoding=False)
    assert alone.torch_threads == cpus
    gpu = th.plan_threads(cpus=cpus, device="cuda:0")
    assert 1 <= gpu.torch_threads <= min(th.GPU_TORCH_THREADS, plan.torch_threads)


def test_defaults_on_small_machines():
    assert (th.plan_threads(cpus=2).torch_threads, th.plan_threads(cpus=2).decoder_threads) == (1, 1)
    assert th.plan_threads(cpus=16).as_dict() == {"cpus": 16, "torch_threads": 7, "interop_threads": 1,
                                                  "decoder_threads": 2, "origin": "default"}
    assert th.plan_threads(cpus=16).describe() == "torch 7 threads (interop 1), decoder 2, 16 CPUs usable (default)"


def test_explicit_threads_and_omp_num_threads_win(monkeypatch):
    assert th.plan_threads(3, cpus=2).torch_threads == 3 and th.plan_threads(3, cpus=2).origin == "--threads"
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    plan = th.plan_threads(cpus=64)
    assert (plan.torch_threads, plan.origin) == (5, "OMP_NUM_THREADS")
    assert th.plan_threads(2, cpus=64).torch_threads == 2  # the flag beats the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert th.plan_threads(cpus=64).origin == "default"
    with pytest.raises(ValueError):
        th.plan_threads(0)


def test_configure_threads_applies_to_torch():
    import torch

    before = torch.get_num_threads()
    try:
        applied = th.configure_threads(1, device="cpu")
        assert torch.get_num_threads() == 1 and applied.torch_threads == 1
        assert applied.interop_threads == torch.get_num_interop_threads()
        applied = th.configure_threads(None, device="cpu", cpus=2)
        assert torch.get_num_threads() == 1 and applied.origin == "default"
    finally:
        torch.set_num_threads(before)


def _options(name: str, argv: list[str]):
    from streamvlm import cli

    return parse(cli.command_module(name).Options, argv, prog=f"streamvlm {name}")


@pytest.mark.parametrize("name, argv", [
    ("narrate", ["clip.mp4"]),
    ("demo", []),
    ("eval", [__file__, "--features", "."]),
    ("serve", []),
    ("bench", []),
])
def test_threads_flag_on_every_model_command(name, argv):
    assert _options(name, [*argv, "--threads", "3"]).model.threads == 3
    assert _options(name, argv).model.threads is None


def test_threads_flag_on_encode_and_training_commands(tmp_path):
    assert _options("encode", [str(tmp_path), "--out", str(tmp_path / "f"), "--threads", "2"]).model.threads == 2
    assert _options("train", ["tiny-synth", "--threads", "2"]).threads == 2
    assert _options("train", ["tiny-synth"]).threads is None
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "world.json").write_text("{}")
    assert _options("pretrain-tower", [str(tmp_path / "w"), "--out", str(tmp_path / "t"),
                                       "--threads", "2"]).threads == 2


def test_bad_threads_are_refused():
    from streamvlm.errors import UserError

    with pytest.raises(UserError, match="--threads"):
        _options("bench", ["--threads", "0"])


def test_parsing_threads_imports_no_torch():
    code = """
import sys
from streamvlm import cli, threads
from streamvlm.cli.flags import parse
parse(cli.command_module("bench").Options, ["--threads", "2"], prog="bench")
threads.plan_threads(cpus=4)
print(sorted(m for m in ("torch", "transformers", "av") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_load_model_sets_the_threads():
    import torch

    from streamvlm.model.loading import ModelSource, load_model

    before = torch.get_num_threads()
    try:
        load_model(ModelSource(device="cpu", threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_video_decoders_use_the_planned_threads(short_clip, monkeypatch):  # noqa: F811
    import streamvlm.threads as threads_module
    from streamvlm.video import open_source

    counts = []
    real = threads_module.decoder_threads

    def spy():
        counts.append(real())
        return counts[-1]

    monkeypatch.setattr("streamvlm.video.decoding.decoder_threads", spy)
    monkeypatch.setattr(threads_module, "_configured",
                        threads_module.plan_threads(None, cpus=32))  # 32 CPUs: 4 decoder threads
    with open_source(short_clip, fps=2) as source:
        assert sum(1 for _ in source) == 12  # 6 s at 2 fps, decoded with 4 FFmpeg threads
    assert counts == [4]
