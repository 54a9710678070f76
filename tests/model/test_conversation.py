"""Golden label tests: every position of the rendered ids and labels, worked out by hand."""

import pytest

from streamvlm.errors import ConfigError, ConversationError
from streamvlm.model.config import StreamVLMConfig, VisionConfig
from streamvlm.model.conversation import IGNORE_INDEX, ConversationRenderer, Turn, turns_from_dicts

from ..helpers import word_tokenizer

V = "<v>"


def renderer(pool_size=1, use_pooled=True, interval=","):
    cfg = StreamVLMConfig(llm_name_or_path="unused", interval_token=interval,
                          vision=VisionConfig(name_or_path="unused", use_pooled=use_pooled, pool_size=pool_size))
    return ConversationRenderer(word_tokenizer(), cfg)


def show(r, rendered):
    tok = r.tokenizer
    tokens = tok.convert_ids_to_tokens(rendered.input_ids)
    labels = {i: tok.convert_ids_to_tokens(label) for i, label in enumerate(rendered.labels) if label != IGNORE_INDEX}
    return tokens, labels


def test_upstream_example():
    """system; stream 2 frames, 1 learned; user; learned reply; stream 3 frames, all learned; learned reply."""
    r = renderer()  # 2 tokens per frame (pooled + 1x1)
    rendered = r.render([
        Turn("system", "cool."),
        Turn("stream", num_frames=2, learn=1),
        Turn("user", "cool?"),
        Turn("assistant", "cool.", learn=True),
        Turn("stream", num_frames=3, learn=3),
        Turn("assistant", "so cool.", learn=True),
    ])
    tokens, labels = show(r, rendered)
    assert tokens == [
        "<s>", "cool", ".", "\n", "\n", "[",                      # 0-5: bos, system, "\n" + "\n["
        V, V, ",", V, V,                                          # 6-10: frames 0, 1
        "]", "\n", "User", ":", " ", "cool", "?",                 # 11-17: "]\nUser:" + " cool?"
        "\n", "Assistant", ":", " ", "cool", ".", "</s>",         # 18-24: reply
        "\n", "[", V, V, ",", V, V, ",", V, V,                    # 25-34: frames 2, 3, 4
        "]", "\n", "Assistant", ":", " ", "so", " ", "cool", ".", "</s>",  # 35-44: reply
    ]
    assert labels == {
        7: ",",                                                   # frame 0 learned: silent
        18: "Assistant", 19: ":", 20: " ", 21: "cool", 22: ".", 23: "</s>",
        28: ",", 31: ",",                                         # frames 2, 3 silent
        34: "]",                                                  # frame 4 speaks: opens the reply
        35: "\n", 36: "Assistant", 37: ":", 38: " ", 39: "so", 40: " ", 41: "cool", 42: ".", 43: "</s>",
    }
    assert rendered.frame_positions == [[6, 7], [9, 10], [27, 28], [30, 31], [33, 34]]
    decisions = rendered.decisions
    assert [(d.position, d.learned, d.speaks) for d in decisions] == [
        (7, True, False), (10, False, False), (28, True, False), (31, True, False), (34, True, True)]
    assert [i for i, m in enumerate(rendered.stream_mask()) if m] == [7, 28, 31, 34]
    replies = [s for s in rendered.spans if s.role == "assistant"]
    assert replies[0].target_positions == [18, 19, 20, 21, 22, 23] and replies[0].reply_start == 21
    assert replies[1].target_positions == list(range(35, 44)) and replies[1].reply_start == 39


def test_stream_ending_the_conversation_is_silent_and_closed():
    r = renderer()
    rendered = r.render([
        Turn("system", "cool."),
        Turn("stream", num_frames=2, learn=True),
        Turn("assistant", "cool.", learn=True),
        Turn("stream", num_frames=2, learn=True),
    ])
    tokens, labels = show(r, rendered)
    assert tokens == ["<s>", "cool", ".", "\n", "\n", "[", V, V, ",", V, V,
                      "]", "\n", "Assistant", ":", " ", "cool", ".", "</s>",
                      "\n", "[", V, V, ",", V, V, "]"]
    assert labels == {7: ",", 10: "]", 11: "\n", 12: "Assistant", 13: ":", 14: " ", 15: "cool", 16: ".",
                      17: "</s>", 22: ",", 25: ","}


def test_user_query_mid_stream():
    """The frame before a query is learned as silent: the query, not the model, ends the stream."""
    r = renderer()
    rendered = r.render([
        Turn("stream", num_frames=2, learn=True, time=0.0),
        Turn("user", "what?", time=1.0),
        Turn("assistant", "cool.", learn=True, time=1.0),
        Turn("stream", num_frames=1, learn=True, time=1.5),
    ])
    tokens, labels = show(r, rendered)
    assert tokens == ["<s>", "\n", "[", V, V, ",", V, V, "]", "\n", "User", ":", " ", "what", "?",
                      "\n", "Assistant", ":", " ", "cool", ".", "</s>", "\n", "[", V, V, "]"]
    assert labels == {4: ",", 7: ",", 15: "Assistant", 16: ":", 17: " ", 18: "cool", 19: ".", 20: "</s>",
                      25: ","}


def test_unlearned_reply_keeps_frame_decision_only():
    r = renderer()
    rendered = r.render([
        Turn("system", "cool."),
        Turn("stream", num_frames=1, learn=True),
        Turn("assistant", "cool.", learn=False),
        Turn("stream", num_frames=1, learn=False),
    ])
    tokens, labels = show(r, rendered)
    assert tokens[6:8] == [V, V] and tokens[8] == "]"
    assert labels == {7: "]"}


def test_live1_one_token_per_frame_without_interval():
    """live1: one token per frame, no interval token; silence is learned as eos (as upstream)."""
    r = renderer(pool_size=0, interval="")
    rendered = r.render([
        Turn("system", "cool."),
        Turn("stream", num_frames=3, learn=True),
        Turn("assistant", "cool.", learn=True),
    ])
    tokens, labels = show(r, rendered)
    assert tokens == ["<s>", "cool", ".", "\n", "\n", "[", V, V, V,
                      "]", "\n", "Assistant", ":", " ", "cool", ".", "</s>"]
    assert labels == {6: "</s>", 7: "</s>", 8: "]", 9: "\n", 10: "Assistant", 11: ":", 12: " ",
                      13: "cool", 14: ".", 15: "</s>"}


def test_template_strings_are_configurable():
    r = renderer()
    r.template.user_open = "\nUser|"
    rendered = r.render([Turn("stream", num_frames=1), Turn("user", "cool")])
    tokens, _ = show(r, rendered)
    assert tokens[-6:] == ["]", "\n", "User", "|", " ", "cool"]


def test_zero_frame_stream_renders_nothing():
    r = renderer()
    a = r.render([Turn("stream", num_frames=1), Turn("stream", num_frames=0), Turn("user", "cool")])
    b = r.render([Turn("stream", num_frames=1), Turn("user", "cool")])
    assert a.input_ids == b.input_ids


@pytest.mark.parametrize("turns, message", [
    ([{"role": "robot", "content": "x"}], "unknown role 'robot'"),
    ([{"role": "stream", "num_frames": -1}], "'num_frames' must be >= 0"),
    ([{"role": "stream", "num_frames": 2.5}], "'num_frames' must be an integer"),
    ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "x"}], "a reply before any frame"),
    ([{"role": "stream", "num_frames": 2, "learn": 3}], "between 0 and num_frames=2"),
    ([{"role": "stream", "num_frames": 1, "time": 5}, {"role": "user", "content": "x", "time": 2}], "goes backwards"),
    ([{"role": "stream", "num_frames": 1, "time": float("nan")}], "finite number"),
    ([{"role": "user", "content": 3}], "'content' must be a string"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "may only come first"),
    ([{"role": "user", "text": "a"}], "unknown field 'text'"),
])
def test_bad_conversations_are_named(turns, message):
    with pytest.raises(ConversationError, match=message):
        turns_from_dicts(turns)


def test_tokenizer_lacking_the_interval_token():
    cfg = StreamVLMConfig(llm_name_or_path="unused", interval_token="<<sep>>",
                          vision=VisionConfig(name_or_path="unused"))
    with pytest.raises(ConfigError, match="interval_token '<<sep>>' is not a single token"):
        ConversationRenderer(word_tokenizer(), cfg)


def test_turn_dict_round_trip():
    turns = [Turn("system", "s"), Turn("stream", num_frames=3, learn=2, time=0.0),
             Turn("assistant", "a", learn=True, time=1.5)]
    assert turns_from_dicts([t.to_dict() for t in turns]) == turns
