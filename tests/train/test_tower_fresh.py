"""Tower pretraining on fresh layouts: every step plans and renders new videos (no video
encoding); the frames and labels are the renderer's and the labeller's, the stream is a pure function
of its seed, and `streamvlm pretrain-tower --fresh-layouts` trains and saves a tower."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import streamvlm
from streamvlm.cli import main
from streamvlm.data.synth import generate_world, plan_video, render_video_frames
from streamvlm.data.synth.labels import frame_labels
from streamvlm.model.frame_encoder import load_frame_encoder
from streamvlm.train.tower_pretrain import FreshLayouts, fresh_batches, yuv420_roundtrip

TOWER = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
             num_attention_heads=2, image_size=32, patch_size=8)
FRESH = FreshLayouts(videos=64, size=32, duration=20.0, seed=123, frames_per_video=4)


def test_frames_and_labels_are_the_renderers_and_the_labellers():
    raw = FreshLayouts(videos=8, size=32, duration=20.0, seed=123, frames_per_video=4, codec=False)
    for index in (0, 5):
        spec, keep = raw.plan(index)
        assert spec == plan_video(123, index, duration=20.0, fps=spec.fps, size=32, split="train")
        assert len(keep) == 4 and len(set(keep.tolist())) == 4 and keep.max() < spec.num_frames
        frames, labels = raw.video(index)
        rendered = np.stack(list(render_video_frames(spec)))
        np.testing.assert_array_equal(frames, rendered[keep])
        np.testing.assert_array_equal(labels, frame_labels(spec, (keep / spec.fps).tolist()))
    # the batch of a step: its videos' frames in order, through yuv420p (close to, not equal to, the raw frames)
    images, labels = FRESH.batch(1, 8)
    first, first_labels = raw.video(2)  # 8 frames per step = videos 2 and 3
    assert images.shape == (8, 32, 32, 3) and images.dtype == torch.uint8 and labels.shape == (8, 7)
    torch.testing.assert_close(labels[:4], torch.from_numpy(first_labels))
    np.testing.assert_array_equal(images[:4].numpy(), yuv420_roundtrip(first))
    diff = np.abs(images[:4].numpy().astype(int) - first.astype(int))
    assert 0 < diff.mean() < 12  # chroma at half resolution: small objects lose some colour


def test_yuv420_roundtrip_of_a_batch_is_that_of_each_frame():
    frames = np.concatenate([FreshLayouts(videos=2, size=32, codec=False).video(i)[0] for i in range(2)])
    frames[0] = np.random.default_rng(0).integers(0, 256, frames[0].shape)  # a frame of pure colour noise
    alone = np.concatenate([yuv420_roundtrip(f[None]) for f in frames])
    together = yuv420_roundtrip(frames)
    assert together.shape == frames.shape and together.dtype == np.uint8
    assert np.abs(together.astype(int) - alone.astype(int)).max() <= 2


# two rendering workers on purpose, also where the affinity holds one CPU (torch then warns)
@pytest.mark.filterwarnings("ignore:This DataLoader will create 2 worker processes:UserWarning")
def test_the_stream_is_deterministic_and_new_every_step():
    a_images, a_labels = FRESH.batch(3, 16)
    b_images, b_labels = FreshLayouts(**vars(FRESH)).batch(3, 16)
    assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)
    c_images, _ = FRESH.batch(4, 16)
    assert not torch.equal(a_images, c_images)
    layouts = {tuple((o.kind, o.colour, o.x, o.y) for o in FRESH.plan(i)[0].objects) for i in range(16)}
    assert len(layouts) == 16  # every video a new table
    other_seed = FreshLayouts(**{**vars(FRESH), "seed": 124}).batch(3, 16)[0]
    assert not torch.equal(a_images, other_seed)
    # steps in order whatever renders them (here, or two worker processes)
    here = list(fresh_batches(FRESH, 8, 4, workers=0))
    workers = list(fresh_batches(FRESH, 8, 4, workers=2))
    assert [torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(here, workers)] == [True] * 4
    assert torch.equal(here[2][0], FRESH.batch(2, 8)[0])
    assert FRESH.steps(8) == 32 and FRESH.per_step(8) == 2 and FRESH.per_step(6) == 2


def test_busy_fraction_puts_something_in_the_hand():
    plain = np.concatenate([FRESH.video(i)[1] for i in range(12)])
    busy = FreshLayouts(**{**vars(FRESH), "busy": 0.75})
    labels = np.concatenate([busy.video(i)[1] for i in range(12)])
    assert (labels[:, 0] > 0).mean() >= 0.6 > (plain[:, 0] > 0).mean()
    assert ((labels[:, 0] > 0) == (labels[:, 1] > 0)).all()  # kind and colour of the held object go together


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh") / "world"
    generate_world(root, num_videos=1, seed=11, duration=8.0, size=32, fps=2.0, split="train", workers=1,
                   progress=False)
    return root


def test_cli_pretrains_on_fresh_layouts_quickly(world, tmp_path, capsys):
    config = tmp_path / "recipe.json"
    recipe = json.loads((Path(streamvlm.__file__).parent / "configs" / "tiny-synth.json").read_text())
    recipe["model"]["config"]["vision"]["tower_config"] = TOWER
    config.write_text(json.dumps(recipe))
    assert main(["pretrain-tower", str(world), "--out", str(tmp_path / "tower"), "--recipe", str(config),
                 "--fresh-layouts", "12", "--frames-per-layout", "4", "--batch-size", "8", "--layout-seed", "5",
                 "--heldout", str(world), "--heldout-every", "3", "--render-workers", "0", "--no-progress"]) == 0
    assert "tower saved to" in capsys.readouterr().out
    report = json.loads((tmp_path / "tower" / "pretrain.json").read_text())
    assert report["steps"] == 6 and report["frames"] == 48
    assert report["fresh_layouts"] == {"videos": 12, "size": 32, "duration": 8.0, "seed": 5, "frames_per_video": 4,
                                       "busy": None, "codec": True}
    assert [point["step"] for point in report["heldout_curve"]] == [3]
    assert set(report["heldout_accuracy"]) == {"held_kind", "held_colour", "verb", "object_kind", "object_colour",
                                               "target_kind", "target_colour"}
    assert set(report["heldout_accuracy_present"]) == set(report["heldout_accuracy"])
    assert load_frame_encoder(tmp_path / "tower").tokens_per_frame == 10
