"""The embedded default model loads from the package, and `build-default` rebuilds one end to end."""

import json
from pathlib import Path

import torch

from streamvlm.experiments.default_model import BuildOptions, build_default_model
from streamvlm.model.checkpoint import load_pretrained
from streamvlm.model.default import DEFAULT_MODEL_DIR, load_default_model
from streamvlm.model.frame_encoder import load_frame_encoder
from tests.cli.conftest import cli  # noqa: F401 (fixture)


def test_embedded_model_loads_and_is_live1plus():
    model = load_default_model()
    assert model.config.tokens_per_frame == 10 and model.frame_encoder is not None
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    assert model.frame_encoder.encode_frames(frames).shape == (2, 10, model.config.vision_hidden_size)


def test_build_default_model_small(tmp_path):
    out = build_default_model(tmp_path / "work", tmp_path / "model",
                              BuildOptions(videos=2, heldout_videos=1, max_steps=2, duration=8.0, tower_epochs=1,
                                           live_fraction=1.0, live_duration=90.0, idle_max=20.0,
                                           tower_layouts=16, align_steps=2, questions=1.0))
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
    # the alignment stage ran first, and the streaming stage started from its model and tokenizer
    aligned = tmp_path / "work" / "align" / "checkpoint-000002"
    run = json.loads((tmp_path / "work" / "run" / "train_config.json").read_text())
    assert run["model"]["init_from"] == str(aligned) and run["tokenizer"]["path"] is None
    assert (aligned / "tokenizer.json").read_text() == (out / "tokenizer.json").read_text()
    samples = (tmp_path / "work" / "world-train" / "alignment.jsonl").read_text().splitlines()
    assert samples and all(json.loads(line)["meta"]["source"] == "synth_alignment" for line in samples)
    # the training mix holds the narration dialogues with questions asked along the way (questions=1.0)
    train = [json.loads(line) for line in (tmp_path / "work" / "train.jsonl").read_text().splitlines()]
    asked = [r for r in train if r["meta"]["source"] == "narration_with_questions"]
    assert asked and all(r["id"].endswith("/asked") for r in asked)
    assert any(t["role"] == "user" and t["time"] > r["start"] for r in asked for t in r["conversation"])


GOLDEN = Path(__file__).parents[1] / "golden" / "default_model_narration.txt"


def test_shipped_model_narrates_a_fixed_clip_as_recorded(tmp_path, cli):  # noqa: F811
    """The embedded model on a fixed new clip (seed 3, 40 s), as a user runs it: the same lines as
    tests/golden/default_model_narration.txt (rewrite it only when the shipped model or the
    world's rendering changes on purpose)."""
    from streamvlm.data.synth import generate_world

    world = generate_world(tmp_path / "clip", 1, 3, duration=40.0, size=64, split="test", workers=1, progress=False)
    result = cli("narrate", world.video_path(world.videos[0].uid), "--query", "12.5:What am I doing?",
                 "--threads", "1")
    assert result.code == 0, result.err
    assert result.out.splitlines()[:-1] == GOLDEN.read_text().splitlines()  # the summary line has timings
