"""Pieces of the service without a server: the engine's token callback, subtitles, images, bench --serve."""

from __future__ import annotations

import json
import struct

import pytest

from streamvlm.engine.console import subtitles_text
from streamvlm.serve.images import ImageError, decode_image, encode_png, sniff
from streamvlm.serve.protocol import frame_message, split_frame


def test_token_callback_streams_the_reply_and_can_abort(tiny_model):
    import torch

    from streamvlm.engine.session import GenerationConfig, StreamEngine

    engine = StreamEngine(tiny_model, GenerationConfig(threshold=1.0, max_new_tokens=8))
    frame = torch.zeros(engine.layout.tokens_per_frame, tiny_model.config.llm_hidden_size)
    plain = engine.new_session().push_frame(frame, 0.0)
    session = engine.new_session()
    seen: list[list[int]] = []
    session.on_token = lambda ids: seen.append(list(ids))
    events = session.push_frame(frame, 0.0)
    assert [e.token_ids for e in events] == [e.token_ids for e in plain]  # the callback changes nothing
    reply = events[-1].token_ids
    assert seen and seen[-1] == reply and all(seen[i] == reply[: i + 1] for i in range(len(seen)))

    class Stop(Exception):
        pass

    def stop(ids: list[int]) -> None:
        raise Stop

    session = engine.new_session()
    session.on_token = stop
    with pytest.raises(Stop):
        session.push_frame(frame, 0.0)


def test_subtitles():
    vtt = subtitles_text([(1.0, "You pick up the cup."), (2.0, "You put it down."), (3661.5, "Done.")])
    assert vtt.splitlines()[:4] == ["WEBVTT", "", "00:00:01.000 --> 00:00:02.000", "You pick up the cup."]
    assert "01:01:01.500 --> 01:01:05.500" in vtt
    srt = subtitles_text([(0.25, "a --> b")], srt=True)
    assert srt == "1\n00:00:00,250 --> 00:00:04,250\na -> b\n"


def test_images_checked_on_the_header_before_decoding():
    import numpy as np

    image = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    png = encode_png(image)
    assert sniff(png) == ("png", (64, 48))
    assert (decode_image(png, max_pixels=10_000, max_side=None) == image).all()
    assert decode_image(png, max_pixels=10_000, max_side=32).shape == (24, 32, 3)
    with pytest.raises(ImageError) as err:
        decode_image(png, max_pixels=1000, max_side=None)
    assert err.value.code == "image_too_large"
    huge = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", 16000, 16000) + b"\x08\x02\x00\x00\x00"
    with pytest.raises(ImageError, match="16000x16000"):
        decode_image(huge, max_pixels=10**8 - 1, max_side=None)
    for junk in (b"", b"GIF89a....", png[:20], png[:40] + b"\x00" * 50):
        with pytest.raises(ImageError):
            decode_image(junk, max_pixels=10_000, max_side=None)
    assert split_frame(frame_message(1.5, b"abc")) == (1.5, b"abc")
    for bad in (b"short", struct.pack(">d", float("nan")) + b"x", struct.pack(">d", -1.0) + b"x"):
        with pytest.raises(ValueError):
            split_frame(bad)


def test_bench_serve(cli):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    result = cli("bench", "--serve", "--preset", "tiny", "--sessions", "2", "--seconds", "1", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out.strip().splitlines()[-1])
    assert report["sessions_held"] == 2 and report["frames_processed"] == report["frames_sent"] > 0
    assert report["latency_p99_ms"] >= report["latency_p50_ms"] > 0


def test_serve_command_prints_its_url_and_stops_on_sigint():
    """With the embedded model (no --model), the console and every session message also say, once,
    that it knows only the synthetic world (the browser app shows the message's note)."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    import json
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from websockets.sync.client import connect

    from streamvlm.data.synth.marker import EMBEDDED_MODEL_NOTE

    proc = subprocess.Popen([sys.executable, "-m", "streamvlm.cli", "serve", "--device", "cpu", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("streamvlm serve: open http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split("open ")[1].split("/ ")[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(url + "/healthz").json() == {"ok": True, "sessions": 0}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert httpx.get(url + "/readyz").status_code == 200
        with connect(url.replace("http", "ws", 1) + "/v1/stream") as ws:
            assert json.loads(ws.recv(timeout=30))["note"] == EMBEDDED_MODEL_NOTE
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)
        assert proc.stderr.read().splitlines().count(f"streamvlm serve: {EMBEDDED_MODEL_NOTE}") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_docs_limits_table_is_the_codes():
    """docs/serve.md's Limits table is the code's: every ServeLimits field (a flag of serve) and
    every constant limit, with its default and what a client sees (limits_table())."""
    import dataclasses
    from pathlib import Path

    from streamvlm.serve import limits

    table = limits.limits_table()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "serve.md").read_text()
    assert table in docs, "docs/serve.md: the Limits table differs from limits_table(); it should read:\n" + table
    names = {f.name for f in dataclasses.fields(limits.ServeLimits)}
    assert set(limits.SEEN_WHEN_HIT) == names | set(limits.CONSTANT_LIMITS)
    assert all(f"`--{name.replace('_', '-')}`" in table for name in names)


def test_serve_raises_its_open_file_limit():
    """A server needs a descriptor per connection: the soft limit goes up to the hard one, with a
    warning when even that is below what --max-connections needs."""
    import subprocess
    import sys

    code = ("import resource\nfrom streamvlm.serve.server import raise_open_files\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))\n"
            "print(raise_open_files(100), resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (128, 256))\n"
            "print(raise_open_files(1000))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    first, second = out.splitlines()
    assert first == "None True"
    assert second.startswith("only 256 files may be open") and "--max-connections 1000" in second

