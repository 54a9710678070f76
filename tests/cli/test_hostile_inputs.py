"""Hostile input on the command line: each gets one line naming the file, record, field or flag,
exit code 2 and no traceback (RELIABILITY checks 1, 5, 15-17)."""

from __future__ import annotations

import json
import pickle

import pytest

from .test_narrate_errors import one_error_line

DEEP = "[" * 100_000 + "]" * 100_000


def test_symlink_loop_as_source(cli, tiny_checkpoint, tmp_path):
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    one_error_line(cli("narrate", loop, "--model", tiny_checkpoint), str(loop), "cannot access")


@pytest.mark.parametrize("content, fragment", [
    pytest.param(DEEP, "nested more than 64 levels", id="deep"),
    pytest.param('{"version": 1, "id": "a", "video": "a.mp4", "fps": 1e999, "conversation": []}',
                 "number 1e999 is out of range", id="overflow"),
    pytest.param('{"version": 1, "id": "a", "video": "a.mp4", "fps": ' + "9" * 5000 + ', "conversation": []}',
                 "too large", id="huge-int"),
])
def test_hostile_jsonl_for_check_eval_and_train(cli, tmp_path, content, fragment):
    data = tmp_path / "data.jsonl"
    data.write_text(content + "\n")
    features = tmp_path / "features"
    features.mkdir()
    result = cli("data", "check", data)
    assert result.code == 2 and fragment in result.err and f"{data}:1" in result.err
    one_error_line(cli("eval", data, "--features", features), str(data), fragment)  # before the model loads
    one_error_line(cli("train", "tiny-synth", f"data.train={data}", f"data.features={features}", "data.videos=null",
                       f"output_dir={tmp_path / 'run'}"), str(data), fragment)
    assert not (tmp_path / "run").exists()


def test_hostile_annotations_for_convert(cli, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for content, fragment in ((DEEP, "nested more than"),
                              ('{"v": {"narration_pass_1": ' + "9" * 5000 + "}}", "too large"),
                              (b"\xff\xfe{}", "not valid UTF-8")):
        annotations = tmp_path / "narration.json"
        annotations.write_bytes(content if isinstance(content, bytes) else content.encode())
        one_error_line(cli("data", "convert", "narration", annotations, "--videos-root", videos,
                           "--out", tmp_path / "out.jsonl"), str(annotations), fragment)
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("flags, fragment", [
    (["--window", "nan"], "--window: must be a finite number"),
    (["--window", "inf"], "--window: must be a finite number"),
    (["--fps", "-1"], "--fps: should be greater than 0"),
    (["--video-pattern", "{video_uid"], "--video-pattern: not a pattern with {video_uid}"),
    (["--video-pattern", "{other}.mp4"], "--video-pattern: not a pattern with {video_uid}"),
    (["--video-pattern", "../{video_uid}.mp4"], "--video-pattern: must not contain '..'"),
    (["--video-pattern", "/abs/{video_uid}.mp4"], "--video-pattern: must be a path relative to the data root"),
    (["--wrong-reply-prob", "2"], "--wrong-reply-prob: should be less than or equal to 1"),
])
def test_bad_convert_flags(cli, tmp_path, flags, fragment):
    annotations = tmp_path / "narration.json"
    annotations.write_text("{}")
    (tmp_path / "videos").mkdir()
    one_error_line(cli("data", "convert", "narration", annotations, "--videos-root", tmp_path / "videos",
                       "--out", tmp_path / "out.jsonl", *flags), fragment)


def test_hostile_training_configs(cli, tmp_path):
    loop = tmp_path / "loop.json"
    loop.write_text(json.dumps({"base": str(loop)}))
    one_error_line(cli("train", loop), str(loop), "'base' chain loops back to itself")
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"output_dir": "caf\xe9"}'.encode("latin-1"))
    one_error_line(cli("train", latin), str(latin), "not valid UTF-8")
    one_error_line(cli("train", "tiny-synth", "loss.focal_gamma=-5"),
                   "loss.focal_gamma: should be greater than or equal to 0")


def test_encode_refuses_non_finite_fps(cli, tmp_path):
    one_error_line(cli("encode", tmp_path, "--out", tmp_path / "features", "--fps", "nan"),
                   "--fps: must be a finite number")
    assert not (tmp_path / "features").exists()


class _RunsCode:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_adapter_weights_are_refused(cli, short_clip, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}))
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps({"x": _RunsCode()}))
    for name in ("llm", "vision"):
        (tmp_path / name).mkdir()
    result = cli("narrate", short_clip, "--model", adapter, "--llm", tmp_path / "llm", "--vision", tmp_path / "vision")
    one_error_line(result, "adapter_model.bin", "refused")
    assert "code ran" not in result.out
