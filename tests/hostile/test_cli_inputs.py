"""Smaller hostile CLI cases: a source named like a flag, non-finite features and weights, the mode
of feature files, an image folder linking out of itself."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from tests.cli.test_narrate_errors import one_error_line

FAST = ("--no-progress", "--max-new-tokens", "1")


def test_double_dash_ends_the_options(cli, tiny_checkpoint, short_clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(short_clip, tmp_path / "-dash.mp4")
    result = cli("narrate", "--model", tiny_checkpoint, *FAST, "--", "-dash.mp4")
    assert result.code == 0 and result.lines[0].startswith("(0.0s) User:"), result.err
    # after `--` nothing is a flag, as everywhere else
    one_error_line(cli("narrate", "--", "-dash.mp4", "--model", tiny_checkpoint),
                   f"unrecognized arguments: --model {tiny_checkpoint}")
    one_error_line(cli("narrate", "--model", "--", "-dash.mp4"), "argument --model: expected one argument")


def _features(tmp_path, values):
    """A conversation of 4 frames and its feature file holding ``values``."""
    import torch

    from streamvlm.data.features import feature_path, write_features

    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"version": 1, "id": "a", "video": "v.mp4", "fps": 2,
                                "conversation": [{"role": "stream", "num_frames": 4}]}) + "\n")
    write_features(feature_path(tmp_path / "features", "v.mp4"), torch.full((4, 1, 8), values), 2.0, "v.mp4")
    return data


def test_data_check_refuses_non_finite_features_as_eval_and_train_do(cli, tmp_path):
    data = _features(tmp_path, float("nan"))
    result = cli("data", "check", data, "--features", tmp_path / "features")
    assert result.code == 2 and result.err.splitlines()[0] == (
        f"{data}:1: field 'frame_tokens': features: features hold NaN or infinite values (re-encode this video)")
    finite = _features(tmp_path, 0.5)
    assert cli("data", "check", finite, "--features", tmp_path / "features").code == 0


def test_a_checkpoint_with_nan_weights_is_refused_naming_the_tensor(cli, tiny_checkpoint, short_clip, tmp_path):
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    weights = load_file(model / "model.safetensors")
    name = sorted(k for k in weights if k.startswith("language_model."))[0]
    weights[name][0] = float("nan")
    save_file(weights, model / "model.safetensors")
    one_error_line(cli("narrate", short_clip, "--model", model, *FAST),
                   f"{model / 'model.safetensors'}: tensor '{name}' holds NaN or infinite values")


def test_feature_files_follow_the_umask(cli, tiny_checkpoint, short_clip, tmp_path):
    mask = os.umask(0o002)
    try:
        assert cli("encode", short_clip.parent, "--out", tmp_path / "features", "--model", tiny_checkpoint).code == 0
    finally:
        os.umask(mask)
    written = tmp_path / "features" / f"{short_clip.name}.safetensors"
    assert oct(written.stat().st_mode & 0o777) == oct(0o664)


def _png(path, shade: int, size: tuple[int, int] = (32, 32)) -> None:
    import av

    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.height, stream.width = size
        stream.pix_fmt = "rgb24"
        frame = av.VideoFrame.from_ndarray(np.full((*size, 3), shade, np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_an_image_folder_is_its_own_data_root(cli, tiny_checkpoint, tmp_path):
    frames, outside = tmp_path / "frames", tmp_path / "outside"
    frames.mkdir(), outside.mkdir()
    for i in range(3):
        _png(frames / f"{i}.png", 40 * i)
    (frames / "3.png").symlink_to(frames / "0.png")  # a link inside the folder is fine
    assert cli("narrate", frames, "--model", tiny_checkpoint, *FAST).code == 0
    linked = tmp_path / "linked"
    linked.symlink_to(frames)  # and so is a link to the folder itself
    assert cli("narrate", linked, "--model", tiny_checkpoint, *FAST).code == 0

    _png(outside / "secret.png", 200)
    (frames / "4.png").symlink_to(outside / "secret.png")
    one_error_line(cli("narrate", frames, "--model", tiny_checkpoint, *FAST),
                   f"{frames}: image 4.png escapes the data root {frames.resolve()}")


def test_the_weights_check_tells_huge_finite_sums_from_infinities(tmp_path):
    import torch

    from streamvlm.errors import CheckpointError
    from streamvlm.model.checkpoint import check_finite

    check_finite(tmp_path, [("big", torch.full((10,), 3e38)), ("half", torch.full((4,), 6e4, dtype=torch.float16))])
    for bad in (float("inf"), float("-inf"), float("nan")):
        tensor = torch.zeros(8, dtype=torch.bfloat16)
        tensor[3] = bad
        with pytest.raises(CheckpointError, match="tensor 'w' holds NaN or infinite values"):
            check_finite(tmp_path, [("w", tensor)])


def test_an_image_folder_of_mixed_sizes_narrates(cli, tiny_checkpoint, tmp_path):
    """Frames of different sizes are encoded together (each brought to the tower's square first)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, size in enumerate([(32, 32), (1, 1), (8, 8), (30, 64), (64, 30)]):
        _png(frames / f"{i}.png", 40 * i, size)
    result = cli("narrate", frames, "--model", tiny_checkpoint, *FAST)
    assert result.code == 0, result.err
