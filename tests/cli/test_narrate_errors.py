"""Bad input to ``streamvlm narrate`` / ``demo`` (RELIABILITY checks 1-6 on the command line):
one clear error line, exit code 2, no traceback, no hang; decoding errors before the model loads."""

from __future__ import annotations

import av
import numpy as np
import pytest

from .conftest import run_subprocess


def one_error_line(result, *fragments: str) -> str:
    assert result.code == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamvlm: error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.err and result.out == ""
    return lines[0]


def write_mp4(path, frames: int = 48, options: dict | None = None):
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), (20 + 5 * i) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


BROKEN_FILES = {
    "empty.mp4": (b"", "cannot open as video"),
    "random.mp4": (np.random.default_rng(0).bytes(20_000), "cannot open as video"),
    "picture.mp4": (None, "not a video"),  # a PNG renamed .mp4
    "notes.mp4": (b"shopping list: milk, eggs, tea\n" * 20, "cannot open as video"),
    "huge.y4m": (b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000),
                 "16000x16000 exceeds the limit"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_FILES))
def test_broken_file_fails_fast_with_one_line(cli, tiny_checkpoint, tmp_path, name):
    content, message = BROKEN_FILES[name]
    path = tmp_path / name
    path.write_bytes(png_bytes() if content is None else content)
    result = cli("narrate", path, "--model", tiny_checkpoint)
    one_error_line(result, str(path), message)
    assert result.seconds < 2.0


def test_missing_file_and_missing_webcam(cli, tiny_checkpoint, tmp_path):
    one_error_line(cli("narrate", tmp_path / "nope.mp4", "--model", tiny_checkpoint), "nope.mp4: no such file")
    for webcam in ("/dev/video99", "webcam:99"):
        result = cli("narrate", webcam, "--model", tiny_checkpoint)
        one_error_line(result, f"{webcam}: no such webcam device")
        assert result.seconds < 2.0


def test_mp4_cut_before_its_index_is_refused(cli, tiny_checkpoint, tmp_path):
    data = write_mp4(tmp_path / "full.mp4").read_bytes()  # the index (moov) is written last
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    one_error_line(cli("narrate", cut, "--model", tiny_checkpoint), "cut.mp4: cannot open as video")


def test_mp4_cut_after_its_index_gives_the_decodable_frames(cli, tiny_checkpoint, tmp_path):
    data = write_mp4(tmp_path / "full.mp4", options={"movflags": "+faststart"}).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    runs = [cli("narrate", cut, "--model", tiny_checkpoint, "--max-new-tokens", "1", "--no-progress")
            for _ in range(2)]
    assert all(r.code == 0 for r in runs), runs[0].err
    assert runs[0].lines[-1].split(" in ")[0] == runs[1].lines[-1].split(" in ")[0]  # same frames every run
    frames = int(runs[0].lines[-1].split()[0])
    assert 0 < frames < 12  # the full video is 6 s: 12 frames at 2 frames/s


@pytest.mark.parametrize("query", ["abc", "-3:x", "5:", "nan:x", "inf:x", ":x", "5:   "])
def test_malformed_query(cli, tiny_checkpoint, short_clip, query):
    result = cli("narrate", short_clip, "--model", tiny_checkpoint, f"--query={query}")
    line = one_error_line(result, "--query: expected SECONDS:TEXT", repr(query))
    assert result.seconds < 0.5 and line


@pytest.mark.parametrize(("flags", "message"), [
    (["--threshold", "1.5"], "--threshold: should be less than or equal to 1, got '1.5'"),
    (["--threshold", "-0.1"], "--threshold: should be greater than or equal to 0, got '-0.1'"),
    (["--threshold", "nan"], "--threshold: must be a finite number, got 'nan'"),
    (["--threshold", "abc"], "--threshold: should be a valid number"),
    (["--fps", "0"], "--fps: should be greater than 0, got '0'"),
    (["--fps", "inf"], "--fps: must be a finite number, got 'inf'"),
    (["--max-new-tokens", "0"], "--max-new-tokens: should be greater than or equal to 1"),
    (["--kv-budget", "10"], "--kv-budget: must be 0 (unbounded) or at least 256 tokens, got 10"),
    (["--device", "foo"], "--device: should be auto, cpu, cuda, cuda:N or mps, got 'foo'"),
    (["--dtype", "int8"], "--dtype: should be 'auto', 'float32', 'bfloat16' or 'float16'"),
    (["--query", "-3:x"], "argument --query: expected one argument"),  # argparse reads -3:x as an option
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flag_values(cli, tiny_checkpoint, short_clip, flags, message):
    result = cli("narrate", short_clip, "--model", tiny_checkpoint, *flags)
    one_error_line(result, message)
    assert result.seconds < 0.5  # found before the model loads


def test_bad_model_folder(cli, tiny_checkpoint, short_clip, tmp_path):
    one_error_line(cli("narrate", short_clip, "--model", tmp_path / "no-model"), "no such folder")
    (tmp_path / "empty").mkdir()
    one_error_line(cli("narrate", short_clip, "--model", tmp_path / "empty"), "not a streamvlm checkpoint")
    one_error_line(cli("narrate", short_clip, "--model", short_clip), "not a folder")
    one_error_line(cli("narrate", short_clip, "--device", "cuda:3"), "--device cuda:3: no CUDA device")


def test_demo_bad_flags(cli, tiny_checkpoint, tmp_path):
    one_error_line(cli("demo", "--model", tiny_checkpoint, "--duration", "1"),
                   "--duration: should be greater than or equal to 4, got '1'")
    one_error_line(cli("demo", "--model", tiny_checkpoint, "--seed", "-1"),
                   "--seed: should be greater than or equal to 0")
    one_error_line(cli("demo", "--model", tiny_checkpoint, "--video", tmp_path / "none.mp4"), "no such file")


@pytest.mark.parametrize("name", ["empty.mp4", "picture.mp4"])
def test_real_process_prints_one_line_and_exits_2(tiny_checkpoint, tmp_path, name):
    content, message = BROKEN_FILES[name]
    path = tmp_path / name
    path.write_bytes(png_bytes() if content is None else content)
    result = run_subprocess("narrate", path, "--model", tiny_checkpoint, timeout=60)
    one_error_line(result, message)


def test_broken_model_folders_are_one_line_errors(cli, tiny_checkpoint, short_clip, tmp_path):
    import json
    import shutil

    def broken(name: str, edit) -> str:
        folder = tmp_path / name
        shutil.copytree(tiny_checkpoint, folder)
        edit(folder)
        return folder

    def config(folder, **changes):
        data = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            node = data
            *parents, last = key.split(".")
            for part in parents:
                node = node[part]
            node[last] = value
        (folder / "config.json").write_text(json.dumps(data))

    cases = [
        (broken("types", lambda f: config(f, frame_fps="fast")), "config.json: frame_fps: should be a valid number"),
        (broken("heads", lambda f: config(f, **{"llm_config.num_attention_heads": 0})), "num_attention_heads"),
        (broken("huge", lambda f: config(f, **{"llm_config.hidden_size": 10**7})), "more than the"),
        (broken("tokenizer", lambda f: (f / "tokenizer.json").write_text("")), "tokenizer.json"),
        (broken("meta", lambda f: (f / "checkpoint.json").write_text("[1")), "checkpoint.json"),
    ]
    for folder, fragment in cases:
        result = cli("narrate", short_clip, "--model", folder, "--no-progress")
        one_error_line(result, fragment)
