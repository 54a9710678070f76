"""Streams are bounded by default: the session start as sink, a window sized from the model."""

from __future__ import annotations

import warnings

import pytest
import torch

from streamvlm.engine import GenerationConfig, StreamEngine
from streamvlm.engine.defaults import resolve_stream
from streamvlm.engine.kv_policy import MIN_WINDOW, SINK_FRAMES, stream_policy
from streamvlm.engine.layout import LayoutIds
from streamvlm.engine.narration import NARRATE_INSTRUCTION
from streamvlm.engine.options import StreamOptions
from streamvlm.errors import ConfigError, StreamvlmWarning
from tests.engine.mocks import bias_tokens
from tests.helpers import tiny_model


def start_tokens(model) -> int:
    return len(LayoutIds.from_model(model).start)


def test_the_default_budget_is_the_models_then_its_context():
    model = tiny_model(max_positions=512)
    start, frame = start_tokens(model), model.config.tokens_per_frame + 1  # a frame and its interval token
    policy = stream_policy(model, None)
    # the context; the sink: the session start and the first SINK_FRAMES frames
    assert (policy.sink_tokens, policy.max_tokens) == (start + SINK_FRAMES * frame, 512)
    model.config.stream_kv_budget = 300
    policy = stream_policy(model, None)
    assert policy.max_tokens == 300  # the model's own budget
    assert stream_policy(model, 0) is None  # unbounded only when asked
    tight = stream_policy(model, start + MIN_WINDOW + 3 * frame + 1)  # room for 3 first frames only
    assert (tight.sink_tokens, tight.window_tokens) == (start + 3 * frame, MIN_WINDOW + 1)
    assert resolve_stream(model).assistant().session.engine.kv_policy.sink_tokens == start + SINK_FRAMES * frame


def test_every_accepted_budget_keeps_streaming_past_its_first_eviction():
    model = tiny_model(max_positions=4096)
    bias_tokens(model, interval_id=1.5, eos_id=2.0)  # speaks now and then, short replies
    start = start_tokens(model)
    frames = torch.randn(120, model.config.tokens_per_frame, model.config.llm_hidden_size,
                         generator=torch.Generator().manual_seed(0))
    for budget in (start + MIN_WINDOW, 256, 384, 512, 1024):
        session = StreamEngine(model, GenerationConfig(threshold=0.9), stream_policy(model, budget)).new_session()
        replies_after = 0
        for k, frame in enumerate(frames):
            events = session.push_frame(frame, k * 0.5)
            replies_after += bool(session.evicted_tokens and events)
            assert session.kv_length <= budget
        assert session.evicted_tokens > 0 and replies_after > 0, budget


def test_a_budget_over_the_context_warns_and_one_too_small_is_refused():
    model = tiny_model(max_positions=512)
    start = start_tokens(model)
    with pytest.warns(StreamvlmWarning, match="exceeds the model's context of 512"):
        assert stream_policy(model, 1024).max_tokens == 1024
    with pytest.raises(ConfigError, match=f"use at least {start + MIN_WINDOW}"):
        stream_policy(model, start + MIN_WINDOW - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stream_policy(model, start + MIN_WINDOW)  # the smallest accepted budget: no warning


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


def test_the_default_policy_keeps_a_2000_frame_stream_within_context_and_budget(one_thread):
    """2,000 frames: about 50 times the context (384 positions) passes through the bounded cache."""
    model = tiny_model(max_positions=384)
    bias_tokens(model, interval_id=30.0)  # silent: frames only, the fastest stream
    session = resolve_stream(model).assistant().session
    policy = session.engine.kv_policy
    assert policy.max_tokens == 384
    frame = torch.randn(model.config.tokens_per_frame, model.config.llm_hidden_size)
    longest = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", StreamvlmWarning)  # it never passes the context
        for k in range(2_000):
            session.push_frame(frame, k * 0.5)
            longest = max(longest, session.kv_length)
    assert longest <= policy.max_tokens <= session.engine.context
    assert session.evicted_tokens > 2_000 * model.config.tokens_per_frame - 384
    assert session.cache.layers[0].capacity == policy.max_tokens  # allocated once, never grown


@pytest.fixture(scope="module")
def two_minute_clip(tmp_path_factory):
    """Frame embeddings (2 fps) of a new 2-minute synthetic clip, from the embedded model's tower."""
    from streamvlm.data.synth import generate_world
    from streamvlm.engine.assistant import encode_images
    from streamvlm.model.default import load_default_model
    from streamvlm.video import open_source

    model = load_default_model()
    world = generate_world(tmp_path_factory.mktemp("clip") / "world", 1, 11, duration=120.0, size=64,
                           split="test", workers=1, progress=False)
    with open_source(world.video_path(world.videos[0].uid), fps=2.0) as source:
        images = [frame.image for frame in source]
    return model, encode_images(model, images)


def test_the_embedded_model_keeps_speaking_well_formed_after_eviction_at_every_budget(two_minute_clip, one_thread):
    model, frames = two_minute_clip
    decode = model.tokenizer.decode
    for budget in (256, 512, 1024):
        session = resolve_stream(model, StreamOptions(kv_budget=budget)).assistant().session
        session.push_query(NARRATE_INSTRUCTION, 0.0)
        after = []
        for k, frame in enumerate(frames):
            events = session.push_frame(frame, k * 0.5)
            if session.evicted_tokens:
                after += [decode(e.token_ids, skip_special_tokens=True).strip() for e in events]
        assert session.evicted_tokens > 0
        well_formed = [text for text in after if text.startswith("You ") and text.endswith(".")]
        assert len(after) >= 5 and len(well_formed) >= 0.8 * len(after), (budget, after)
