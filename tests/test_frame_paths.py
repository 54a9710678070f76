"""One frame path: the same video gives the same pixels to the frame encoder through narrate,
encode, the training dataset and the server (a client streaming to it), each frame resized once,
at decoding, by upstream's rule (128x66 frames with a 64-pixel tower: 16.5 rows a half, which
ffmpeg rounds to 34 rows)."""

from __future__ import annotations

import json

import pytest
import torch

from streamvlm.model.checkpoint import save_pretrained
from streamvlm.model.config import VisionConfig
from streamvlm.model.frame_encoder import FrameEncoder
from streamvlm.model.presets import tiny_config, tiny_tower_config, train_tokenizer
from streamvlm.model.vlm import StreamVLM
from tests.cli.conftest import cli  # noqa: F401 (fixture)
from tests.helpers import write_textured_video

SIZE, ROWS = 64, 34


@pytest.fixture(scope="module")
def upstream_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = tiny_config()
    config.vision = VisionConfig(tower_config=tiny_tower_config(image_size=SIZE), resize="upstream")
    folder = tmp_path_factory.mktemp("paths") / "checkpoint"
    save_pretrained(StreamVLM.from_config(config, train_tokenizer()), folder)
    return folder


@pytest.fixture
def seen(monkeypatch):
    """Every call of the frame encoder's preprocessing: (input frame size, normalised pixels)."""
    calls: list[tuple[tuple[int, int], torch.Tensor]] = []
    real = FrameEncoder.preprocess

    def spy(self, frames):
        out = real(self, frames)
        size = tuple(frames.shape[-3:-1]) if frames.shape[-1] == 3 else tuple(frames.shape[-2:])
        calls.append((size, out.detach().float().cpu().clone()))
        return out

    monkeypatch.setattr(FrameEncoder, "preprocess", spy)
    return calls


def pixels(calls) -> torch.Tensor:
    assert calls and {size for size, _ in calls} == {(ROWS, SIZE)}  # fitted at decoding: no resize here
    return torch.cat([p for _, p in calls])


def test_every_path_gives_the_encoder_the_same_pixels(upstream_checkpoint, seen, cli, tmp_path):  # noqa: F811
    from streamvlm.data.dataset import RawFrameDataset
    from streamvlm.model.loading import ModelSource, load_model
    from streamvlm.serve.app import create_app
    from streamvlm.serve.server import BackgroundServer

    videos = tmp_path / "videos"
    videos.mkdir()
    video = write_textured_video(videos / "clip.mp4", 66, 128, frames=4, fps=2)
    flags = ("--model", upstream_checkpoint, "--device", "cpu", "--threads", "1")

    assert cli("narrate", video, *flags, "--no-progress", "--max-new-tokens", "2").code == 0
    narrate = pixels(seen)
    seen.clear()
    result = cli("encode", videos, "--out", tmp_path / "features", *flags)
    assert result.code == 0, result.err
    encode = pixels(seen)
    seen.clear()
    model = load_model(ModelSource(model=str(upstream_checkpoint), device="cpu"))
    record = {"version": 1, "id": "r", "video": "clip.mp4", "fps": 2.0, "start": 0.0,
              "conversation": [{"role": "stream", "num_frames": 4, "learn": True}]}
    (tmp_path / "data.jsonl").write_text(json.dumps(record) + "\n")
    dataset = RawFrameDataset(tmp_path / "data.jsonl", videos, model.renderer, model.frame_encoder)
    dataset_pixels = dataset.load_frames(dataset.records[0])
    assert torch.equal(dataset_pixels, pixels(seen))
    seen.clear()
    with BackgroundServer(create_app(model)) as server:
        result = cli("narrate", video, "--server", server.url, "--no-progress")
    assert result.code == 0, result.err
    served = pixels(seen)

    assert narrate.shape == (4, 3, SIZE, SIZE)
    for other in (encode, dataset_pixels, served):
        assert torch.equal(other, narrate)
    black = (narrate == -1).all(dim=1).all(dim=-1)  # rows of black padding: 64 - 34, centred, even
    assert black[:, :14].all() and not black[:, 14:14 + ROWS].any() and black[:, 14 + ROWS:].all()
