"""The linear probe of what narrations say: exact on separable tokens, at chance on noise, and the
command end to end on a tiny world with the embedded model's frame tokens."""

from __future__ import annotations

import pytest
import torch

from streamvlm.experiments.probe import TARGETS, accuracy, fit_probe, narrated_tokens
from tests.cli.conftest import cli  # noqa: F401 (fixture)


def test_probe_reads_a_linear_signal_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    values = ["red", "blue", "green"] * 40
    signal = torch.eye(3)[[["red", "blue", "green"].index(v) for v in values]] * 3
    tokens = torch.cat([signal, torch.randn(len(values), 20, generator=generator)], dim=1)
    probe, classes = fit_probe(tokens, values, steps=200, lr=0.05)
    assert classes == ["blue", "green", "red"]
    assert accuracy(probe, classes, tokens, values) == 1.0
    noise = torch.randn(len(values), 23, generator=generator)
    held = torch.randn(len(values), 23, generator=generator)
    probe, classes = fit_probe(noise, values, steps=200, lr=0.05)
    assert accuracy(probe, classes, held, values) < 0.6  # chance is 1/3
    assert accuracy(probe, ["x", "y", "z"], held, values) == 0.0  # a value it never saw is wrong


@pytest.fixture(scope="module")
def world_and_features(tmp_path_factory):
    from streamvlm.cli import main
    from streamvlm.data.synth import generate_world

    root = tmp_path_factory.mktemp("probe")
    world = generate_world(root / "world", 2, 5, duration=20.0, size=64, split="test", workers=1, progress=False)
    assert main(["encode", str(world.root / "videos"), "--out", str(root / "features"), "--fps", "2"]) == 0
    return world.root, root / "features"


def test_narrated_tokens_are_the_reply_frames(world_and_features):
    import json
    import math

    from safetensors.torch import load_file

    world, features = world_and_features
    data = narrated_tokens(world, features, frames=2)
    videos = json.loads((world / "world.json").read_text())["videos"]
    actions = [(v["uid"], a) for v in videos for a in v["actions"]]
    assert data.tokens.shape[0] == len(actions) == len(data.labels["colour"])
    uid, first = actions[0]
    frames = load_file(features / f"{uid}.mp4.safetensors")["frame_tokens"].float()
    k = math.ceil(first["time"] * 2 - 1e-6)
    assert torch.equal(data.tokens[0], torch.cat([frames[k].reshape(-1), frames[k - 1].reshape(-1)]))
    assert data.labels["kind"][0] == first["noun"] and data.labels["colour"][0] in first["narration"]
    assert set(data.labels) == set(TARGETS)


def test_probe_command(cli, world_and_features):  # noqa: F811
    world, features = world_and_features
    result = cli("probe", world, features, "--heldout-world", world, "--heldout-features", features,
                 "--frames", "1", "2", "--steps", "50")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("linear probe on the frame tokens at the reply frame of ")
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [(f, t) for f in ("1", "2") for t in TARGETS]
    for row in rows:
        train, heldout, majority = (float(x.rstrip("%")) for x in row[2:])
        assert train == heldout and 0 < majority <= 100  # the same world twice


def test_probe_command_names_a_missing_feature_file(cli, world_and_features, tmp_path):  # noqa: F811
    world, _ = world_and_features
    empty = tmp_path / "features"
    empty.mkdir()
    result = cli("probe", world, empty, "--heldout-world", world, "--heldout-features", empty)
    assert result.code == 2
    assert "feature file missing" in result.err and "synth_s5_00000.mp4.safetensors" in result.err


def test_model_colours_scores_every_coloured_narration(world_and_features):
    import json

    from streamvlm.experiments.probe import model_colours
    from streamvlm.model.default import load_default_model

    world, features = world_and_features
    said = model_colours(load_default_model(), world, features)
    narrations = [a for v in json.loads((world / "world.json").read_text())["videos"] for a in v["actions"]]
    assert said.replies == len(narrations) > 0  # every narration names a coloured object
    assert all(0 <= share <= 1 for share in (said.right, said.first_mention, said.follows_swap))
    assert min(said.first_mention, said.said_before) <= said.right <= max(said.first_mention, said.said_before)


def test_probe_command_scores_the_model(cli, world_and_features):  # noqa: F811
    world, features = world_and_features
    result = cli("probe", world, features, "--heldout-world", world, "--heldout-features", features,
                 "--frames", "1", "--steps", "10", "--score-model", "--threads", "1")
    assert result.code == 0, result.err
    last = result.out.splitlines()[-1]
    assert last.startswith("the model at the colour word of ") and "right colour" in last and "swapped" in last
