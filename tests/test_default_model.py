"""The embedded default model loads from the package, and `build-default` rebuilds one end to end."""

import json

import torch

from streamvlm.checkpoint import load_pretrained
from streamvlm.default_model import DEFAULT_MODEL_DIR, BuildOptions, build_default_model, load_default_model
from streamvlm.frame_encoder import load_frame_encoder


def test_embedded_model_loads_and_is_live1plus():
    model = load_default_model()
    assert model.config.tokens_per_frame == 10 and model.frame_encoder is not None
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    assert model.frame_encoder.encode_frames(frames).shape == (2, 10, model.config.vision_hidden_size)


def test_build_default_model_small(tmp_path):
    out = build_default_model(tmp_path / "work", tmp_path / "model",
                              BuildOptions(videos=2, heldout_videos=1, max_steps=2, duration=8.0, tower_epochs=1,
                                           live_fraction=1.0, live_duration=90.0, idle_max=20.0,
                                           tower_layouts=16))
    assert out == tmp_path / "model" and not (out / "trainer_state.pt").exists()
    model = load_pretrained(out)
    assert model.config.tokens_per_frame == 10
    assert model.config.stream_kv_budget == 1024  # the recipe's: streams of the model are bounded by it
    world = json.loads((tmp_path / "work" / "world-train" / "world.json").read_text())
    assert all(video["idle"] for video in world["videos"])  # live-like training streams, with idle stretches
    # the pretrained tower is frozen during training: the saved model carries it unchanged
    tower = load_frame_encoder(tmp_path / "work" / "tower")
    for name, value in tower.tower.state_dict().items():
        assert torch.equal(model.frame_encoder.tower.state_dict()[name], value), name
    assert model.config.vision.name_or_path is None  # self-contained: the tower's config is inside
    assert json.loads((tmp_path / "work" / "tower" / "pretrain.json").read_text())["fresh_layouts"]["videos"] == 16
    assert str(tmp_path) not in (out / "config.json").read_text()  # and no trace of where it came from
    assert (tmp_path / "work" / "features-heldout").is_dir()  # ready for `streamvlm eval`
    assert (tmp_path / "work" / "world-heldout" / "narration.jsonl").read_text().strip()  # held-out conversations
    assert DEFAULT_MODEL_DIR.is_dir()  # the shipped model was not touched
