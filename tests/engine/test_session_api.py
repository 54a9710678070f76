"""The session's public stages: composed by hand they are ``push_frame``; the decision reports its
scores; theta is set between frames; the read-only state says where the stream is."""

from __future__ import annotations

import math

import pytest
import torch

from streamvlm.engine import GenerationConfig, StreamEngine
from streamvlm.engine.session import Event
from streamvlm.model.decision import frame_scores
from tests.engine.mocks import FixedDistribution, bias_tokens
from tests.helpers import tiny_model


def frames_of(model, count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(model.config.tokens_per_frame, model.config.llm_hidden_size, generator=generator)
            for _ in range(count)]


def step_by_stages(session, frame, time):
    """``push_frame`` written with the public stages only (the contract the batched step relies on)."""
    session.check_frame(frame, time, where="test")
    index = session.begin_frame(time)
    events = session.answer_queries(time, inclusive=False, index=index) if index > 0 else []
    logits = session.feed(session.frame_prefix(), frame)
    session.frame_fed()
    if session.has_query_due(time):
        return events + session.answer_queries(time, inclusive=True, index=index)
    decision = session.decide(logits)
    if decision.speak:
        reply = session.reply(list(session.ids.reply_open_after_stream))
        events.append(Event(float(time), "assistant", reply, index))
    return events


def test_the_public_stages_compose_to_push_frame():
    model = tiny_model("llama")
    bias_tokens(model, interval_id=3.0, eos_id=3.0)
    engine = StreamEngine(model, GenerationConfig(threshold=0.7, max_new_tokens=3))
    by_stages, pushed = engine.new_session(record=True), engine.new_session(record=True)
    frames = frames_of(model, 10, seed=3)
    said = {"stages": [], "push": []}
    for i, frame in enumerate(frames):
        if i in (3, 6):
            for session in (by_stages, pushed):
                session.push_query("what is this?", i * 0.5 - (0.25 if i == 3 else 0.0))
        said["stages"] += step_by_stages(by_stages, frame, i * 0.5)
        said["push"] += pushed.push_frame(frame, i * 0.5)
    assert said["stages"] == said["push"]
    assert {e.role for e in said["push"]} == {"user", "assistant"}
    assert by_stages.trace.fed_ids == pushed.trace.fed_ids
    for name in ("frames_seen", "kv_length", "pending_ids", "last_time", "state", "llm_calls", "tokens_fed"):
        assert getattr(by_stages, name) == getattr(pushed, name), name


def test_read_only_state_follows_the_stream():
    model = tiny_model("llama")
    bias_tokens(model, interval_id=8.0)  # silent
    session = StreamEngine(model, GenerationConfig(threshold=0.0)).new_session()
    assert session.state == "start" and session.last_time == -math.inf and session.queued_queries == ()
    session.push_query("hello?", 1.0)
    assert [q.text for q in session.queued_queries] == ["hello?"]
    frame = frames_of(model, 1)[0]
    session.push_frame(frame, 0.5)
    assert session.state == "stream" and session.last_time == 0.5
    assert session.pending_ids == [model.token_ids.interval_id] and session.has_query_due(1.0)
    events = session.push_frame(frame, 1.0)  # the query at this frame's time: answered after it
    assert [e.role for e in events] == ["user", "assistant"] and session.state == "reply"
    assert session.queued_queries == () and session.pending_ids[-1] == model.token_ids.eos_id


def test_decide_reports_the_scores_it_decided_on():
    model = tiny_model("llama")
    probs = torch.zeros(model.vocab_size)
    probs[model.token_ids.interval_id], probs[model.token_ids.eos_id] = 0.7, 0.3
    model.language_model = FixedDistribution(model.language_model, probs)
    session = StreamEngine(model, GenerationConfig(threshold=0.725)).new_session()
    session.begin_frame(0.0)
    logits = session.feed(session.frame_prefix(), frames_of(model, 1)[0])
    session.frame_fed()
    decision = session.decide(logits)
    assert decision.speak and decision.threshold == 0.725
    assert decision.score == frame_scores(logits[None], model.token_ids.silence_id)[0]
    assert decision.score.p_interval == pytest.approx(0.7) and decision.score.interval_is_argmax
    assert session.pending_ids == []  # speaking: the reply is decoded next, nothing pending


def test_threshold_is_set_between_frames():
    """theta set on a session changes its next decisions, and only its own (the server's config message)."""
    model = tiny_model("llama")
    probs = torch.zeros(model.vocab_size)
    probs[model.token_ids.interval_id], probs[model.token_ids.eos_id] = 0.7, 0.3
    model.language_model = FixedDistribution(model.language_model, probs)
    engine = StreamEngine(model, GenerationConfig(threshold=0.6, max_new_tokens=2))
    session, other = engine.new_session(), engine.new_session()
    frame = frames_of(model, 1)[0]
    assert session.push_frame(frame, 0.0) == [] and session.threshold == 0.6
    session.set_threshold(0.725)
    assert session.threshold == 0.725 and session.generation.threshold == 0.725
    assert [e.role for e in session.push_frame(frame, 0.5)] == ["assistant"]
    assert other.push_frame(frame, 0.0) == [] and engine.generation.threshold == 0.6
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            session.set_threshold(bad)
    assert session.threshold == 0.725
    session.reset()  # forgets the stream, keeps theta
    assert session.threshold == 0.725 and session.frames_seen == 0
