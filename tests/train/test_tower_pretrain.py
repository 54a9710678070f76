"""`streamvlm pretrain-tower`: a tower learns from a synthetic world's frames, saves as a
frame-encoder folder that `encode` and a training config can use, and bad input fails cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import streamvlm
from streamvlm.cli import main
from streamvlm.data.features import feature_path, load_frames
from streamvlm.data.synth import generate_world
from streamvlm.model.config import VisionConfig
from streamvlm.model.frame_encoder import load_frame_encoder
from streamvlm.train.tower_pretrain import TowerPretrainOptions, load_world_frames, pretrain_tower

TOWER = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
             num_attention_heads=2, image_size=32, patch_size=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tower") / "world"
    generate_world(root, num_videos=2, seed=11, duration=12.0, size=64, fps=8.0, split="train", workers=1,
                   progress=False)
    return root


def test_frames_and_labels_line_up(world):
    images, labels = load_world_frames(world, 2.0, 32, progress=False)
    assert images.shape == (48, 32, 32, 3) and images.dtype == torch.uint8
    assert labels.shape == (48, 7) and (labels > 0).any()


def test_pretrain_lowers_the_loss_and_saves_a_frame_encoder(world, tmp_path):
    vision = VisionConfig(tower_config=TOWER, use_pooled=True, pool_size=2)
    report = pretrain_tower(vision, world, tmp_path / "tower", heldout_world=world, progress=False,
                            options=TowerPretrainOptions(epochs=30, batch_size=16, lr=3e-3))
    assert report["final_loss"] < 0.7 * report["first_loss"]
    accuracy = report["heldout_accuracy"]
    assert set(accuracy) == {"held_kind", "held_colour", "verb", "object_kind", "object_colour",
                             "target_kind", "target_colour"}
    assert json.loads((tmp_path / "tower" / "pretrain.json").read_text())["steps"] == report["steps"]
    encoder = load_frame_encoder(tmp_path / "tower")
    assert encoder.tokens_per_frame == 5 and encoder.image_size == 32 and encoder.hidden_size == 32
    frames = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    again = load_frame_encoder(tmp_path / "tower").eval()
    with torch.no_grad():
        assert torch.equal(encoder.eval().encode_frames(frames), again.encode_frames(frames))


def test_cli_pretrain_then_encode_with_the_tower(world, tmp_path, capsys):
    config = tmp_path / "recipe.json"
    recipe = json.loads((Path(streamvlm.__file__).parent / "configs" / "tiny-synth.json").read_text())
    recipe["model"]["config"]["vision"]["tower_config"] = TOWER
    config.write_text(json.dumps(recipe))
    tower = tmp_path / "tower"
    assert main(["pretrain-tower", str(world), "--out", str(tower), "--recipe", str(config), "--epochs", "1",
                 "--heldout", str(world), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "tower saved to" in out and "held-out held_colour" in out
    assert main(["encode", str(world / "videos"), "--model", str(tower), "--out", str(tmp_path / "features")]) == 0
    video = sorted((world / "videos").iterdir())[0]
    tokens = load_frames(feature_path(tmp_path / "features", video.name), 0, 24)
    assert tokens.shape == (24, 10, 32)
    images, _ = load_world_frames(world, 2.0, 32, progress=False)
    with torch.no_grad():
        expected = load_frame_encoder(tower).eval().encode_frames(images[:24])
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-5)


def test_cli_refuses_a_folder_that_is_not_a_world(tmp_path, capsys):
    assert main(["pretrain-tower", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "not a synthetic world" in err and "Traceback" not in err


def test_cli_refuses_a_config_without_a_tower_to_build(world, tmp_path, capsys):
    config = tmp_path / "recipe.json"
    config.write_text(json.dumps({"model": {"preset": "tiny"}}))
    assert main(["pretrain-tower", str(world), "--out", str(tmp_path / "t"), "--recipe", str(config)]) == 2
    assert "tower_config" in capsys.readouterr().err


def test_bad_frame_encoder_folder_is_a_clear_error(tmp_path):
    (tmp_path / "frame_encoder.json").write_text("{not json")
    with pytest.raises(Exception, match="frame_encoder.json"):
        load_frame_encoder(tmp_path)
