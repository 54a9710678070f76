"""The batched step (engine/batch.py) equals stepping each session alone: events, fed ids,
decision logits, counters and caches, for ragged sessions, joins and leaves, replies, queries and
bounded KV."""

from __future__ import annotations

import pytest
import torch

from streamvlm.engine import GenerationConfig, SinkWindowPolicy, StreamEngine
from streamvlm.engine import batch as batch_module
from streamvlm.engine.batch import push_frames
from tests.engine.mocks import bias_tokens
from tests.helpers import tiny_model

ATOL = 1e-5


@pytest.fixture
def batch_sizes(monkeypatch):
    """``{"frame": [...], "text": [...]}``: the batch sizes of the forwards that fed frames and of
    those that fed only text (query prompts, reply prompts, reply tokens), in order (sessions
    stepped alone with ``push_frame`` are not counted)."""
    sizes = {"frame": [], "text": []}
    forward = batch_module._forward_batch

    def spy(sessions, prefixes, frames):
        sizes["frame" if any(f is not None for f in frames) else "text"].append(len(sessions))
        return forward(sessions, prefixes, frames)

    monkeypatch.setattr(batch_module, "_forward_batch", spy)
    return sizes


def make_engine(llm="llama", threshold=0.84, kv_policy=None, system_prompt_ids=None, bias=None):
    model = tiny_model(llm)
    bias_tokens(model, **(bias or dict(interval_id=8.0, eos_id=3.0)))
    return StreamEngine(model, GenerationConfig(threshold=threshold, max_new_tokens=4), kv_policy=kv_policy,
                        system_prompt_ids=system_prompt_ids)


def frames_for(model, n, seed):
    return torch.randn(n, model.config.tokens_per_frame, model.config.llm_hidden_size,
                       generator=torch.Generator().manual_seed(seed)) * 2


def run_both(engine, schedule, queries=None):
    """``schedule``: a list of steps, each ``{name: frame index}`` (sessions present in that step);
    a session's frames are its own (seeded by name), at 0.5 s apart from its first frame.
    ``queries``: ``{(step, name): (time offset, text)}`` pushed before that step. Returns the
    batched and the alone sessions, and their events per step."""
    queries = queries or {}
    model = engine.model
    names = sorted({n for step in schedule for n in step})
    frames = {n: frames_for(model, 1 + max(s.get(n, 0) for s in schedule), seed=k) for k, n in enumerate(names)}
    batched = {n: engine.new_session(record=True) for n in names}
    alone = {n: engine.new_session(record=True) for n in names}
    events_b, events_a = [], []
    for k, step in enumerate(schedule):
        for name in step:
            if (k, name) in queries:
                offset, text = queries[(k, name)]
                for s in (batched[name], alone[name]):
                    s.push_query(text, step[name] * 0.5 + offset)
        order = list(step)
        out = push_frames([batched[n] for n in order], [frames[n][step[n]] for n in order],
                          [step[n] * 0.5 for n in order])
        events_b.append(dict(zip(order, out)))
        events_a.append({n: alone[n].push_frame(frames[n][step[n]], step[n] * 0.5) for n in order})
    return batched, alone, events_b, events_a


def assert_same(batched, alone, events_b, events_a):
    assert events_b == events_a
    worst = 0.0
    for name in batched:
        b, a = batched[name], alone[name]
        assert b.trace.fed_ids == a.trace.fed_ids
        assert b.trace.decision_positions == a.trace.decision_positions
        assert b.pending_ids == a.pending_ids
        assert (b.frames_seen, b.kv_length, b.llm_calls, b.tokens_fed, b.evicted_tokens) == \
               (a.frames_seen, a.kv_length, a.llm_calls, a.tokens_fed, a.evicted_tokens)
        for x, y in zip(b.trace.decision_logits, a.trace.decision_logits):
            torch.testing.assert_close(x, y, atol=ATOL, rtol=0)
            worst = max(worst, float((x - y).abs().max()))
        for lb, la in zip(b.cache.layers, a.cache.layers):
            assert not torch.isnan(lb.keys).any()
            torch.testing.assert_close(lb.keys, la.keys, atol=ATOL, rtol=0)
            torch.testing.assert_close(lb.values, la.values, atol=ATOL, rtol=0)
    return worst


@pytest.mark.parametrize("llm", ["llama", "qwen2"])
def test_ragged_sessions_join_and_leave(llm, batch_sizes):
    engine = make_engine(llm)
    # a starts first, b joins at step 2, c at step 3; a leaves after step 4, d joins then
    schedule = [{"a": 0}, {"a": 1}, {"a": 2, "b": 0}, {"b": 1, "a": 3, "c": 0}, {"a": 4, "c": 1, "b": 2},
                {"c": 2, "b": 3, "d": 0}, {"d": 1, "b": 4, "c": 3}, {"b": 5, "c": 4, "d": 2}]
    batched, alone, events_b, events_a = run_both(engine, schedule)
    assert_same(batched, alone, events_b, events_a)
    assert len({s.kv_length for s in batched.values()}) > 1  # ragged caches
    assert batch_sizes["frame"] == [2, 3, 3, 3, 3, 3]  # the steps of one session are stepped alone
    assert sum(s.llm_calls for s in batched.values()) > sum(s.frames_seen for s in batched.values())  # replies


def test_all_start_together_unpadded():
    engine = make_engine(bias=dict(interval_id=20.0))  # always silent: the rows stay aligned, no mask is needed
    schedule = [{"a": i, "b": i, "c": i} for i in range(4)]
    batched, alone, events_b, events_a = run_both(engine, schedule)
    assert_same(batched, alone, events_b, events_a)
    assert all(not e for step in events_b for e in step.values())


def test_speaking_sessions_in_a_batch(batch_sizes):
    engine = make_engine(bias=dict(interval_id=-50.0, eos_id=-50.0))  # always speaks, replies capped at 4 tokens
    schedule = [{"a": 0}, {"a": 1, "b": 0}, {"a": 2, "b": 1, "c": 0}, {"c": 1, "a": 3}]
    batched, alone, events_b, events_a = run_both(engine, schedule)
    assert_same(batched, alone, events_b, events_a)
    replies = [e for step in events_b for evs in step.values() for e in evs]
    assert len(replies) == 8 and all(e.role == "assistant" and len(e.token_ids) == 4 for e in replies)
    # the replies are decoded together: a prompt forward and 3 token forwards per batched step
    assert batch_sizes["text"] == [2] * 4 + [3] * 4 + [2] * 4


def test_sampled_replies_decoded_together_equal_alone():
    model = tiny_model("llama")
    bias_tokens(model, interval_id=-50.0, eos_id=8.0)
    engine = StreamEngine(model, GenerationConfig(do_sample=True, temperature=1.5, top_p=0.9, seed=7, max_new_tokens=6))
    schedule = [{"a": i, "b": i, "c": i} for i in range(3)]
    batched, alone, events_b, events_a = run_both(engine, schedule)
    assert_same(batched, alone, events_b, events_a)
    lengths = {len(e.token_ids) for step in events_b for evs in step.values() for e in evs}
    assert len(lengths) > 1  # replies of different lengths left the batch at different tokens


def test_a_fresh_session_shorter_than_a_reply_tail():
    # no system prompt: a fresh session feeds 3 ids before its frame, a session after a capped reply
    # 4 (its last token, eos, the stream opening); the fresh row's first input column is a pad with
    # nothing to attend to, and must not spoil anything
    engine = make_engine(system_prompt_ids=[], bias=dict(interval_id=-50.0, eos_id=-50.0))
    assert len(engine.layout.start) < 2 + len(engine.layout.stream_open)
    schedule = [{"a": 0}, {"a": 1, "b": 0}, {"b": 1, "a": 2, "c": 0}]
    assert_same(*run_both(engine, schedule))


def test_sliding_window_models_step_alone(batch_sizes):
    engine = make_engine("mistral")  # a 4096-token window on every layer
    schedule = [{"a": i, "b": i} for i in range(3)]
    assert_same(*run_both(engine, schedule))
    assert batch_sizes == {"frame": [], "text": []}


def test_queries_before_and_at_a_frame(batch_sizes):
    engine = make_engine()
    schedule = [{"a": i, "b": i, "c": i} for i in range(6)]
    queries = {(2, "a"): (-0.2, "what"), (3, "b"): (0.0, "narrate"), (3, "c"): (0.3, "so what")}
    batched, alone, events_b, events_a = run_both(engine, schedule, queries)
    assert_same(batched, alone, events_b, events_a)
    users = [(k, n) for k, step in enumerate(events_b) for n, evs in step.items() for e in evs if e.role == "user"]
    assert users == [(2, "a"), (3, "b"), (4, "c")]
    assert batch_sizes["frame"] == [3] * 6  # a session answering a query stays in the frame's batch


def test_queries_and_replies_decoded_in_one_forward(batch_sizes):
    engine = make_engine(bias=dict(interval_id=-50.0, eos_id=-50.0))  # a speaks at every frame
    schedule = [{"a": i, "b": i, "c": i} for i in range(2)]
    # at step 1, b and c are asked at the frame's time (answered after it, in place of the decision),
    # c twice; a decides to speak: a's reply and b's and c's answers share each forward
    queries = {(1, "b"): (0.0, "what"), (1, "c"): (0.0, "so what")}
    model = engine.model
    batched, alone, events_b, events_a = run_both(engine, schedule, queries)
    for s in (batched["c"], alone["c"]):
        s.push_query("and then", 0.6)
    frame = frames_for(model, 3, seed=9)[2]
    events_b.append(dict(zip("abc", push_frames([batched[n] for n in "abc"], [frame] * 3, [1.0] * 3))))
    events_a.append({n: alone[n].push_frame(frame, 1.0) for n in "abc"})
    assert_same(batched, alone, events_b, events_a)
    assert [e.role for e in events_b[1]["b"]] == ["user", "assistant"]
    assert [e.role for e in events_b[2]["c"]] == ["user", "assistant", "assistant"]  # asked before, then speaks
    assert 3 in batch_sizes["text"]


def test_bounded_kv_is_exact():
    policy = SinkWindowPolicy(sink_tokens=8, window_tokens=48, chunk_tokens=12)
    engine = make_engine(kv_policy=policy)
    schedule = [{"a": i, **({"b": i - 2} if i >= 2 else {})} for i in range(10)]
    batched, alone, events_b, events_a = run_both(engine, schedule)
    assert_same(batched, alone, events_b, events_a)
    assert batched["a"].evicted_tokens > 0 and all(s.kv_length <= policy.max_tokens for s in batched.values())


def test_bad_input_refused_before_any_change():
    engine = make_engine()
    model = engine.model
    a, b = engine.new_session(), engine.new_session()
    frame = frames_for(model, 1, 0)[0]
    with pytest.raises(ValueError, match="shape"):
        push_frames([a, b], [frame, frame[:3]], [0.0, 0.0])
    with pytest.raises(ValueError, match="twice"):
        push_frames([a, a], [frame, frame], [0.0, 0.0])
    push_frames([a, b], [frame, frame], [1.0, 1.0])
    with pytest.raises(ValueError, match="backwards"):
        push_frames([a, b], [frame, frame], [2.0, 0.5])
    assert a.frames_seen == b.frames_seen == 1
    assert push_frames([], [], []) == []


def test_a_failing_reply_leaves_the_other_sessions_stepped():
    engine = make_engine(bias=dict(interval_id=-50.0, eos_id=-50.0))  # always speaks
    frame = frames_for(engine.model, 1, 0)[0]
    a, b, b_alone = engine.new_session(), engine.new_session(), engine.new_session()

    def hang_up(ids):
        raise ConnectionError("gone")

    a.on_token = hang_up
    with pytest.raises(ConnectionError):
        push_frames([a, b], [frame, frame], [0.0, 0.0])
    b_alone.push_frame(frame, 0.0)
    assert (b.frames_seen, b.kv_length, b.pending_ids) == (b_alone.frames_seen, b_alone.kv_length, b_alone.pending_ids)
    assert a.frames_seen == 1
