"""Fixtures of the hostile suite: the command tests' tiny checkpoint, short clip and CLI runner;
the serve fixtures (a tiny model, real servers on 127.0.0.1); frames of any size in JPEG, PNG or
WebP, and a small video written with PyAV."""

from __future__ import annotations

import json
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.cli.conftest import cli, short_clip, tiny_checkpoint  # noqa: F401 (fixtures)
from tests.serve.conftest import _server, keyed_server, tiny_model  # noqa: F401 (fixtures)

# FFmpeg encoder and pixel format of each frame format a client may send
FORMATS = {"png": ("png", "rgb24"), "jpeg": ("mjpeg", "yuvj420p"), "webp": ("libwebp", "yuv420p")}


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """uint8 RGB ``[H, W, 3]`` -> the bytes of one ``fmt`` image (png, jpeg, webp)."""
    import av

    codec, pix_fmt = FORMATS[fmt]
    ctx = av.CodecContext.create(codec, "w")
    ctx.height, ctx.width = image.shape[:2]
    ctx.pix_fmt = pix_fmt
    ctx.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format=pix_fmt)
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))


def noise(seed: int, height: int, width: int, n: int) -> list[np.ndarray]:
    """``n`` random uint8 RGB frames ``[height, width, 3]`` (smooth enough to survive JPEG)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        small = rng.integers(0, 255, (max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8)
        frames.append(np.ascontiguousarray(np.kron(small, np.ones((8, 8, 1), np.uint8))[:height, :width]))
    return [np.pad(f, ((0, height - f.shape[0]), (0, width - f.shape[1]), (0, 0)), mode="edge") for f in frames]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 4) -> Path:
    """An MPEG-4 video of ``frames`` (uint8 RGB, even sides) at ``fps``."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


REPLY_TOKENS = 4
"""Replies of the hostile suite's servers are cut at this many tokens (the tests stay fast)."""


def hostile(model, **limits):
    """A server (not started) of the serve tests' limits, replies of REPLY_TOKENS tokens."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from streamvlm.engine import GenerationConfig

    return _server(model, generation=GenerationConfig(max_new_tokens=REPLY_TOKENS), **limits)


@pytest.fixture(scope="module")
def hostile_server(tiny_model):  # noqa: F811
    """A server of the serve tests' limits with room for 8 sessions, replies of REPLY_TOKENS tokens."""
    with hostile(tiny_model, max_sessions=8, queue_frames=8) as running:
        yield running


def alone_default(model, images: list[np.ndarray]) -> list[tuple[str, float, str]]:
    """The events of one session of ``hostile_server``'s settings, fed ``images`` at 2 frames/s."""
    from streamvlm.engine import GenerationConfig
    from streamvlm.engine.defaults import resolve_stream

    assistant = resolve_stream(model, generation=GenerationConfig(max_new_tokens=REPLY_TOKENS)).assistant()
    return [(e.role, e.time, e.text) for k, image in enumerate(images) for e in assistant.push_frame(image, k * 0.5)]


class GoodClient:
    """A client streaming 4 frames, one every ``pause`` seconds, in a thread; ``check()`` then
    asserts it ended normally with exactly the narration it gets alone."""

    def __init__(self, server, model, seed: int = 0, pause: float = 0.05) -> None:
        self.model, self.server, self.pause = model, server, pause
        self.images = noise(seed, 48, 64, 4)
        self.result: tuple | None = None
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GoodClient:
        self.thread.start()
        assert self.opened.wait(10), "the good client could not open its stream"
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(60)

    def _run(self) -> None:
        from websockets.sync.client import connect

        from streamvlm.serve.protocol import frame_message
        from tests.serve.test_serve import read_all

        with connect(self.server.ws_url + "/v1/stream") as ws:
            ws.recv(timeout=10)
            self.opened.set()
            ws.send(json.dumps({"type": "config", "drop_frames": False}))
            for k, image in enumerate(self.images):
                ws.send(frame_message(k * 0.5, encode_image(image, "png")))
                time.sleep(self.pause)
            ws.send(json.dumps({"type": "end"}))
            self.result = read_all(ws, timeout=30)

    def check(self) -> None:
        from streamvlm.engine.narration import frame_fit
        from streamvlm.serve.images import decode_image
        from streamvlm.serve.protocol import CloseCode

        assert self.result is not None, "the good client did not finish"
        messages, code = self.result
        assert code == CloseCode.NORMAL, messages[-3:]
        side = frame_fit(self.model)
        decoded = [decode_image(encode_image(im, "png"), max_pixels=10**6, fit=side) for im in self.images]
        got = [(m["type"], m["time"], m["text"]) for m in messages if m["type"] in ("user", "assistant")]
        assert got == alone_default(self.model, decoded)
