"""``streamvlm data check``: every malformed line reported as FILE:LINE: field 'x': ..., exit 2."""

from __future__ import annotations

import json
import os

import pytest
import torch

from streamvlm.cli import main
from streamvlm.data.features import write_features

GOOD = {"version": 1, "id": "a", "video": "sub/a.mp4", "fps": 2.0, "start": 0.5, "conversation": [
    {"role": "system", "content": "S"}, {"role": "stream", "num_frames": 3, "time": 0.5, "learn": True},
    {"role": "assistant", "content": "hi", "time": 1.5, "learn": True}]}


def line(**changes):
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


@pytest.fixture
def root(tmp_path):
    (tmp_path / "videos" / "sub").mkdir(parents=True)
    (tmp_path / "videos" / "sub" / "a.mp4").write_bytes(b"x")
    (tmp_path / "outside.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "outside.mp4", tmp_path / "videos" / "link.mp4")
    return tmp_path


def run_check(capsys, *argv):
    code = main(["data", "check", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_good_file_is_ok(root, capsys):
    path = root / "ok.jsonl"
    path.write_text(line() + "\n\n" + line(id="b") + "\n")
    assert run_check(capsys, path, "--videos-root", root / "videos") == (0, "OK: 2 conversations, 6 frames\n", "")


def test_each_bad_line_is_named(root, capsys):
    bad_turn = [{"role": "stream", "num_frames": 2}, {"role": "assistant", "content": "x", "time": 3.0},
                {"role": "user", "content": "y", "time": 1.0}]
    lines = [
        line(),
        '{"version": 1, "id": "t"',                        # 2 truncated JSON
        line(fps=0),                                       # 3
        line(fps="2"),                                     # 4
        line(version=2),                                   # 5
        line(video="../escape.mp4"),                       # 6
        line(video="/etc/passwd"),                         # 7
        line(video="link.mp4"),                            # 8 symlink escaping the root
        line(video="sub/missing.mp4"),                     # 9
        line(conversation=bad_turn),                       # 10 time goes backwards
        line(conversation=[{"role": "narrator"}]),         # 11
        line(start=float("nan")),                          # 12
        line(id=...),                                      # 13
        line(extra=1),                                     # 14
    ]
    path = root / "bad.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "\xff"}\n')  # 15 bad UTF-8
    code, out, err = run_check(capsys, path, "--videos-root", root / "videos")
    assert code == 2 and out == ""
    errors = err.splitlines()
    assert errors[-1] == f"14 error(s) in {path}"
    expected = [
        (2, "invalid JSON"), (3, "field 'fps': must be > 0"), (4, "field 'fps': must be a finite number"),
        (5, "field 'version': unsupported version 2"), (6, "field 'video': must not contain '..'"),
        (7, "field 'video': must be a path relative to the data root"),
        (8, "field 'video': 'link.mp4' resolves outside the data root"),
        (9, "field 'video': no such file under"),
        (10, "field 'conversation': turn 2 ('user'): field 'time' goes backwards"),
        (11, "field 'conversation': turn 0: unknown role 'narrator'"), (12, "refused JSON at line 1 column"),
        (13, "field 'id': missing"), (14, "field 'extra': unknown field"), (15, "not valid UTF-8"),
    ]
    for (number, text), got in zip(expected, errors):
        assert got.startswith(f"{path}:{number}: ") and text in got, got


def test_features_must_cover_the_frames(root, capsys):
    features = root / "features"
    features.mkdir()
    path = root / "f.jsonl"
    path.write_text(line() + "\n")
    code, _, err = run_check(capsys, path, "--features", features)
    assert code == 2 and f"{path}:1: field 'video': features:" in err and "feature file missing" in err
    write_features(features / "sub" / "a.mp4.safetensors", torch.zeros(3, 10, 4), 2.0, "sub/a.mp4")
    code, _, err = run_check(capsys, path, "--features", features)
    assert code == 2 and f"{path}:1: field 'conversation': features: needs frames 1..3 but the file holds 3" in err
    write_features(features / "sub" / "a.mp4.safetensors", torch.zeros(4, 10, 4), 1.0, "sub/a.mp4")
    code, _, err = run_check(capsys, path, "--features", features)
    assert code == 2 and "field 'fps': features: features are at 1.0 fps, the conversation at 2.0 fps" in err
    write_features(features / "sub" / "a.mp4.safetensors", torch.zeros(4, 10, 4), 2.0, "sub/a.mp4")
    assert run_check(capsys, path, "--features", features)[:2] == (0, "OK: 1 conversations, 3 frames\n")
    (features / "sub" / "a.mp4.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    code, _, err = run_check(capsys, path, "--features", features)
    assert code == 2 and "truncated or corrupt" in err


def test_convert_cli_writes_checkable_jsonl(root, capsys):
    ann = root / "goalstep.json"
    ann.write_text(json.dumps({"videos": [{"video_uid": "sub/a", "start_time": 0.0, "end_time": 5.0,
                                           "goal_category": "c", "goal_description": "make tea", "segments": [
                                               {"start_time": 0.0, "end_time": 2.0, "step_category": "s",
                                                "step_description": "boil water"}]},
                                          {"video_uid": "nope", "start_time": 0.0, "end_time": 5.0,
                                           "goal_category": "c", "goal_description": "x", "segments": [
                                               {"start_time": 0.0, "end_time": 2.0, "step_category": "s",
                                                "step_description": "y"}]}]}))
    out = root / "out" / "chat.jsonl"
    code = main(["data", "convert", "livechat", str(ann), "--videos-root", str(root / "videos"), "--out", str(out)])
    assert code == 0
    assert "wrote 1 conversations" in capsys.readouterr().out
    code, stdout, _ = run_check(capsys, out, "--videos-root", root / "videos")
    assert code == 0 and stdout.startswith("OK: 1 conversations, ")
    bad = root / "broken.json"
    bad.write_text('{"videos": [{"video_uid": "a", "start_time": NaN')
    assert main(["data", "convert", "livechat", str(bad), "--videos-root", str(root / "videos"),
                 "--out", str(out)]) == 2
    assert "refused JSON at line 1 column 46: NaN is not a JSON number" in capsys.readouterr().err


def test_convert_lta_sizes_come_from_the_flags(tmp_path, capsys):
    from streamvlm.data.synth import generate_world

    world = generate_world(tmp_path / "w", 1, 1, duration=60.0, size=32, split="train", workers=1, progress=False)
    annotations = world.root / "annotations" / "fho_lta_train.json"
    args = ["data", "convert", "lta", str(annotations), "--videos-root", str(world.root / "videos")]
    assert main([*args, "--out", str(tmp_path / "default.jsonl")]) == 0  # 8 + 20 actions: more than one video holds
    assert "wrote 0 conversations" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "small.jsonl"), "--lta-observed", "4", "--lta-future", "4"]) == 0
    records = [json.loads(line) for line in (tmp_path / "small.jsonl").read_text().splitlines()]
    assert records and all(len(r["meta"]["verb_labels"]) == 4 for r in records)
