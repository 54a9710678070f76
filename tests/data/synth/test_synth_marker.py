"""A synthetic-world video is recognised by the tag ``streamvlm synth`` writes into its container."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from streamvlm.data.synth.marker import (
    EMBEDDED_MODEL_NOTE,
    SYNTH_VIDEO_TAG,
    embedded_model_note,
    is_synthetic_video,
)


def _plain_video(path, comment: str | None = None):
    """A 1-second 64-pixel h264 video, optionally with a container comment."""
    with av.open(str(path), "w") as container:
        if comment is not None:
            container.metadata["comment"] = comment
        stream = container.add_stream("libx264", rate=Fraction(4))
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(4):
            image = np.full((64, 64, 3), 40 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_world_videos_carry_the_tag(tiny_world):
    for video in tiny_world.videos:
        path = tiny_world.video_path(video.uid)
        with av.open(str(path)) as container:
            assert container.metadata.get("comment") == SYNTH_VIDEO_TAG
        assert is_synthetic_video(path) and is_synthetic_video(str(path))
        assert embedded_model_note(path) is None


def test_other_sources_are_not_synthetic(tmp_path):
    assert not is_synthetic_video(_plain_video(tmp_path / "plain.mp4"))
    assert not is_synthetic_video(_plain_video(tmp_path / "other.mp4", comment="holiday"))
    assert is_synthetic_video(_plain_video(tmp_path / "tagged.mp4", comment=SYNTH_VIDEO_TAG))
    images = tmp_path / "images"
    images.mkdir()
    assert not is_synthetic_video(images)  # an image folder
    assert not is_synthetic_video(tmp_path / "missing.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert not is_synthetic_video(tmp_path / "broken.mp4")
    assert not is_synthetic_video("http://127.0.0.1:9/never-opened.mp4")  # a live source is never opened
    assert embedded_model_note(tmp_path / "plain.mp4") == EMBEDDED_MODEL_NOTE
    assert "\n" not in EMBEDDED_MODEL_NOTE and "--model" in EMBEDDED_MODEL_NOTE
