"""The streaming engine: streaming == offline forward, theta, capped replies, sessions, reset."""

from __future__ import annotations

import pytest
import torch

from streamvlm.engine import GenerationConfig, StreamEngine
from streamvlm.model.conversation import ConversationRenderer, Turn
from tests.engine.mocks import FixedDistribution, bias_tokens
from tests.helpers import tiny_model


class ReplyIdsRenderer(ConversationRenderer):
    """Renders content given as a key of ``contents`` from those ids (replies are ids, not text)."""

    def __init__(self, model, contents: dict[str, list[int]]) -> None:
        super().__init__(model.tokenizer, model.config, model.token_ids)
        self.contents = contents

    def fixed_content_ids(self, text: str) -> list[int] | None:
        return self.contents.get(text)


def drive(session, model, frame_tokens, queries):
    """Push frames (and queries ``{frame index: (time, ids)}``) and rebuild the conversation the
    session had, as turns whose contents are keys of the returned id table."""
    turns = [Turn("system", model.config.template.system_prompt)]
    contents: dict[str, list[int]] = {}
    stream = 0

    def close_stream():
        nonlocal stream
        if stream:
            turns.append(Turn("stream", num_frames=stream))
            stream = 0

    def add(event):
        key = f"#{len(contents)}"
        contents[key] = event.token_ids
        close_stream()
        turns.append(Turn(event.role, key))

    for i, tokens in enumerate(frame_tokens):
        time = i * 0.5
        if i in queries:
            session.push_query(queries[i][1], queries[i][0])
        events = session.push_frame(model.project_frames(tokens), time)
        before = [e for e in events if e.time < time and i > 0]
        for e in before:
            add(e)
        stream += 1
        for e in events[len(before):]:
            add(e)
    close_stream()
    return turns, contents


@pytest.mark.parametrize("llm", ["llama", "qwen2"])
def test_streaming_equals_offline_forward(llm):
    model = tiny_model(llm)
    bias_tokens(model, interval_id=8.0, eos_id=3.0)
    session = StreamEngine(model, GenerationConfig(threshold=0.84, max_new_tokens=4)).new_session(record=True)
    frames = torch.randn(12, model.config.tokens_per_frame, model.config.vision_hidden_size,
                         generator=torch.Generator().manual_seed(0)) * 3
    query = model.renderer.encode_content("what")
    # one query between frames (answered before frame 4), one at a frame's time (answered after frame 8)
    turns, contents = drive(session, model, frames, {4: (1.7, query), 8: (4.0, query)})
    roles = [t.role for t in turns]
    assert roles.count("user") == 2 and roles.count("assistant") >= 3 and "stream" in roles

    rendered = ReplyIdsRenderer(model, contents).render(turns)
    fed = session.trace.fed_ids
    assert session.kv_length == len(fed)
    if turns[-1].role == "assistant":  # the reply's eos (after a capped reply: its last token too) is pending
        assert fed + session.pending_ids == rendered.input_ids
    else:  # the renderer closes the stream; the session has an interval pending instead
        assert fed + model.renderer.encode(model.config.template.stream_close) == rendered.input_ids
    with torch.inference_mode():
        ids = torch.tensor([rendered.input_ids])
        embeds = model.build_inputs_embeds(ids, model.project_frames(frames))
        logits = model.language_model(inputs_embeds=embeds).logits[0]
    decided = session.trace.decision_positions
    assert decided and set(decided) <= {d.position for d in rendered.decisions}
    offline = logits[decided].float()
    torch.testing.assert_close(torch.stack(session.trace.decision_logits), offline, atol=1e-4, rtol=1e-4)


def fixed_model(p_interval: float):
    """A model whose every position predicts P(interval) = p_interval, P(eos) = rest."""
    model = tiny_model("llama")
    probs = torch.zeros(model.vocab_size)
    probs[model.token_ids.interval_id] = p_interval
    probs[model.token_ids.eos_id] = 1 - p_interval
    model.language_model = FixedDistribution(model.language_model, probs)
    return model


@pytest.mark.parametrize(("threshold", "speaks"), [(0.725, True), (0.6, False)])
def test_threshold_suppresses_a_weak_interval(threshold, speaks):
    model = fixed_model(0.7)
    session = StreamEngine(model, GenerationConfig(threshold=threshold)).new_session()
    embeds = torch.zeros(model.config.tokens_per_frame, model.config.llm_hidden_size)
    events = session.push_frame(embeds, 0.0)
    assert bool(events) is speaks
    if speaks:  # the reply itself is plain argmax decoding (no threshold): the interval token, up to the cap
        assert events[0].role == "assistant"
        assert events[0].token_ids == [model.token_ids.interval_id] * model.config.reply_cap


def test_talkative_model_is_capped_and_consumes_every_frame():
    model = tiny_model("llama")
    bias_tokens(model, interval_id=-50.0, eos_id=-50.0)  # always speaks, never ends
    session = StreamEngine(model, GenerationConfig(max_new_tokens=3)).new_session(record=True)
    frame = torch.randn(model.config.tokens_per_frame, model.config.llm_hidden_size)
    for i in range(5):
        events = session.push_frame(frame, float(i))
        assert len(events) == 1 and len(events[0].token_ids) == 3
    assert session.frames_seen == 5
    fed = session.trace.fed_ids
    eos = model.token_ids.eos_id
    assert fed.count(eos) == 4  # every capped reply closed by eos (the last one still pending)
    assert fed.count(model.token_ids.frame_id) == 5 * model.config.tokens_per_frame


def test_sessions_are_independent_and_reset_works():
    model = tiny_model("qwen2")
    bias_tokens(model, interval_id=8.0, eos_id=3.0)
    engine = StreamEngine(model, GenerationConfig(threshold=0.84, max_new_tokens=4))
    frames = torch.randn(8, model.config.tokens_per_frame, model.config.llm_hidden_size,
                         generator=torch.Generator().manual_seed(1))

    def run(session):
        return [session.push_frame(f, i * 0.5) for i, f in enumerate(frames)]

    alone = run(engine.new_session())
    a, b = engine.new_session(), engine.new_session()
    interleaved_a, interleaved_b = [], []
    for i, f in enumerate(frames):
        interleaved_a.append(a.push_frame(f, i * 0.5))
        interleaved_b.append(b.push_frame(f, i * 0.5))
    assert interleaved_a == alone and interleaved_b == alone
    assert any(alone) and not all(alone)
    a.reset()
    assert a.kv_length == 0 and a.frames_seen == 0
    assert run(a) == alone


def test_sampling_is_seeded_and_bad_input_refused():
    model = tiny_model("llama")
    bias_tokens(model, interval_id=-50.0)
    gen = GenerationConfig(do_sample=True, temperature=0.8, top_p=0.9, repetition_penalty=1.3, seed=7, max_new_tokens=6)
    frame = torch.randn(model.config.tokens_per_frame, model.config.llm_hidden_size)
    runs = [StreamEngine(model, gen).new_session().push_frame(frame, 0.0) for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0][0].token_ids) >= 1
    session = StreamEngine(model).new_session()
    with pytest.raises(ValueError, match="shape"):
        session.push_frame(frame[:-1], 0.0)
    session.push_frame(frame, 1.0)
    with pytest.raises(ValueError, match="backwards"):
        session.push_frame(frame, 0.5)
    with pytest.raises(ValueError, match="finite"):
        session.push_query([5], float("nan"))


def test_guard_keeps_layout_text_and_repeated_spans_out_of_replies():
    from streamvlm.engine.layout import LayoutIds

    model = tiny_model("llama")
    layout = LayoutIds.from_model(model)
    assert model.token_ids.speak_id in layout.template  # the bracket that closes a stream
    assert set(layout.template) <= set(layout.reply_open_after_stream + layout.user_open_after_stream
                                       + layout.stream_open)
    a, b = [i for i in range(300, model.vocab_size) if i not in layout.template and i != model.token_ids.eos_id][:2]
    probs = torch.zeros(model.vocab_size)
    probs[model.token_ids.speak_id], probs[a], probs[b] = 0.5, 0.3, 0.2  # speaks, then a reply of "]" or a loop
    model.language_model = FixedDistribution(model.language_model, probs)
    frame = torch.zeros(model.config.tokens_per_frame, model.config.llm_hidden_size)

    def reply(guard: bool) -> list[int]:
        session = StreamEngine(model, GenerationConfig(max_new_tokens=8, guard=guard)).new_session()
        (event,) = session.push_frame(frame, 0.0)
        return event.token_ids

    assert reply(False) == [model.token_ids.speak_id] * 8  # template text, unguarded
    guarded = reply(True)
    assert len(guarded) == 8 and not set(guarded) & set(layout.template)
    spans = [tuple(guarded[i:i + 3]) for i in range(len(guarded) - 2)]
    assert guarded[:5] == [a, a, a, b, a] and len(set(spans)) == len(spans)  # no 3-token span twice
