"""Video files: sampling by timestamp, resize, broken/hostile inputs, limits, real-time pacing."""

import os
import time

import av
import numpy as np
import pytest
from conftest import gray

from streamvlm.errors import ConfigError, VideoError
from streamvlm.video import Frame, open_source, probe, sources


def read_all(path, **kwargs):
    with open_source(path, **kwargs) as src:
        return list(src), src


def test_constant_rate_file_sampled_on_the_grid(make_video):
    path = make_video("cfr.mp4", [i / 20 for i in range(60)], rate=20)  # 3 s
    frames, src = read_all(path, fps=2)
    assert [f.time for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert [f.index for f in frames] == list(range(6))
    assert all(isinstance(f, Frame) and f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
               for f in frames)
    # The frame picked for t = 1.0 is source frame 20 (told apart by its gray level).
    assert abs(int(frames[2].image.mean()) - gray(20)) <= 5
    assert (src.kind, src.width, src.height, src.native_fps) == ("file", 64, 48, 20.0)
    assert src.duration == pytest.approx(3.0, abs=0.06)
    assert (src.stats.decoded, src.stats.sampled, src.stats.skipped_corrupt) == (60, 6, 0)


def test_h264_with_reordered_frames(make_video):
    path = make_video("b.mp4", [i / 25 for i in range(50)], codec="libx264")
    frames, _ = read_all(path, fps=5)
    assert [f.time for f in frames] == pytest.approx([i / 5 for i in range(10)])


def test_variable_frame_rate_mp4(make_video):
    times = [0.0, 0.1, 0.15, 0.7, 0.71, 1.3, 2.0, 2.02, 2.9]
    frames, _ = read_all(make_video("vfr.mp4", times), fps=2)
    assert [f.time for f in frames] == pytest.approx([0.0, 0.7, 1.3, 2.0, 2.9])
    assert all(abs(int(f.image.mean()) - gray(i)) <= 5 for f, i in zip(frames, [0, 3, 5, 6, 8]))


@pytest.mark.parametrize("name,codec", [("vfr.webm", "libvpx"), ("vfr.mkv", "mpeg4")])
def test_unknown_frame_count_containers(make_video, name, codec):
    times = [0.0, 0.3, 0.45, 1.05, 1.6, 1.61, 2.2]
    path = make_video(name, times, codec=codec)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the container does not know the count
    frames, _ = read_all(path, fps=2)
    assert [f.time for f in frames] == pytest.approx([0.0, 1.05, 1.6, 2.2])


def test_frames_without_timestamps_are_counted_at_the_stream_rate(make_video):
    path = make_video("raw.h264", [i / 25 for i in range(25)], codec="libx264",
                      container_format="h264")
    frames, _ = read_all(path, fps=5)
    assert [f.time for f in frames] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


def test_declared_fps_zero_and_no_timestamps_fall_back_to_target_fps():
    info = sources.StreamInfo(width=16, height=8, native_fps=None, duration=None, codec="x",
                              start=None)
    opts = sources._check_options(4.0, None, 1.0, 10**6, None, 0.5)
    frames = [av.VideoFrame(16, 8, "rgb24") for _ in range(6)]
    assert all(f.time is None for f in frames)
    got = [t for t, _ in sources._sample(iter(frames), "x", info, opts, origin=None)]
    assert got == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25])


def test_max_side_downscales_keeping_aspect(make_video):
    path = make_video("big.mp4", [0.0, 0.04], width=320, height=180)
    frames, src = read_all(path, fps=1, max_side=64)
    assert frames[0].image.shape == (36, 64, 3)
    assert (src.width, src.height) == (320, 180)
    frames, _ = read_all(path, fps=1, max_side=1000)
    assert frames[0].image.shape == (180, 320, 3)


def _garbage(tmp_path):
    png = tmp_path / "image.png"
    with av.open(str(png), "w") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 8, "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((8, 16, 3), np.uint8))):
            container.mux(packet)
    files = {
        "empty.mp4": b"",
        "random.mp4": np.random.default_rng(0).bytes(200_000),
        "png_renamed.mp4": png.read_bytes(),
        "notes.txt": b"this is not a video\n" * 50,
        "notes.mp4": b"this is not a video\n" * 50,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "empty_dir").mkdir()
    return list(files) + ["missing.mp4", "empty_dir"]


def test_garbage_inputs_give_a_clear_error_quickly(tmp_path):
    for name in _garbage(tmp_path):
        path = tmp_path / name
        start = time.monotonic()
        with pytest.raises(VideoError) as info:
            read_all(path, fps=2)
        assert time.monotonic() - start < 2.0, name
        message = str(info.value)
        assert str(path) in message and "\n" not in message, message


def _truncations(make_video, tmp_path):
    times = [i / 25 for i in range(75)]
    cases = []
    for layout, options in [("moov_last", {}), ("faststart", {"movflags": "faststart"})]:
        data = make_video(f"{layout}.mp4", times, codec="libx264", options=options).read_bytes()
        for percent in (10, 50, 90):
            path = tmp_path / f"{layout}_{percent}.mp4"
            path.write_bytes(data[: len(data) * percent // 100])
            cases.append(path)
    return cases


def _outcome(path):
    try:
        frames, src = read_all(path, fps=5)
    except VideoError as error:
        return ("error", str(error))
    return ("frames", [(f.time, f.image.tobytes()) for f in frames], src.stats.skipped_corrupt)


def test_truncated_mp4_gives_frames_or_a_clear_error_deterministically(make_video, tmp_path):
    outcomes = {}
    for path in _truncations(make_video, tmp_path):
        first, second = _outcome(path), _outcome(path)
        assert first == second, path.name
        if first[0] == "error":
            assert str(path) in first[1]
        else:
            times = [t for t, _ in first[1]]
            assert times and all(b > a for a, b in zip(times, times[1:]))
        outcomes[path.name] = first
    # An index at the end is lost by any truncation; with the index first, most frames survive.
    assert outcomes["moov_last_90.mp4"][0] == "error"
    assert outcomes["faststart_90.mp4"][0] == "frames"
    assert len(outcomes["faststart_90.mp4"][1]) >= 10


def test_file_without_video_stream(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(VideoError, match="has no video stream"):
        open_source(path, fps=2)


def test_absurd_resolution_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.y4m"  # a header claiming 16000x16000, then a few bytes
    path.write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    start = time.monotonic()
    with pytest.raises(VideoError, match="16000x16000 exceeds the limit"):
        open_source(path, fps=2)
    assert time.monotonic() - start < 1.0


def test_small_pixel_limit_refuses_a_normal_video(make_video):
    with pytest.raises(VideoError, match="64x48 exceeds the limit of 1000 pixels"):
        open_source(make_video("v.mp4", [0.0, 0.04]), fps=2, max_pixels=1000)


def test_absurd_duration_refused_before_decoding(make_video):
    path = make_video("long.mp4", [0.0, 36_000.0])  # two frames ten hours apart
    assert probe(path)["duration"] > 35_000
    with pytest.raises(VideoError, match="exceeds the limit of 3600 s"):
        open_source(path, fps=2, max_duration=3600)


def test_frames_past_max_duration_stop_with_an_error(make_video):
    path = make_video("odd.h264", [i / 25 for i in range(50)], codec="libx264",
                      container_format="h264")  # no duration in the header
    with open_source(path, fps=5, max_duration=1.0) as src:
        assert src.duration is None
        with pytest.raises(VideoError, match="runs past the limit of 1 s"):
            list(src)


def test_realtime_paces_frames_to_the_wall_clock(make_video):
    path = make_video("rt.mp4", [i / 25 for i in range(25)])
    start = time.monotonic()
    with open_source(path, fps=4, realtime=True) as src:
        for frame in src:
            assert time.monotonic() - start >= frame.time - 0.01
    assert frame.time == pytest.approx(0.76)  # targets 0, 0.25, 0.5, 0.75 on a 25 fps grid
    assert time.monotonic() - start >= 0.75


def test_probe_and_close_early(make_video):
    path = make_video("p.mp4", [i / 25 for i in range(50)])
    info = probe(path)
    assert info == {"name": str(path), "kind": "file", "width": 64, "height": 48,
                    "native_fps": 25.0, "duration": pytest.approx(2.0, abs=0.05), "codec": "mpeg4"}
    src = open_source(path, fps=2)
    assert next(src).index == 0
    src.close()
    assert list(src) == []


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"fps": -2}, {"fps": 2, "max_side": 0},
                                    {"fps": 2, "read_timeout": 0}, {"fps": 2, "max_bad_ratio": 2}])
def test_invalid_options(make_video, kwargs):
    with pytest.raises(ConfigError):
        open_source(make_video("o.mp4", [0.0]), **kwargs)


def test_no_file_descriptor_leak_on_errors(tmp_path):
    names = _garbage(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        for name in names:
            with pytest.raises(VideoError):
                read_all(tmp_path / name, fps=2)
    assert len(os.listdir("/proc/self/fd")) <= before
