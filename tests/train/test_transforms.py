"""The data methods as conversation transforms, pinned on a small conversation."""

from __future__ import annotations

from streamvlm.model.conversation import Turn, validate_turns
from streamvlm.train.transforms import interleaved, per_frame, streaming

CONVERSATION = [
    Turn("system", "Narrate."),
    Turn("stream", time=0.0, num_frames=3, learn=True),
    Turn("assistant", "You pick up the cup.", time=1.0, learn=True),
    Turn("stream", time=1.5, num_frames=2, learn=1),
    Turn("user", "What now?", time=2.5),
    Turn("assistant", "The cup.", time=2.5, learn=True),
]


def test_streaming_is_identity():
    assert streaming(CONVERSATION) == CONVERSATION


def test_interleaved_learns_no_frame_decision():
    out = interleaved(CONVERSATION)
    assert [t.learn for t in out] == [False, False, True, False, False, True]
    assert [(t.role, t.content, t.num_frames, t.time) for t in out] == \
        [(t.role, t.content, t.num_frames, t.time) for t in CONVERSATION]


def test_per_frame_puts_a_reply_after_every_frame():
    out = per_frame(CONVERSATION)
    validate_turns(out)
    assert out == [
        Turn("system", "Narrate."),
        Turn("stream", time=0.0, num_frames=1), Turn("assistant", "", learn=True),
        Turn("stream", num_frames=1), Turn("assistant", "", learn=True),
        Turn("stream", num_frames=1),
        Turn("assistant", "You pick up the cup.", time=1.0, learn=True),
        Turn("stream", time=1.5, num_frames=1), Turn("assistant", "", learn=True),
        Turn("stream", num_frames=1), Turn("assistant", "", learn=False),
        Turn("user", "What now?", time=2.5),
        Turn("assistant", "The cup.", time=2.5, learn=True),
    ]
    assert sum(t.num_frames for t in out) == sum(t.num_frames for t in CONVERSATION)


def test_per_frame_renders_without_stream_loss():
    from streamvlm.model.conversation import ConversationRenderer
    from streamvlm.model.presets import tiny_config
    from tests.helpers import word_tokenizer

    renderer = ConversationRenderer(word_tokenizer(), tiny_config(pool_size=0))
    rendered = renderer.render(per_frame(CONVERSATION))
    assert not any(rendered.stream_mask())
    assert rendered.num_frames == 5
