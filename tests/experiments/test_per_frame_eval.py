"""The per-frame evaluator on stand-in models whose decisions are known in advance."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from streamvlm.experiments.per_frame_eval import evaluate_per_frame_conversation, silence_token
from streamvlm.model.conversation import Turn
from streamvlm.train.transforms import per_frame

from ..helpers import tiny_model

TURNS = [
    Turn("system", "Narrate."),
    Turn("stream", num_frames=1, time=0.0),
    Turn("user", "What do you see?", time=0.0),
    Turn("assistant", "You pick up the cup.", time=0.0, learn=True),
    Turn("stream", num_frames=4, time=0.5, learn=True),
    Turn("assistant", "You put the cup down.", time=2.5, learn=True),
    Turn("stream", num_frames=3, time=3.0, learn=True),
    Turn("assistant", "You pick up the box.", time=4.5, learn=True),
    Turn("stream", num_frames=2, time=5.0),
]
NUM_FRAMES = 10


class StandIn:
    """Logits from a rule instead of a network. ``mode``: ``oracle`` puts all mass on the next input
    token (a perfect teacher-forced model), ``silent`` on the empty reply's first token, ``speak``
    anywhere but there. Every call checks that it got one frame per frame placeholder group."""

    def __init__(self, mode: str) -> None:
        real = tiny_model()
        self.renderer, self.token_ids, self.config = real.renderer, real.token_ids, real.config
        self.device = torch.device("cpu")
        self.mode = mode
        self.vocab = len(real.tokenizer)
        self.silent = silence_token(real)
        self.calls = 0

    def eval(self) -> StandIn:
        return self

    def train(self, mode: bool = True) -> StandIn:
        return self

    def __call__(self, input_ids, frame_tokens=None, **_):
        self.calls += 1
        placeholders = int((input_ids == self.token_ids.frame_id).sum())
        assert placeholders == frame_tokens.shape[0] * self.config.tokens_per_frame
        ids = input_ids[0]
        logits = torch.zeros(1, len(ids), self.vocab)
        if self.mode == "oracle":
            logits[0, torch.arange(len(ids) - 1), ids[1:]] = 50.0
        elif self.mode == "silent":
            logits[0, :, self.silent] = 50.0
        else:
            logits[0, :, self.silent] = -50.0
        return SimpleNamespace(logits=logits)


def frames(model: StandIn) -> torch.Tensor:
    return torch.zeros(NUM_FRAMES, model.config.tokens_per_frame, model.config.vision_hidden_size)


def test_silence_is_the_empty_reply_and_differs_from_a_spoken_one():
    model = StandIn("oracle")
    rendered = model.renderer.render(per_frame(TURNS))
    empty = [s for s in rendered.spans if s.role == "assistant" and s.reply_start and
             rendered.input_ids[s.reply_start] == model.silent]
    assert len(empty) == NUM_FRAMES - 2  # every frame but the two that annotated replies follow directly
    assert model.renderer.encode_content("You")[0] != model.silent


def test_a_perfect_model_is_on_time_and_fluent():
    model = StandIn("oracle")
    records = evaluate_per_frame_conversation(model, TURNS, frames(model), 0.725, 2.0)
    assert [r.frame_diff for r in records] == [None, 0, 0]  # the first reply answers the user query
    assert all(r.lm_correctness == 1.0 and math.isclose(r.lm_ppl, 1.0, abs_tol=1e-6) for r in records)
    assert [r.fluency for r in records[1:]] == [1.0, 1.0]
    assert [r.decisions for r in records[1:]] == [4, 3]
    assert model.calls == 1  # never late: no second forward


def test_a_model_that_never_speaks_is_late_by_the_frames_fed():
    model = StandIn("silent")
    records = evaluate_per_frame_conversation(model, TURNS, frames(model), 0.725, 2.0)
    # Turn 2: min(next turn's 3 frames, 4 - 1) = 3 frames fed, silent on all; the last turn: 0.
    assert [(r.frame_diff, r.frames_fed) for r in records[1:]] == [(-3, 3), (0, 0)]
    assert records[1].time_diff == pytest.approx(1.5)
    assert records[1].fluency == pytest.approx((4 - 1) / (4 + records[1].reply_tokens))
    assert model.calls == 2


def test_a_model_that_always_speaks_is_early_from_the_first_frame():
    model = StandIn("speak")
    records = evaluate_per_frame_conversation(model, TURNS, frames(model), 0.725, 2.0)
    assert [r.frame_diff for r in records[1:]] == [3, 2]


def test_frame_count_must_match():
    model = StandIn("oracle")
    with pytest.raises(ValueError, match="10 frames but 9"):
        evaluate_per_frame_conversation(model, TURNS, frames(model)[:9], 0.725, 2.0)
