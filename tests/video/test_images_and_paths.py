"""Image folders, path confinement to a data root, URL policy."""

import os

import av
import numpy as np
import pytest
from conftest import gray

from streamvlm.errors import VideoError
from streamvlm.video import open_source
from streamvlm.video.locate import locate


def write_image(path, level, size=(8, 16)):
    codec = {".png": "png", ".jpg": "mjpeg", ".bmp": "bmp"}[path.suffix]
    pix = {"png": "rgb24", "mjpeg": "yuvj420p", "bmp": "bgr24"}[codec]
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec, rate=1)
        stream.height, stream.width = size
        stream.pix_fmt = pix
        frame = av.VideoFrame.from_ndarray(np.full((*size, 3), level, np.uint8), format="rgb24")
        for packet in stream.encode(frame.reformat(format=pix)):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_image_folder_sorted_by_name_at_i_over_fps(tmp_path):
    for i, suffix in enumerate([".png", ".jpg", ".bmp", ".png"]):
        write_image(tmp_path / f"img_{i:03d}{suffix}", gray(i))
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(tmp_path, fps=4) as src:
        frames = list(src)
    assert src.kind == "images" and (src.width, src.height) == (16, 8)
    assert src.duration == pytest.approx(1.0)
    assert [f.time for f in frames] == [0.0, 0.25, 0.5, 0.75]
    assert [abs(int(f.image.mean()) - gray(i)) <= 5 for i, f in enumerate(frames)] == [True] * 4


def test_broken_images_are_skipped_and_counted(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", gray(i))
    (tmp_path / "2.png").write_bytes(b"broken")
    with open_source(tmp_path, fps=1) as src:
        frames = list(src)
    assert [f.time for f in frames] == [0.0, 1.0, 3.0]
    assert (src.stats.decoded, src.stats.skipped_corrupt) == (3, 1)


def test_mostly_broken_folder_fails_past_the_ratio(tmp_path):
    write_image(tmp_path / "000.png", 10)
    for i in range(1, 25):
        (tmp_path / f"{i:03d}.png").write_bytes(b"broken")
    with pytest.raises(VideoError, match="too many damaged frames"):
        list(open_source(tmp_path, fps=1))


def test_symlink_escaping_the_root_is_refused(tmp_path, make_video):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    video = make_video("outside/v.mp4", [0.0, 0.04])
    os.symlink(video, root / "link.mp4")
    with pytest.raises(VideoError, match="escapes the data root"):
        open_source(root / "link.mp4", fps=2, allowed_root=root)
    with pytest.raises(VideoError, match="escapes the data root"):
        open_source(root / ".." / "outside" / "v.mp4", fps=2, allowed_root=root)
    inside = make_video("root/in.mp4", [0.0, 0.04])
    assert len(list(open_source(inside, fps=2, allowed_root=root))) == 1


def test_url_policy():
    assert locate("rtsp://cam.local/stream").kind == "url"
    with pytest.raises(VideoError, match="URL sources are refused"):
        locate("http://example.com/v.mp4", allowed_root="/data")
    assert locate("https://example.com/v.mp4", allowed_root="/data", allow_urls=True).kind == "url"
    with pytest.raises(VideoError, match="URL sources are refused"):
        locate("rtmp://example.com/live", allow_urls=False)
    for hostile in ["file:///etc/passwd", "concat:/a.mp4|/b.mp4", "pipe:0", "ftp://x/y.mp4"]:
        with pytest.raises(VideoError, match="unsupported source scheme"):
            locate(hostile)


def test_webcam_names():
    with pytest.raises(VideoError, match="no such webcam device"):
        locate("webcam:99")
    with pytest.raises(VideoError, match="escapes the data root"):
        locate("/dev/video0", allowed_root="/data")
