"""Downstream scoring: edit distance, answer matching, LTA parsing, generation plumbing."""

from __future__ import annotations

import pytest
import torch

from streamvlm.evaluation import downstream
from streamvlm.evaluation.downstream import (
    DownstreamSample,
    answer_matches,
    edit_distance,
    evaluate_downstream,
    fit_length,
    generate_answers,
    lta_edit_distance,
    parse_actions,
    procedure_matches,
    split_action,
)
from streamvlm.model.conversation import Turn

from ..helpers import tiny_model


@pytest.mark.parametrize("a, b, d", [
    ("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3), ("flaw", "lawn", 2),
    ("abcd", "abcd", 0), ("abcd", "dcba", 4), ("ab", "ba", 2),
])
def test_edit_distance(a, b, d):
    assert edit_distance(a, b) == d
    assert edit_distance(b, a) == d


def test_edit_distance_on_word_sequences():
    assert edit_distance(["cut", "put", "take"], ["cut", "take"]) == 1
    assert edit_distance([("cut", "onion")], [("cut", "knife")]) == 1


def test_fit_length_pads_with_the_last_item():
    assert fit_length(["a", "b"], 4, None) == ["a", "b", "b", "b"]
    assert fit_length(["a", "b", "c"], 2, None) == ["a", "b"]
    assert fit_length([], 2, None) == [None, None]


def test_lta_edit_distance_is_the_min_over_k_normalised_by_z():
    gold = ["cut", "put", "take", "wash"]
    preds = [["cut", "put", "hold", "wash"], ["open", "open", "open", "open"]]
    assert lta_edit_distance(preds, gold, z=4) == pytest.approx(1 / 4)
    assert lta_edit_distance(preds[1:], gold, z=4) == pytest.approx(1.0)
    # a short prediction repeats its last action; Z = 2 looks at the first two only
    assert lta_edit_distance([["cut"]], gold, z=2) == pytest.approx(1 / 2)
    assert lta_edit_distance([[]], gold, z=4) == pytest.approx(1.0)


def test_answer_and_procedure_matching():
    assert answer_matches("  Cut the onion. ", "Cut the onion.")
    assert not answer_matches("Cut the onion", "Cut the onion.")
    assert procedure_matches("1. Cut onion.\n2. Fry it.\n3. Eat.", "1. Cut onion.\n2. Boil it.\n3. Eat.") == (2, 3)
    assert procedure_matches("1. Cut onion.", "1. Cut onion.\n2. Boil it.") == (1, 2)


def test_parse_and_split_actions():
    text = "1. Take off shoe.\n2. Cut onion.\nnoise\n3) put knife"
    assert parse_actions(text) == ["take off shoe", "cut onion", "put knife"]
    verbs = ["take", "take off", "cut"]
    assert split_action("take off shoe", verbs) == ("take off", "shoe")
    assert split_action("cut onion", verbs) == ("cut", "onion")
    assert split_action("put knife", verbs) == ("put", "knife")


def test_scores_from_scripted_answers(monkeypatch):
    answers = {
        "a": ["Cut onion."], "b": ["Fry it."], "c": ["1. Cut onion.\n2. Fry it."],
        "d": ["1. Cut onion.\n2. Put pan.", "1. Take pan.\n2. Put pan."],
    }
    monkeypatch.setattr(downstream, "generate_answers", lambda model, turns, frames, **kw: answers[turns[0].content])

    def sample(key, task, **kw):
        return DownstreamSample(task, [Turn("user", key), Turn("stream", num_frames=1)], None, key=key, **kw)

    samples = [
        sample("a", "coin_step", answer="Cut onion."), sample("b", "coin_step", answer="Boil it."),
        sample("c", "coin_procedure", answer="1. Cut onion.\n2. Boil it.\n3. Eat."),
        sample("d", "lta", future_verbs=["take", "put"], future_nouns=["pan", "pan"]),
    ]
    out = evaluate_downstream(tiny_model(), samples, lta_verbs=["take", "put"])
    assert out["coin_step"] == pytest.approx(0.5)
    assert out["coin_procedure"] == pytest.approx(1 / 3)
    assert out["lta_verb_ed"] == pytest.approx(0.0)  # second sequence: take, put
    assert out["lta_noun_ed"] == pytest.approx(0.0)  # second sequence: pan, pan
    assert out["lta_action_ed"] == pytest.approx(0.0)
    assert out["downstream_counts"] == {"coin_step": 2, "coin_procedure": 1, "lta": 1}


def test_generate_answers_with_a_tiny_model():
    model = tiny_model()
    turns = [Turn("stream", num_frames=2), Turn("user", "What is the action in the video?")]
    frames = torch.randn(2, model.config.tokens_per_frame, model.config.vision_hidden_size)
    with torch.inference_mode():
        (greedy,) = generate_answers(model, turns, frames, max_new_tokens=4)
        beams = generate_answers(model, turns, frames, max_new_tokens=4, num_beams=3)
    assert isinstance(greedy, str) and len(beams) == 3


def test_answer_prompt_ends_with_the_assistant_opening():
    from streamvlm.evaluation.downstream import answer_prompt

    from .scripted_model import ScriptedModel

    model = ScriptedModel()
    words = model.tokenizer.convert_ids_to_tokens
    after_query = answer_prompt(model.renderer, [Turn("stream", num_frames=1), Turn("user", "so?")])
    assert words(after_query)[-10:] == ["]", "\n", "User", ":", " ", "so", "?", "\n", "Assistant", ":"]
    after_frames = answer_prompt(model.renderer, [Turn("user", "so?"), Turn("stream", num_frames=1)])
    assert words(after_frames)[-6:] == ["<v>", "<v>", "]", "\n", "Assistant", ":"]
