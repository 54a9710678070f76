"""StreamSession.score_continuations: the log-probability of a reply given the stream so far,
equal to a plain forward over the same tokens, and a stream scored at any point goes on exactly
as one never scored."""

from __future__ import annotations

import pytest
import torch

from streamvlm.engine import GenerationConfig, SinkWindowPolicy, StreamEngine
from tests.engine.mocks import bias_tokens
from tests.helpers import tiny_model


def make_engine(threshold: float = 0.5, kv_policy=None, interval: float = 3.0) -> StreamEngine:
    model = tiny_model("llama")
    bias_tokens(model, interval_id=interval, eos_id=3.0)
    return StreamEngine(model, GenerationConfig(threshold=threshold, max_new_tokens=3), kv_policy=kv_policy)


def frames(engine: StreamEngine, count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    config = engine.model.config
    return [torch.randn(config.tokens_per_frame, config.llm_hidden_size, generator=generator) for _ in range(count)]


def reference_scores(session, frame_list, prompt: list[int], continuations: list[list[int]]) -> list[float]:
    """The same scores from one forward over the whole sequence, no cache: the fed ids (frames as
    their embeddings), the prompt, the continuation."""
    model, ids = session.model, session.ids
    fed = session.trace.fed_ids
    out = []
    for continuation in continuations:
        sequence = fed + prompt + continuation
        with torch.inference_mode():
            embeds = model.build_inputs_embeds(torch.tensor([sequence]), torch.stack(frame_list))
            logits = model.language_model(inputs_embeds=embeds).logits[0].float()
        logits = logits.clone()
        logits[:, ids.frame_id] = -float("inf")
        logprobs = logits.log_softmax(-1)
        start = len(fed) + len(prompt)
        out.append(sum(float(logprobs[start - 1 + k, t]) for k, t in enumerate(continuation)))
    return out


def test_scores_equal_a_plain_forward_after_a_frame_and_after_a_reply():
    engine = make_engine(threshold=0.0, interval=8.0)  # silent unless asked
    session = engine.new_session(record=True)
    model = engine.model
    pushed = frames(engine, 4)
    continuations = [model.renderer.encode_content("pick up the cup") + [session.ids.eos_id],
                     model.renderer.encode_content("so cool") + [session.ids.eos_id], [session.ids.eos_id]]
    for i in range(2):
        assert not session.push_frame(pushed[i], i * 0.5)
    # after a silent frame: the pending interval is replaced by "]\nUser: ..."
    prompt = model.renderer.encode_query_prompt("what now?", after_stream=True)
    got = session.score_continuations("what now?", continuations)
    assert got == pytest.approx(reference_scores(session, pushed[:2], prompt, continuations), abs=1e-4)
    # after a reply: its tail (eos) is fed first, then "\nUser: ..."
    session.push_query("narrate", 1.0)
    session.push_frame(pushed[2], 1.0)
    assert session.pending_ids
    prompt = session.pending_ids + model.renderer.encode_query_prompt("what now?", after_stream=False)
    got = session.score_continuations("what now?", continuations)
    assert got == pytest.approx(reference_scores(session, pushed[:3], prompt, continuations), abs=1e-4)
    # content ids given as ids: the same as text tokenized with its surroundings when they agree
    ids_query = model.renderer.encode_content("what now?")
    assert len(session.score_continuations(ids_query, continuations)) == 3


def test_a_scored_stream_goes_on_bit_identical_to_one_never_scored():
    policy = SinkWindowPolicy(sink_tokens=8, window_tokens=60, chunk_tokens=12)  # evicts, and is full when scored
    engine = make_engine(threshold=0.6, kv_policy=policy)
    scored, plain = engine.new_session(record=True), engine.new_session(record=True)
    pushed = frames(engine, 24, seed=1)
    option = [engine.model.renderer.encode_content("you pick up the cup") + [scored.ids.eos_id]]
    said = {"scored": [], "plain": []}
    for i, frame in enumerate(pushed):
        if i == 9:
            for s in (scored, plain):
                s.push_query("narrate", i * 0.5)
        if i % 3 == 2:
            scored.score_continuations("what now?", option * 2)
        if i == 9:  # a queued query is not seen, and stays queued
            scored.score_continuations("so?", option)
        said["scored"] += [(e.time, e.role, e.token_ids) for e in scored.push_frame(frame, i * 0.5)]
        said["plain"] += [(e.time, e.role, e.token_ids) for e in plain.push_frame(frame, i * 0.5)]
    assert said["scored"] == said["plain"] and any(role == "assistant" for _, role, _ in said["plain"])
    assert plain.evicted_tokens > 0 and scored.kv_length == plain.kv_length <= policy.max_tokens
    for a, b in zip(scored.cache.layers, plain.cache.layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
    for name in ("frames_seen", "evicted_tokens", "llm_calls", "tokens_fed", "pending_ids"):
        assert getattr(scored, name) == getattr(plain, name), name
    assert scored.trace.fed_ids == plain.trace.fed_ids
    assert all(torch.equal(x, y) for x, y in zip(scored.trace.decision_logits, plain.trace.decision_logits))


def test_bad_calls_are_refused():
    engine = make_engine()
    session = engine.new_session()
    with pytest.raises(ValueError, match="no frame"):
        session.score_continuations("what?", [[1]])
    session.push_frame(frames(engine, 1)[0], 0.0)
    with pytest.raises(ValueError, match="at least one id"):
        session.score_continuations("what?", [[1], []])
