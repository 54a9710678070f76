"""Random models are built in the dtype and on the device they run in (streamvlm/model/materialise.py):
the memory check counts that dtype, nothing is built in float32 first, and the frame tower and the
connector share the dtype."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from streamvlm.errors import ConfigError
from streamvlm.model import hf_checks
from streamvlm.model.frame_encoder import build_tower
from streamvlm.model.language_model import _causal_lm_builder, build_language_model, llm_hf_config
from streamvlm.model.presets import llama3_8b_config, tiny_config, train_tokenizer
from streamvlm.model.vlm import StreamVLM
from tests.helpers import REPO

GB = 10**9


def llama_8b():
    return llm_hf_config(llama3_8b_config())


def test_memory_check_counts_the_dtype_the_model_is_built_in():
    """bfloat16 weights take half the bytes of float32 ones; the 8B model fits a 24.5 GB machine in
    bfloat16 (16.1 GB) and not in float32 (32.1 GB), as the refusal says."""
    fp32, count32 = hf_checks.model_size(_causal_lm_builder(torch.float32), llama_8b())
    bf16, count16 = hf_checks.model_size(_causal_lm_builder(torch.bfloat16), llama_8b())
    buffers = 2 * 64  # the rotary frequencies (and their original copy): float32 in both
    assert count16 == count32 == 8_030_261_248 + buffers
    assert bf16 == (fp32 - 4 * buffers) // 2 + 4 * buffers  # every weight at half the bytes
    assert hf_checks.format_bytes(bf16) == "16.1 GB" and hf_checks.format_bytes(fp32) == "32.1 GB"


def test_8b_in_bfloat16_passes_the_check_on_a_24gb_machine(monkeypatch):
    monkeypatch.setattr(hf_checks, "available_memory", lambda device=None: (int(24.5 * GB), "cpu"))
    hf_checks.check_model_fits(_causal_lm_builder(torch.bfloat16), llama_8b(), "llm_config", dtype=torch.bfloat16)
    with pytest.raises(ConfigError, match=r"llm_config: the model would have 8,030,261,376 weights \(32.1 GB in "
                                          r"float32\), more than the 24.5 GB of memory available \(cpu\)"):
        hf_checks.check_model_fits(_causal_lm_builder(torch.float32), llama_8b(), "llm_config", dtype=torch.float32)


def test_memory_is_checked_on_the_device_the_model_goes_to(monkeypatch):
    seen = []
    monkeypatch.setattr(hf_checks, "available_memory", lambda device=None: seen.append(device) or None)
    build_language_model(tiny_config(), torch.bfloat16, device="meta")
    assert seen == [torch.device("meta")]


def test_every_part_is_created_in_the_dtype_on_the_device():
    """LM, tower and connector: bfloat16 from the start (a spy on the module constructors' allocations
    sees no float32 weight), on the requested device (here meta: nothing allocated at all)."""
    torch.manual_seed(0)
    model = StreamVLM.from_config(tiny_config(), train_tokenizer(), dtype=torch.bfloat16)
    for name, param in model.named_parameters():
        assert param.dtype == torch.bfloat16, name
    on_meta = StreamVLM.from_config(tiny_config(), train_tokenizer(), dtype=torch.bfloat16, device="meta")
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
    assert {p.dtype for p in on_meta.parameters()} == {torch.bfloat16}


def test_no_float32_copy_is_allocated(monkeypatch):
    """Building a bfloat16 LM allocates bfloat16 tensors only (the rotary frequencies excepted)."""
    allocated = []
    real_empty = torch.empty

    def empty(*args, **kwargs):
        tensor = real_empty(*args, **kwargs)
        if tensor.device.type != "meta" and tensor.numel() > 64:
            allocated.append(tensor.dtype)
        return tensor

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch, "empty_like", lambda t, **kw: empty(t.shape, dtype=kw.get("dtype", t.dtype),
                                                                   device=kw.get("device", t.device)))
    lm = build_language_model(tiny_config(), torch.bfloat16)
    assert lm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert allocated and set(allocated) == {torch.bfloat16}, allocated


@pytest.mark.parametrize("init", ["full", "cheap"])
def test_random_models_are_deterministic_under_a_seed(init):
    def build():
        torch.manual_seed(3)
        lm = build_language_model(tiny_config(), torch.bfloat16, init=init)
        tower, _ = build_tower(tiny_config().vision, torch.bfloat16, init=init)
        return {**lm.state_dict(), **{f"tower.{k}": v for k, v in tower.state_dict().items()}}

    first, second = build(), build()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_cheap_init_fills_matrices_and_leaves_the_rest_to_the_model():
    """Matrices: noise of std 0.02, rows distinct; norms 1, biases 0, rotary frequencies and
    position ids exactly as the full initialisation computes them."""
    torch.manual_seed(0)
    cheap = build_language_model(tiny_config(), init="cheap")
    full = build_language_model(tiny_config(), init="full")
    weight = cheap.get_input_embeddings().weight.detach()
    assert abs(float(weight.std()) - 0.02) < 0.002 and not torch.equal(weight[0], weight[1])
    for (name, value), (_, reference) in zip(cheap.named_buffers(), full.named_buffers()):
        assert torch.equal(value, reference), name
    norms = [p for n, p in cheap.named_parameters() if "norm" in n]
    assert norms and all(torch.equal(p, torch.ones_like(p)) for p in norms)
    tower, _ = build_tower(tiny_config().vision, init="cheap")
    ids = dict(tower.named_buffers())["embeddings.position_ids"]
    assert torch.equal(ids, torch.arange(ids.shape[-1])[None])
    biases = [p.detach() for n, p in tower.named_parameters() if n.endswith("bias")]
    assert biases and all(float(p.abs().max()) < 1e-4 for p in biases)


def run_in_bfloat16(size: str, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-m", "tests.bf16_run", size], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == "", out.stderr[-2000:]  # no warning
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_bfloat16_run(report: dict) -> None:
    """Weights, frames and stream in bfloat16; the process grew by the bfloat16 weights (at most
    1.3 times them plus 150 MB of activations and allocator slack), well below their float32 size
    (building in float32 first needs 1.5 times that)."""
    weights = report["weights"]
    assert report["dtypes"] == ["torch.bfloat16"] and report["frame_dtype"] == "torch.bfloat16"
    grown = report["peak"] - report["baseline"]
    assert grown < 1.3 * weights + 150 * 2**20, (grown / weights, report)
    assert grown < 2 * weights  # the float32 size alone
    assert report["replies"] == 4 and report["batched_replies"] == 2  # a reply at every frame (threshold 1)
    assert report["evicted"] > 0 and report["kv_length"] <= report["kv_max"]


def test_bfloat16_stream_on_cpu_stays_within_the_bfloat16_size():
    """The 8B vocabulary (a 1 GB embedding table and head in float32) with a small trunk: built,
    frames encoded, replies, a bounded KV cache evicting, the batched step."""
    check_bfloat16_run(run_in_bfloat16("medium", timeout=240))


@pytest.mark.slow
def test_8b_shapes_in_bfloat16_on_cpu():
    """The 8B-v1+ shapes (Llama-3-8B, SigLIP-L/16-384) with 2 layers each: 3.1 GB of bfloat16 weights."""
    report = run_in_bfloat16("8b", timeout=600)
    assert 3.0 * GB < report["weights"] < 3.2 * GB
    check_bfloat16_run(report)
