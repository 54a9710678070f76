"""``streamvlm eval`` end to end with a tiny checkpoint and feature files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from streamvlm.cli import main
from streamvlm.data.features import write_features
from streamvlm.model.checkpoint import save_pretrained

from ..helpers import tiny_model

STREAM = {"version": 1, "id": "s1", "video": "clips/a.mp4", "fps": 2.0, "start": 0.5, "meta": {"x": 1},
          "conversation": [{"role": "stream", "num_frames": 3, "learn": True},
                           {"role": "assistant", "content": "You pick up the cup.", "learn": True},
                           {"role": "stream", "num_frames": 2, "learn": True},
                           {"role": "assistant", "content": "You put the box.", "learn": True}]}
COIN = {"version": 1, "id": "c1", "video": "clips/a.mp4", "fps": 2.0, "start": 0.0, "task": "coin_step",
        "answer": "Cut onion.", "extra": "ignored",
        "conversation": [{"role": "stream", "num_frames": 2}, {"role": "user", "content": "What is the action?"}]}
LTA = {"version": 1, "id": "l1", "video": "clips/a.mp4", "fps": 2.0, "start": 0.0, "task": "lta",
       "future_verbs": ["cut", "put"], "future_nouns": ["onion", "pan"],
       "conversation": [{"role": "user", "content": "Anticipate the next 2 actions."},
                        {"role": "stream", "num_frames": 2}]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model = tiny_model()
    save_pretrained(model, root / "ckpt")
    torch.manual_seed(0)
    feats = torch.randn(8, model.config.tokens_per_frame, model.config.vision_hidden_size)
    write_features(root / "features" / "clips" / "a.mp4.safetensors", feats, 2.0, "clips/a.mp4",
                   model.frame_encoder.frame_record())
    data = root / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in (STREAM, COIN, LTA)) + "\n")
    return root


def run(capsys, model, data, *args):
    code = main(["eval", str(data), "--model", str(model), *map(str, args), "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_with_downstream(setup, capsys):
    code, out, _ = run(capsys, setup / "ckpt", setup / "data.jsonl", "--features", setup / "features",
                       "--json", "--downstream", "--lta-beams", "2", "--max-new-tokens", "12")
    assert code == 0
    result = json.loads(out)
    for key in ("lm_ppl", "time_diff", "fluency", "lm_correctness"):
        assert math.isfinite(result[key])
    assert result["conversations"] == 1 and result["lm_turns"] == 2
    assert 0.0 <= result["coin_step"] <= 1.0
    assert 0.0 <= result["lta_action_ed"] <= 1.0
    assert result["downstream_counts"] == {"coin_step": 1, "lta": 1}


def test_table_and_limit(setup, capsys):
    code, out, _ = run(capsys, setup / "ckpt", setup / "data.jsonl", "--features", setup / "features", "--limit", "2")
    assert code == 0
    assert "LM-PPL" in out and "Fluency" in out and "downstream lines skipped" in out


def test_user_errors(setup, capsys, tmp_path):
    code, _, err = run(capsys, setup / "ckpt", tmp_path / "missing.jsonl", "--features", setup / "features")
    assert code == 2 and "missing.jsonl" in err and "no such file" in err
    code, _, err = run(capsys, setup / "ckpt", setup / "data.jsonl", "--features", tmp_path / "nofeat")
    assert code == 2 and f"--features {tmp_path / 'nofeat'}: no such folder" in err
    code, _, err = run(capsys, tmp_path / "nomodel", setup / "data.jsonl", "--features", setup / "features")
    assert code == 2 and "nomodel" in err and err.count("\n") == 1
    narrow = tmp_path / "narrow"
    write_features(narrow / "clips" / "a.mp4.safetensors", torch.randn(8, 10, 7), 2.0, "clips/a.mp4")
    code, _, err = run(capsys, setup / "ckpt", setup / "data.jsonl", "--features", narrow)
    assert code == 2 and "width 7" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**COIN, "task": "coin_bogus"}) + "\n")
    code, _, err = run(capsys, setup / "ckpt", bad, "--features", setup / "features", "--downstream")
    assert code == 2 and "line 1" in err and "task" in err
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({**STREAM, "start": 3.0}) + "\n")
    code, _, err = run(capsys, setup / "ckpt", short, "--features", setup / "features")
    assert code == 2 and "num_frames" in err


def test_non_finite_features_are_refused_not_scored(setup, capsys, tmp_path):
    feats = torch.randn(8, 10, 32)
    feats[1, 3, 5] = float("nan")
    nan = tmp_path / "nan"
    write_features(nan / "clips" / "a.mp4.safetensors", feats, 2.0, "clips/a.mp4")
    code, out, err = run(capsys, setup / "ckpt", setup / "data.jsonl", "--features", nan, "--json")
    assert code == 2 and out == "" and "NaN or infinite" in err and "a.mp4.safetensors" in err


def test_bad_flag_values_are_refused_before_loading(setup, capsys, tmp_path):
    for flags, message in ((["--threshold", "nan"], "--threshold: must be a finite number"),
                           (["--threshold", "1.5"], "--threshold: should be less than or equal to 1"),
                           (["--limit", "0"], "--limit: should be greater than or equal to 1"),
                           (["--lta-beams", "x"], "--lta-beams: should be a valid integer")):
        code, _, err = run(capsys, setup / "ckpt", setup / "data.jsonl", "--features", setup / "features", *flags)
        assert code == 2 and message in err, err


def test_rules_are_named_and_upstream_rules_are_selectable(setup, capsys):
    """The output says which rules were used; ``--rules upstream`` is threshold 0 (argmax), every
    turn with a learned frame timed, missing metrics neutral; a flag overrides one rule."""
    args = (setup / "ckpt", setup / "data.jsonl", "--features", setup / "features", "--json")
    default = json.loads(run(capsys, *args)[1])
    assert (default["rules"], default["threshold"], default["timing"], default["missing_metric"]) == (
        "streamvlm", 0.725, "reply_frame", "skip")
    upstream = json.loads(run(capsys, *args, "--rules", "upstream")[1])
    assert (upstream["rules"], upstream["threshold"], upstream["timing"], upstream["missing_metric"]) == (
        "upstream", 0.0, "learned_frames", "neutral")
    mixed = json.loads(run(capsys, *args, "--rules", "upstream", "--threshold", "0.5")[1])
    assert (mixed["threshold"], mixed["timing"]) == (0.5, "learned_frames")
    code, out, _ = run(capsys, *args[:-1], "--rules", "upstream")
    assert code == 0 and "rules" in out and "upstream (timed turns: learned_frames" in out
