"""Frame preprocessing: upstream's (the released model's) and streamvlm's, on non-square frames.

Upstream prepares video with ffmpeg: ``scale`` so the long side is 384 (bicubic, short side
``-2``: even) then ``pad=384:384:(ow-iw)/2:(oh-ih)/2`` in black, and normalises with
mean = std = 0.5. The references below are computed independently of
:func:`streamvlm.model.frame_encoder.resize_pad_upstream`: one with torch (bicubic + an explicit centred
canvas), one with ffmpeg's own scaler (PyAV's ``reformat``, swscale bicubic).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamvlm.model.config import VisionConfig
from streamvlm.model.frame_encoder import FrameEncoder, load_frame_encoder, save_frame_encoder, upstream_frame_geometry
from streamvlm.model.presets import tiny_tower_config


def encoder(resize: str, size: int = 64) -> FrameEncoder:
    torch.manual_seed(0)
    return FrameEncoder.from_config(VisionConfig(tower_config=tiny_tower_config("siglip"), image_size=size,
                                                 resize=resize))


def smooth_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 RGB frame of low-frequency content (kernels differ little on it), never black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [40 + 180 * (0.5 + 0.5 * np.sin(2 * np.pi * (a * yy + b * xx) + c))
             for a, b, c in rng.uniform(0.3, 1.5, size=(3, 3))]
    return np.stack(chans, axis=-1).round().clip(1, 255).astype(np.uint8)


def ffmpeg_offsets(size: int, new_h: int, new_w: int) -> tuple[int, int]:
    """ffmpeg pad: x = (ow - iw) / 2 evaluated, truncated, then aligned down to the chroma step (2)."""
    return int((size - new_h) / 2) // 2 * 2, int((size - new_w) / 2) // 2 * 2


def pixels(enc: FrameEncoder, frame: np.ndarray) -> np.ndarray:
    """preprocess, back to [0, 255] ``[S, S, 3]``."""
    x = enc.preprocess(torch.from_numpy(frame)[None])[0].float()
    return ((x * enc.std[0] + enc.mean[0]) * 255).permute(1, 2, 0).numpy()


@pytest.mark.parametrize(("h", "w", "size", "expected"), [
    (1080, 1920, 384, (216, 384, 84, 0)),   # 16:9
    (480, 640, 384, (288, 384, 48, 0)),     # 4:3
    (640, 480, 384, (384, 288, 0, 48)),     # portrait
    (270, 480, 64, (36, 64, 14, 0)),
    (100, 640, 384, (60, 384, 162, 0)),
    (384, 384, 384, (384, 384, 0, 0)),
])
def test_upstream_geometry(h, w, size, expected):
    assert upstream_frame_geometry(h, w, size) == expected
    new_h, new_w = expected[:2]
    assert (new_h % 2, new_w % 2) == (0, 0)
    assert expected[2:] == ffmpeg_offsets(size, new_h, new_w)


@pytest.mark.parametrize(("h", "w"), [(54, 96), (96, 54), (45, 60), (150, 200), (30, 100)])
def test_upstream_preprocess_equals_torch_reference(h, w):
    """Bicubic resize of the long side to S, 8-bit rounding, centred black canvas, mean = std = 0.5."""
    size = 64
    enc = encoder("upstream", size)
    frame = smooth_frame(h, w)
    new_h, new_w, *_ = upstream_frame_geometry(h, w, size)
    top, left = ffmpeg_offsets(size, new_h, new_w)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].double()
    resized = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    canvas = torch.zeros(1, 3, size, size, dtype=torch.float64)
    canvas[..., top:top + new_h, left:left + new_w] = resized.round().clamp(0, 255)
    reference = (canvas / 255.0 - 0.5) / 0.5
    out = enc.preprocess(torch.from_numpy(frame)[None])
    assert out.shape == (1, 3, size, size)
    torch.testing.assert_close(out.double(), reference, atol=1e-5, rtol=0)
    # content centred: as many black rows (columns) on each side, up to the even alignment
    black = (out[0] == -1).all(dim=0)
    rows, cols = black.all(dim=1), black.all(dim=0)
    assert int(rows[:top].sum()) == top and int(rows[top + new_h:].sum()) == size - new_h - top
    assert int(cols[:left].sum()) == left and int(cols[left + new_w:].sum()) == size - new_w - left
    assert abs((size - new_h - top) - top) <= 2 and abs((size - new_w - left) - left) <= 2


@pytest.mark.parametrize(("h", "w"), [(216, 384), (270, 480), (480, 270)])
def test_upstream_preprocess_close_to_ffmpeg_scaler(h, w):
    """ffmpeg's own bicubic scaler (swscale, through PyAV) placed on the same centred canvas: the
    kernels differ slightly (swscale's bicubic vs torch's), the geometry not at all."""
    av = pytest.importorskip("av")
    size = 64
    frame = smooth_frame(h, w, seed=1)
    new_h, new_w, top, left = upstream_frame_geometry(h, w, size)
    scaled = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
        width=new_w, height=new_h, format="rgb24", interpolation="BICUBIC").to_ndarray()
    reference = np.zeros((size, size, 3))
    reference[top:top + new_h, left:left + new_w] = scaled
    ours = pixels(encoder("upstream", size), frame)
    content = np.zeros((size, size), dtype=bool)
    content[top:top + new_h, left:left + new_w] = True
    assert np.abs(ours[~content]).max() < 1e-3  # the padding is black exactly where ffmpeg puts it
    diff = np.abs(ours[content] - reference[content])
    assert diff.mean() < 0.5 and diff.max() <= 2.0, (diff.mean(), diff.max())  # measured: 0.06 and 1


def test_streamvlm_preprocess_pads_bottom_right():
    """The default (embedded model, earlier checkpoints): bilinear, padding at the bottom/right."""
    enc = encoder("streamvlm", 64)
    ours = pixels(enc, smooth_frame(36, 64))
    assert np.abs(ours[36:]).max() < 1e-3 and ours[:36].min() > 0.5
    up = pixels(encoder("upstream", 64), smooth_frame(36, 64))
    assert np.abs(up[:14]).max() < 1e-3 and np.abs(up[50:]).max() < 1e-3 and up[14:50].min() > 0.5


def test_resize_rule_is_saved_with_the_frame_encoder(tmp_path):
    save_frame_encoder(encoder("upstream"), tmp_path / "fe")
    assert load_frame_encoder(tmp_path / "fe").config.resize == "upstream"


def test_square_frames_at_the_tower_size_are_the_same_under_both_rules():
    """The synthetic worlds (64x64 frames) on the embedded model's 64-pixel tower: no resize and no
    padding either way, so its held-out scores cannot change with the rule."""
    frame = torch.from_numpy(smooth_frame(64, 64))[None]
    assert torch.equal(encoder("upstream").preprocess(frame), encoder("streamvlm").preprocess(frame))
