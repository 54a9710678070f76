"""The pure metric logic on hand-worked cases."""

from __future__ import annotations

import math

import pytest

from streamvlm.evaluation.metrics import (
    FrameScore,
    TurnRecord,
    aggregate,
    correct_prefix,
    first_response,
    fluency_parts,
    frames_to_feed,
    in_turn_diff,
    late_diff,
    perplexity,
    responds,
)

SILENT = FrameScore(0.9, True)
SPEAKS = FrameScore(0.2, False)


def test_threshold_zeroes_the_interval_token():
    score = FrameScore(0.7, True)
    assert responds(score, 0.725)
    assert not responds(score, 0.6)
    assert not responds(score, 0.0)
    assert responds(FrameScore(0.4, False), 0.0)  # another token is the argmax anyway
    # P(interval) = 0.4 is still the argmax when the rest is spread: silent without a threshold
    assert not responds(FrameScore(0.4, True), 0.0) and responds(FrameScore(0.4, True), 0.5)


def test_in_turn_diff_on_time_and_early():
    assert in_turn_diff([SILENT, SILENT, SILENT, SPEAKS], 0.0) == 0
    assert in_turn_diff([SILENT, SPEAKS, SILENT, SPEAKS], 0.0) == 2
    assert in_turn_diff([SPEAKS, SILENT, SILENT, SILENT], 0.0) == 3
    assert in_turn_diff([SILENT] * 4, 0.0) is None
    assert first_response([SILENT, SILENT], 0.0) is None


def test_late_and_never():
    assert late_diff([SILENT, SPEAKS, SPEAKS], 0.0) == -2
    assert late_diff([SPEAKS], 0.0) == -1
    assert late_diff([SILENT, SILENT, SILENT], 0.0) == -3
    assert late_diff([], 0.0) == 0  # last turn: nothing to feed


def test_frames_to_feed():
    assert frames_to_feed(4, 3) == 3
    assert frames_to_feed(4, 10) == 3
    assert frames_to_feed(1, 5) == 0
    assert frames_to_feed(4, None) == 0


def test_lm_metrics_on_a_three_token_reply():
    losses = [-math.log(0.5), -math.log(0.25), -math.log(0.8)]
    assert perplexity(losses) == pytest.approx((0.5 * 0.25 * 0.8) ** (-1 / 3))
    assert correct_prefix([True, False, True]) == 1
    assert correct_prefix([True, True, True]) == 3
    assert correct_prefix([False, True, True]) == 0


def test_fluency_cases():
    # 4 learned decisions, 6 reply tokens, 2 right before the first mistake
    assert fluency_parts(4, 6, 2, 0) == (6, 10)
    assert fluency_parts(4, 6, 2, 2) == (2, 10)
    assert fluency_parts(4, 6, 2, -2) == (3, 10)
    assert fluency_parts(4, 6, 6, -3) == (3, 10)


def test_aggregate_is_mean_over_conversations_of_turn_means():
    a = [TurnRecord(0, fps=2.0, reply_tokens=3, lm_loss=math.log(2.0), correct_tokens=3, decisions=4, frame_diff=0),
         TurnRecord(2, fps=2.0, reply_tokens=3, lm_loss=math.log(4.0), correct_tokens=0, decisions=4, frame_diff=-2)]
    b = [TurnRecord(0, fps=1.0, reply_tokens=2, lm_loss=math.log(3.0), correct_tokens=1, decisions=1, frame_diff=1)]
    out = aggregate([a, b, []])
    assert out["lm_ppl"] == pytest.approx(((2 + 4) / 2 + 3) / 2)
    assert out["time_diff"] == pytest.approx(((0 + 2 / 2.0) / 2 + 1 / 1.0) / 2)
    assert out["lm_correctness"] == pytest.approx(((1 + 0) / 2 + 0.5) / 2)
    # fluency: a = (7/7 + 3/7) / 2; b: early by 1 -> (1 - 1) / 3
    assert out["fluency"] == pytest.approx(((7 / 7 + 3 / 7) / 2 + 0.0) / 2)
    assert (out["conversations"], out["turns"], out["timed_turns"]) == (3, 3, 3)


def test_record_without_timing_has_no_fluency():
    r = TurnRecord(1, fps=2.0, reply_tokens=3, lm_loss=0.0, correct_tokens=3)
    assert r.fluency is None and r.time_diff is None and r.lm_ppl == 1.0 and r.lm_correctness == 1.0
    out = aggregate([[r]])
    assert out["time_diff"] is None and out["fluency"] is None and out["lm_ppl"] == 1.0


def test_aggregate_neutral_counts_a_conversation_lacking_a_metric_as_upstream():
    """upstream's stream_evaluate returns PPL 1 / diff 0 / fluency 1 / correctness 1 for a
    conversation without any turn for a metric; ``skip`` (streamvlm) leaves it out."""
    timed = [TurnRecord(0, fps=2.0, reply_tokens=2, lm_loss=math.log(3.0), correct_tokens=1, decisions=2,
                        frame_diff=-2)]
    untimed = [TurnRecord(1, fps=2.0, reply_tokens=2, lm_loss=math.log(5.0), correct_tokens=0)]
    skip = aggregate([timed, untimed], "skip")
    neutral = aggregate([timed, untimed], "neutral")
    assert skip["time_diff"] == pytest.approx(1.0) and neutral["time_diff"] == pytest.approx(0.5)
    assert skip["fluency"] == pytest.approx(1 / 4) and neutral["fluency"] == pytest.approx((1 / 4 + 1) / 2)
    assert skip["lm_ppl"] == neutral["lm_ppl"] == pytest.approx(4.0)
    assert aggregate([[], timed], "neutral")["lm_correctness"] == pytest.approx((1 + 0.5) / 2)
