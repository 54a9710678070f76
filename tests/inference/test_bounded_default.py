"""Streams are bounded by default: the session start as sink, a window sized from the model."""

from __future__ import annotations

import warnings

import pytest
import torch

from streamvlm.errors import ConfigError, StreamvlmWarning
from streamvlm.inference import GenerationConfig, StreamEngine
from streamvlm.inference.kv_policy import MIN_WINDOW, stream_policy
from streamvlm.inference.layout import LayoutIds
from streamvlm.inference.narration import build_assistant
from tests.helpers import tiny_model
from tests.inference.mocks import bias_tokens


def start_tokens(model) -> int:
    return len(LayoutIds.from_model(model).start)


def test_the_default_budget_is_the_models_then_its_context():
    model = tiny_model(max_positions=512)
    start = start_tokens(model)
    policy = stream_policy(model, None, start)
    assert (policy.sink_tokens, policy.max_tokens) == (start, 512)  # the context
    model.config.stream_kv_budget = 300
    policy = stream_policy(model, None, start)
    assert (policy.sink_tokens, policy.max_tokens) == (start, 300)  # the model's own budget
    assert stream_policy(model, 0, start) is None  # unbounded only when asked
    assert stream_policy(model, 400, start).max_tokens == 400
    assert build_assistant(model).session.engine.kv_policy.sink_tokens == start  # the sink covers the start


def test_a_budget_over_the_context_warns_and_one_too_small_is_refused():
    model = tiny_model(max_positions=512)
    start = start_tokens(model)
    with pytest.warns(StreamvlmWarning, match="exceeds the model's context of 512"):
        assert stream_policy(model, 1024, start).max_tokens == 1024
    with pytest.raises(ConfigError, match=f"use at least {start + MIN_WINDOW}"):
        stream_policy(model, start + MIN_WINDOW - 1, start)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stream_policy(model, start + MIN_WINDOW, start)  # the smallest accepted budget: no warning


def test_an_unbounded_stream_warns_once_when_it_passes_the_context():
    model = tiny_model(max_positions=256)
    bias_tokens(model, interval_id=30.0)  # silent
    session = StreamEngine(model, GenerationConfig()).new_session()
    frames = torch.randn(40, model.config.tokens_per_frame, model.config.llm_hidden_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k, frame in enumerate(frames):
            session.push_frame(frame, k * 0.5)
    said = [str(w.message) for w in caught if issubclass(w.category, StreamvlmWarning)]
    assert len(said) == 1 and "passed the model's context of 256" in said[0]
    assert session.kv_length > 256


@pytest.fixture
def one_thread():
    """One torch thread: 10,000 tiny forwards are dominated by thread hand-offs otherwise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_default_policy_keeps_a_10000_frame_stream_within_context_and_budget(one_thread):
    model = tiny_model(max_positions=384)
    bias_tokens(model, interval_id=30.0)  # silent: frames only, the fastest stream
    session = build_assistant(model).session
    policy = session.engine.kv_policy
    assert policy.max_tokens == 384
    frame = torch.randn(model.config.tokens_per_frame, model.config.llm_hidden_size)
    longest = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", StreamvlmWarning)  # it never passes the context
        for k in range(10_000):
            session.push_frame(frame, k * 0.5)
            longest = max(longest, session.kv_length)
    assert longest <= policy.max_tokens <= session.engine.context
    assert session.evicted_tokens > 10_000 * model.config.tokens_per_frame - 384
    assert session.cache.layers[0].capacity == policy.max_tokens  # allocated once, never grown
