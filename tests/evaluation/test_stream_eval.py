"""Streaming evaluation with a scripted model (hand-computed values) and a tiny random model."""

from __future__ import annotations

import math

import pytest
import torch

from streamvlm.evaluation.stream_eval import EvalSample, _following_scores, evaluate_conversation, evaluate_dataset
from streamvlm.model.config import TemplateConfig
from streamvlm.model.conversation import Turn

from ..helpers import tiny_model
from .scripted_model import ScriptedModel, frame_ids, nll

REPLY_TOKENS = 6  # "\n", "Assistant", ":", " ", "cup", eos


def three_turns() -> list[Turn]:
    """Frames 0-3, reply, frames 4-6, reply, frames 7-9, reply."""
    turns = []
    for n in (4, 3, 3):
        turns += [Turn("stream", num_frames=n, learn=True), Turn("assistant", "cup", learn=True)]
    return turns


def run(model: ScriptedModel, threshold: float = 0.0):
    frames = frame_ids(10, model.config.tokens_per_frame)
    return evaluate_conversation(model, three_turns(), frames, threshold, fps=2.0)


def test_on_time_then_late_then_last_turn():
    model = ScriptedModel()
    model.decide(3, 0.1)
    records = run(model)
    assert [r.frame_diff for r in records] == [0, -2, 0]
    assert [r.frames_fed for r in records] == [0, 2, 0]  # turn 1 feeds min(3, 3 - 1) frames; last turn none
    assert [r.decisions for r in records] == [4, 3, 3]
    assert [r.reply_tokens for r in records] == [REPLY_TOKENS] * 3
    # uniform text rows: the greedy token is id 0, never the target
    assert [r.correct_tokens for r in records] == [0, 0, 0]
    assert [r.fluency for r in records] == pytest.approx([4 / 10, 2 / 9, 3 / 9])
    assert [r.time_diff for r in records] == [0.0, 1.0, 0.0]


def test_late_branch_feeds_following_frames_without_the_gold_reply():
    model = ScriptedModel()
    model.decide(3, 0.1)
    rendered = model.renderer.render(three_turns())
    run(model)
    gold = rendered.spans[2].decisions[-1]  # frame 6, the gold response frame of turn 1
    start, ids = model.calls[-1]
    assert start == gold.position + 1
    ids_ = model.token_ids
    assert ids == ([ids_.interval_id] + [ids_.frame_id] * model.config.tokens_per_frame) * 2
    assert len(model.calls) == 2  # one full forward + one feed


def test_early_by_two():
    model = ScriptedModel()
    model.decide(1, 0.2)
    model.decide(3, 0.1)
    model.decide(6, 0.1)
    model.decide(9, 0.1)
    records = run(model)
    assert [r.frame_diff for r in records] == [2, 0, 0]
    assert records[0].fluency == pytest.approx((4 - 2) / (4 + REPLY_TOKENS))
    assert records[0].time_diff == pytest.approx(1.0)


def test_late_found_after_feeding():
    model = ScriptedModel()
    model.decide(5, 0.3)  # frames 0-3 silent; frame 5 is the 2nd frame fed after turn 0
    records = run(model)
    assert records[0].frame_diff == -2 and records[0].frames_fed == 3
    assert records[0].fluency == pytest.approx((4 - 1) / (4 + REPLY_TOKENS))
    assert records[1].frame_diff == 1  # within turn 1, frame 5 is one before the gold frame 6
    assert records[1].fluency == pytest.approx((3 - 1) / (3 + REPLY_TOKENS))


def test_never_responds():
    records = run(ScriptedModel())
    assert [r.frame_diff for r in records] == [-3, -2, 0]
    assert [r.frames_fed for r in records] == [3, 2, 0]
    # on the last turn (diff 0) the upstream rule counts it on time: decisions + correct tokens
    assert [r.fluency for r in records] == pytest.approx([3 / 10, 2 / 9, 3 / 9])


def test_threshold_changes_the_decision():
    model = ScriptedModel()
    model.decide(3, 0.7)  # interval still the argmax (0.7 vs 0.3)
    assert run(model, threshold=0.725)[0].frame_diff == 0
    assert run(model, threshold=0.6)[0].frame_diff == -3


def test_lm_ppl_and_correctness_on_a_three_token_reply():
    model = ScriptedModel(template=TemplateConfig(assistant_open="", content_prefix=""))
    turns = [Turn("stream", num_frames=1, learn=True), Turn("assistant", "so.", learn=True)]
    rendered = model.renderer.render(turns)
    targets = rendered.spans[1].target_positions
    assert len(targets) == 3
    vocab = model.tokenizer.get_vocab()
    so, dot, cup, eos = vocab["so"], vocab["."], vocab["cup"], model.token_ids.eos_id
    model.text = {targets[0]: {so: 0.5}, targets[1]: {dot: 0.25, cup: 0.5}, targets[2]: {eos: 0.8}}
    model.decide(0, 0.1)
    (record,) = evaluate_conversation(model, turns, frame_ids(1, 2), 0.0, fps=2.0)
    assert record.lm_ppl == pytest.approx(math.exp(nll(0.5, 0.25, 0.8)))
    assert record.lm_correctness == pytest.approx(1 / 3)
    assert record.frame_diff == 0
    assert record.fluency == pytest.approx((1 + 1) / (1 + 3))


def test_reply_to_a_query_is_not_timed():
    model = ScriptedModel()
    turns = [Turn("stream", num_frames=2, learn=True), Turn("user", "what?"), Turn("assistant", "cup", learn=True)]
    (record,) = evaluate_conversation(model, turns, frame_ids(2, 2), 0.0, fps=2.0)
    assert record.frame_diff is None and record.fluency is None
    assert record.lm_ppl is not None and record.reply_tokens == 5  # "Assistant", ":", " ", "cup", eos


def test_frame_count_mismatch():
    with pytest.raises(ValueError, match="10 frames but 3"):
        evaluate_conversation(ScriptedModel(), three_turns(), frame_ids(3, 2), 0.0, fps=2.0)


# ---------------------------------------------------------------- tiny random model
def test_single_turn_ppl_is_exp_of_the_model_lm_loss():
    model = tiny_model()
    turns = [Turn("stream", num_frames=3, learn=True), Turn("assistant", "You pick up the cup.", learn=True)]
    torch.manual_seed(1)
    frames = torch.randn(3, model.config.tokens_per_frame, model.config.vision_hidden_size)
    rendered = model.renderer.render(turns)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([rendered.input_ids]), frame_tokens=frames,
                    labels=torch.tensor([rendered.labels]))
    (record,) = evaluate_conversation(model, turns, frames, 0.725, fps=2.0)
    assert record.lm_ppl == pytest.approx(math.exp(float(out.lm_loss)), rel=1e-5)
    assert record.frame_diff is not None and 0 <= record.frame_diff <= 2  # last turn: never negative
    assert 0.0 <= record.fluency <= 1.0 and 0.0 <= record.lm_correctness <= 1.0
    result = evaluate_dataset(model, [EvalSample(turns, frames, 2.0)], 0.725)
    assert result["lm_ppl"] == pytest.approx(record.lm_ppl)
    assert all(math.isfinite(result[k]) for k in ("lm_ppl", "time_diff", "fluency", "lm_correctness"))


def test_feeding_after_the_cut_cache_equals_a_fresh_forward():
    model = tiny_model()
    turns = [Turn("stream", num_frames=2, learn=True), Turn("assistant", "cup", learn=True),
             Turn("stream", num_frames=3, learn=True), Turn("assistant", "cup", learn=True)]
    torch.manual_seed(2)
    frames = torch.randn(5, model.config.tokens_per_frame, model.config.vision_hidden_size)
    rendered = model.renderer.render(turns)
    cut = rendered.spans[0].decisions[-1].position + 1
    ids = model.token_ids
    piece = [ids.interval_id] + [ids.frame_id] * model.config.tokens_per_frame
    with torch.inference_mode():
        full = model(input_ids=torch.tensor([rendered.input_ids]), frame_tokens=frames, use_cache=True)
        fed = _following_scores(model, full.cache, cut, frames[2:4])
        fresh = model(input_ids=torch.tensor([rendered.input_ids[:cut] + piece * 2]), frame_tokens=frames[:4])
        again = model(input_ids=torch.tensor([rendered.input_ids]), frame_tokens=frames)
    probs = fresh.logits[0, [cut + len(piece) - 1, cut + 2 * len(piece) - 1]].softmax(-1)[:, ids.silence_id]
    assert [s.p_interval for s in fed] == pytest.approx(probs.tolist(), abs=1e-5)
    assert full.cache.get_seq_length() == len(rendered.input_ids)  # the full cache is left intact
    torch.testing.assert_close(full.logits, again.logits)


def test_reply_to_a_query_is_timed_under_upstream_rules():
    """``timed_turns="learned_frames"`` (upstream): any turn with a learned frame is timed, its last
    learned frame taken as the gold one."""
    model = ScriptedModel()
    turns = [Turn("stream", num_frames=2, learn=True), Turn("user", "what?"), Turn("assistant", "cup", learn=True)]
    (record,) = evaluate_conversation(model, turns, frame_ids(2, 2), 0.0, fps=2.0, timed_turns="learned_frames")
    assert record.frame_diff is not None and record.decisions == 2 and record.fluency is not None
