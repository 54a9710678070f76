"""The real sample videos of ../shared/data/videos (skipped when the folder is absent)."""

import pytest

from streamvlm.errors import VideoError
from streamvlm.video import open_source

GOOD = ["flashvstream_example.mp4", "mmduet_drive.mp4", "mmduet_office.mp4",
        "streammind_1034346401.mp4", "streammind_demo1.mp4", "streammind_demo3.mp4"]


@pytest.mark.parametrize("name", GOOD)
def test_sample_video_at_2_fps(shared_videos, name):
    with open_source(shared_videos / name, fps=2, max_side=384) as src:
        times = [frame.time for frame in src]
        assert max(src.width, src.height) <= 640 and src.duration > 5
    assert abs(len(times) - src.duration * 2) <= 2
    assert times[0] == pytest.approx(0.0) and all(b > a for a, b in zip(times, times[1:]))
    assert all(t >= k / 2 - 1e-6 for k, t in enumerate(times))
    assert src.stats.skipped_corrupt == 0


def _bugy(path):
    try:
        with open_source(path, fps=2) as src:
            frames = [(f.time, f.image.tobytes()) for f in src]
        return frames, src.stats.skipped_corrupt
    except VideoError as error:
        return str(error)


def test_damaged_avi_is_survived_deterministically(shared_videos):
    path = shared_videos / "Megamind_bugy.avi"
    first, second = _bugy(path), _bugy(path)
    assert first == second
    if isinstance(first, str):
        assert str(path) in first
    else:
        frames, skipped = first
        assert skipped > 0 and len(frames) > 5
        times = [t for t, _ in frames]
        assert all(b > a for a, b in zip(times, times[1:]))


def test_damaged_avi_over_a_strict_ratio_is_an_error(shared_videos):
    with pytest.raises(VideoError, match="too many damaged frames"):
        list(open_source(shared_videos / "Megamind_bugy.avi", fps=2, max_bad_ratio=0.1))
