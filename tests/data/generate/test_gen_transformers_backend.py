"""TransformersBackend with a tiny random Llama saved to disk and loaded by path."""

from __future__ import annotations

import pytest

from streamvlm.data.generate.transformers_backend import TransformersBackend, render_plain

MAX_NEW = 6
PROMPTS = [
    [{"role": "user", "content": "What?"}],
    [{"role": "system", "content": "You pick up the red cup."},
     {"role": "user", "content": "What have I done? Describe it."}],
    [{"role": "user", "content": "You open the drawer, then you close it. What should I do next? 0 1 2 3 4 5 6 7 8 9"}],
]


@pytest.fixture(scope="module")
def backend(model_dir):
    return TransformersBackend(str(model_dir), max_new_tokens=MAX_NEW, batch_size=3, device="cpu", dtype="float32")


def test_plain_rendering_without_chat_template(backend):
    assert not backend.uses_chat_template
    assert backend.render(PROMPTS[1]) == ("System: You pick up the red cup.\nUser: What have I done? Describe it.\n"
                                          "Assistant:")


def test_left_padded_batch_matches_one_by_one_and_respects_max_new_tokens(backend):
    assert backend.tokenizer.padding_side == "left"
    lengths = {len(backend.tokenizer(backend.render(p)).input_ids) for p in PROMPTS}
    assert len(lengths) == 3  # really different lengths, so the batch is padded
    batched = backend.generate_ids(PROMPTS)
    single = [backend.generate_ids([p])[0] for p in PROMPTS]
    assert batched == single
    assert all(1 <= len(ids) <= MAX_NEW for ids in batched)


def test_complete_is_deterministic_one_reply_per_prompt(backend):
    first = backend.complete(PROMPTS)
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert backend.complete(PROMPTS) == first
    assert backend.complete(PROMPTS[::-1]) == first[::-1]
    assert backend.identity() == {"backend": "transformers", "model": backend.model_name_or_path,
                                  "max_new_tokens": MAX_NEW, "decoding": "greedy"}


def test_chat_template_is_used_when_the_tokenizer_has_one(model_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    templated = tmp_path / "templated"
    shutil.copytree(model_dir, templated)
    tok = AutoTokenizer.from_pretrained(templated)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    tok.save_pretrained(templated)
    b = TransformersBackend(str(templated), max_new_tokens=2, batch_size=2, device="cpu", dtype="float32")
    assert b.uses_chat_template
    assert b.render(PROMPTS[0]) == "<user>What?<assistant>"
    assert len(b.complete(PROMPTS[:2])) == 2


def test_render_plain_multi_turn():
    prompt = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert render_plain(prompt) == "User: a\nAssistant: b\nUser: c\nAssistant:"
