"""Bounded KV memory: sink + window eviction with re-rotated keys, on endless streams."""

from __future__ import annotations

import gc
import time
import tracemalloc

import pytest
import torch

from streamvlm.engine import GenerationConfig, RotaryShift, SinkWindowPolicy, StreamEngine
from streamvlm.engine.kv_cache import StreamCache
from streamvlm.errors import ConfigError
from tests.engine.mocks import bias_tokens
from tests.helpers import tiny_model


def test_plan_evicts_in_chunks_after_the_sink():
    policy = SinkWindowPolicy(sink_tokens=4, window_tokens=16, chunk_tokens=8)
    assert policy.max_tokens == 20
    assert policy.plan(18, 2) == (4, 0)
    assert policy.plan(19, 2) == (4, 8)  # one over the budget: a whole chunk goes
    assert policy.plan(20, 12) == (4, 12)
    with pytest.raises(ConfigError, match="window"):
        policy.plan(20, 17)
    with pytest.raises(ConfigError):
        SinkWindowPolicy(sink_tokens=4, window_tokens=0)


@pytest.mark.parametrize("llm", ["llama", "qwen2"])
def test_evicted_cache_keys_match_a_fresh_forward_at_contiguous_positions(llm):
    model = tiny_model(llm)
    lm, rotary = model.language_model, RotaryShift.from_model(model.language_model)
    embeds = torch.randn(1, 40, model.config.llm_hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cache = StreamCache(capacity=40)
        lm(inputs_embeds=embeds, cache=cache, use_cache=True)
        sink = cache.layers[0]._key_buffer[:, :, :5].clone()
        storage = cache.layers[0]._key_buffer.data_ptr()
        cache.evict(start=5, count=17, shift_keys=rotary.shift)
        kept = torch.cat([embeds[:, :5], embeds[:, 22:]], dim=1)
        fresh = StreamCache()
        lm(inputs_embeds=kept, cache=fresh, use_cache=True)
    assert cache.get_seq_length() == 23
    # layer 0 keys depend only on each token and its position: they must be those of the kept sequence
    torch.testing.assert_close(cache.layers[0].keys, fresh.layers[0].keys, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cache.layers[0].values, fresh.layers[0].values)
    assert cache.layers[0]._key_buffer.data_ptr() == storage  # evicted in place: the buffer is the same
    assert torch.equal(cache.layers[0].keys[:, :, :5], sink)  # the sink was not touched


def test_rope_shift_composes_and_ignores_attention_scaling():
    inv_freq = 1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8))
    keys = torch.randn(1, 2, 3, 8)
    shift = RotaryShift(inv_freq)
    torch.testing.assert_close(shift.shift(shift.shift(keys, 37), -37), keys, atol=1e-5, rtol=1e-5)
    assert torch.allclose(shift.shift(keys, 5).norm(dim=-1), keys.norm(dim=-1), atol=1e-5)


def frames(n: int, model, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, model.config.tokens_per_frame, model.config.llm_hidden_size,
                       generator=torch.Generator().manual_seed(seed))


def test_policy_is_exact_before_the_first_eviction():
    model = tiny_model("llama")
    bias_tokens(model, interval_id=8.0, eos_id=3.0)
    gen = GenerationConfig(threshold=0.84, max_new_tokens=4)
    policy = SinkWindowPolicy(sink_tokens=48, window_tokens=120)
    bounded = StreamEngine(model, gen, policy).new_session(record=True)
    unbounded = StreamEngine(model, gen).new_session(record=True)
    for i, f in enumerate(frames(24, model)):
        assert bounded.push_frame(f, float(i)) == unbounded.push_frame(f, float(i))
        if bounded.evicted_tokens:
            break
        torch.testing.assert_close(bounded.trace.decision_logits, unbounded.trace.decision_logits, atol=0, rtol=0)
    assert bounded.evicted_tokens > 0  # the stream did reach the budget
    assert bounded.kv_length <= policy.max_tokens


def cache_bytes(session) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in session.cache.layers)


def run_long_stream(num_frames: int) -> None:
    """A silent model with 1 token per frame on a fake clock at 10 fps: the KV length never
    exceeds the budget; cache bytes, Python objects and per-frame latency stay flat."""
    model = tiny_model("llama", use_pooled=True, pool_size=0, hidden=32, layers=1)
    bias_tokens(model, interval_id=50.0)  # silent: the interval always wins
    policy = SinkWindowPolicy(sink_tokens=40, window_tokens=256)
    session = StreamEngine(model, GenerationConfig(), policy).new_session()
    embeds = frames(64, model)
    warmup, traced = num_frames // 10, 100
    peak_bytes = 0
    for i in range(num_frames):
        if i == warmup:
            gc.collect()
            objects = len(gc.get_objects())
            start = time.perf_counter()
        if i == num_frames - warmup:
            middle = time.perf_counter()
        if i == num_frames - traced:  # tracemalloc is slow: trace the last frames only
            tracemalloc.start()
            heap_before, _ = tracemalloc.get_traced_memory()
        assert session.push_frame(embeds[i % 64], i / 10) == []
        assert session.kv_length <= policy.max_tokens
        peak_bytes = max(peak_bytes, cache_bytes(session))
    heap_after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    end = time.perf_counter()
    gc.collect()
    assert session.frames_seen == num_frames and session.evicted_tokens > num_frames
    per_token = cache_bytes(session) / session.kv_length
    assert peak_bytes <= per_token * policy.max_tokens
    assert len(gc.get_objects()) - objects < 200  # nothing kept per frame
    assert heap_after - heap_before < 32 * 1024
    first = (middle - start) / (num_frames - 2 * warmup)
    last = (end - middle) / warmup
    assert last < 3 * first  # latency flat (generous: the machine is shared)


def test_long_stream_stays_bounded(one_thread):
    run_long_stream(10_000)


@pytest.mark.slow
def test_100k_frame_stream_stays_bounded(one_thread):
    run_long_stream(100_000)
