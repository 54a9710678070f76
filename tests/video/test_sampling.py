import pytest

from streamvlm.video.sampling import TimestampSampler


def emitted(sampler: TimestampSampler, times):
    return [t for t in (sampler.offer(x) for x in times) if t is not None]


def test_first_frame_at_or_after_each_target():
    times = [i / 30 for i in range(91)]  # 3 s at 30 fps
    out = emitted(TimestampSampler(2.0, 1 / 30), times)
    assert out == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


def test_variable_rate_picks_first_frame_past_each_target():
    times = [0.0, 0.1, 0.15, 0.7, 0.71, 1.3, 2.0]
    assert emitted(TimestampSampler(2.0, 0.04), times) == [0.0, 0.7, 1.3, 2.0]


def test_gap_over_several_targets_emits_once_and_stays_increasing():
    assert emitted(TimestampSampler(4.0, 0.04), [0.0, 2.1, 2.2, 2.26]) == [0.0, 2.1, 2.26]


def test_backwards_and_repeated_timestamps_are_dropped():
    times = [0.0, 0.5, 0.4, 0.5, 1.0, 0.9, 1.6]
    assert emitted(TimestampSampler(2.0, 0.04), times) == [0.0, 0.5, 1.0, 1.6]


def test_missing_timestamps_count_with_the_fallback_step():
    out = emitted(TimestampSampler(5.0, 0.04), [None] * 26)
    assert out == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_float_rounding_just_below_a_target_counts_as_on_it():
    assert emitted(TimestampSampler(3.0, 0.1), [0.0, 1 / 3 - 1e-9, 0.5]) == [0.0, 1 / 3 - 1e-9]


@pytest.mark.parametrize("fps", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_fps_is_refused(fps):
    with pytest.raises(ValueError):
        TimestampSampler(fps, 0.04)
