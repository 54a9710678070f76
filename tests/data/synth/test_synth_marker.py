"""A synthetic-world video is recognised by the tag ``streamvlm synth`` writes into its container."""

from __future__ import annotations

import av

from streamvlm.data.synth.marker import (
    EMBEDDED_MODEL_NOTE,
    SYNTH_VIDEO_TAG,
    embedded_model_note,
    is_synthetic_video,
)

from ...helpers import write_textured_video


def _plain_video(path, comment: str | None = None):
    """A 1-second 64-pixel h264 video, optionally with a container comment."""
    return write_textured_video(path, 64, 64, frames=4, fps=4, comment=comment)


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
