"""The Python client and ``narrate --server`` under hostile conditions: a stream sent far ahead of
the server or read only at its end (keepalive), malformed server URLs, servers that are not
streamvlm or that vanish mid-stream, the serve extra missing, a key flag without a server.

Keepalive tests shrink the time scale (pings every 0.2 s) so the old failure shows in a second;
``test_ten_minute_stream_at_default_keepalive`` (slow) runs the real thing."""

from __future__ import annotations

import http.server
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("websockets", reason="the serve extra is not installed")
httpx = pytest.importorskip("httpx")

from streamvlm.client import FRAMES_IN_FLIGHT, open_stream  # noqa: E402
from streamvlm.serve.images import encode_png  # noqa: E402
from tests.cli.conftest import cli, run_subprocess, short_clip  # noqa: E402, F401 (fixtures)
from tests.cli.test_narrate_errors import one_error_line  # noqa: E402


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def default_model():
    """The embedded default model (it speaks rarely: a server's time goes to frames, not replies)."""
    from streamvlm.model.loading import ModelSource, load_model

    return load_model(ModelSource(device="cpu"))


@contextmanager
def serving(model, **limits) -> Iterator:
    """``streamvlm serve`` of ``model`` on 127.0.0.1 (an ephemeral port) with these limits."""
    from streamvlm.serve.app import create_app
    from streamvlm.serve.limits import ServeLimits
    from streamvlm.serve.server import BackgroundServer

    with BackgroundServer(create_app(model, limits=ServeLimits(**limits))) as server:
        yield server


@contextmanager
def slowed(model, seconds: float) -> Iterator:
    """``model`` taking ``seconds`` more per encoded batch: a larger model's pace on this CPU."""
    encode = model.embed_frames

    def slow(pixels):
        time.sleep(seconds)
        return encode(pixels)

    model.embed_frames = slow
    try:
        yield model
    finally:
        del model.embed_frames


def noise_png(side: int) -> bytes:
    return encode_png(np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8))


def metric(server, name: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


# ---------------------------------------------------------------------------- keepalive
def test_frames_sent_first_events_read_after_end(default_model):
    """The documented use (every frame, ``end()``, then ``events()``) while the server talks: 50
    stats messages a second. The client used to stop reading after 16 unread messages, so the pongs
    of its keepalive pings went unread: 1011 ``keepalive ping timeout`` within a second here (50 s
    at the default 20 s keepalive)."""
    with serving(default_model, stats_interval=0.02) as server, \
            open_stream(server.url, ping_interval=0.2, ping_timeout=0.5) as stream:
        frame = noise_png(64)
        stream.ask("What am I doing?", 0.0)
        start, sent = time.monotonic(), 0
        while time.monotonic() - start < 2.0:  # ten keepalive intervals
            stream.send_frame(sent / 2, frame)
            sent += 1
            time.sleep(0.02)
        stream.end()
        kinds = Counter(m.type for m in stream.events())
    assert stream.close_code == 1000, (stream.close_code, getattr(stream, "close_reason", None))
    assert kinds["user"] == 1 and kinds["stats"] > 20, kinds  # far more than 16 waited unread


def test_lossless_stream_ahead_of_the_server(default_model):
    """``drop_frames: false``: the server stops reading while its queue is full. 60 frames sent at
    once used to wait in the connection ahead of the keepalive pings, answered only after every
    frame's model work (1.8 s here): 1011. At most FRAMES_IN_FLIGHT frames wait now; none is lost."""
    frames = 60
    with slowed(default_model, 0.03), serving(default_model, queue_frames=2) as server:
        with open_stream(server.url, ping_interval=0.2, ping_timeout=0.8) as stream:
            stream.configure(drop_frames=False)
            frame = noise_png(16)
            for i in range(frames):
                stream.send_frame(i / 2, frame)
            stream.end()
            kinds = Counter(m.type for m in stream.events())
        assert stream.close_code == 1000, (stream.close_code, getattr(stream, "close_reason", None), kinds)
        assert metric(server, "streamvlm_frames_processed_total") == frames
        assert metric(server, "streamvlm_frames_dropped_total") == 0
    assert FRAMES_IN_FLIGHT * 0.03 < 0.8 / 2  # the bound leaves the keepalive a wide margin


@pytest.mark.slow
@pytest.mark.parametrize("lossless", [False, True], ids=["paced", "lossless"])
def test_ten_minute_stream_at_default_keepalive(default_model, lossless):
    """A 10-minute stream at 2 frames/s (1200 frames) sent first, its events read after ``end()``,
    at the default limits and keepalive (20 s). ``paced``: frames come as from a decoder (60 s);
    the old client failed after 50 s. ``lossless``: sent at once to a server of a slower model
    (40 ms a frame, 50 s in all); the frames waiting ahead of the pings took longer than 20 s."""
    frame = noise_png(128 if not lossless else 16)
    with slowed(default_model, 0.04 if lossless else 0.0), serving(default_model) as server:
        with open_stream(server.url) as stream:
            if lossless:
                stream.configure(drop_frames=False)
            stream.ask("What am I doing?", 0.0)
            for i in range(1200):
                stream.send_frame(i / 2, frame)
                if not lossless:
                    time.sleep(0.05)
            stream.end()
            kinds = Counter(m.type for m in stream.events())
        assert stream.close_code == 1000, (stream.close_code, getattr(stream, "close_reason", None), kinds)
        assert kinds["user"] == 1
        if lossless:
            assert metric(server, "streamvlm_frames_processed_total") == 1200


# ---------------------------------------------------------------------------- narrate --server
def test_narrate_server_without_the_serve_extra(tmp_path):
    """websockets unimportable: one line saying the serve extra is needed (was a traceback, exit 1)."""
    script = ("import sys; sys.modules['websockets'] = None; from streamvlm.cli import main; "
              f"sys.exit(main(['narrate', {str(tmp_path / 'x.mp4')!r}, '--server', 'http://127.0.0.1:8000']))")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    result = type("Result", (), {"code": proc.returncode, "out": proc.stdout, "err": proc.stderr})
    one_error_line(result, "needs the serve extra", "websockets is missing", "streamvlm[serve]")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url, says", [
    ("http://[::1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:99999", "out of range"),
    ("http://127.0.0.1:port", "not a valid URL"),
    ("http://127.0.0.1:0", "port 0"),
    ("ws://", "no host"),
    ("http://:8000", "no host"),
    ("gopher://127.0.0.1", "http(s):// or ws(s)://"),
    ("127.0.0.1:8000", "http(s):// or ws(s)://"),
    ("http://127.0.0.1:8000/#top", "fragment"),
    ("CLOSED", "cannot connect"),
])
def test_narrate_bad_server_url(cli, short_clip, url, says):  # noqa: F811
    if url == "CLOSED":
        url = f"http://127.0.0.1:{_closed_port()}"
    line = one_error_line(cli("narrate", short_clip, "--server", url, "--no-progress"), says)
    assert url in line


@contextmanager
def http_404() -> Iterator[str]:
    """An HTTP server that is not streamvlm: 404 for everything."""
    class NotFound(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def websocket_server(handler) -> Iterator[str]:
    from websockets.sync.server import serve

    server = serve(handler, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()


def _session_json() -> str:
    from streamvlm.serve.protocol import Limits, SessionMessage

    return SessionMessage(id="x" * 32, fps=2.0, frame_side=64, threshold=0.725, limits=Limits(
        max_message_bytes=2**20, max_image_pixels=2**20, max_query_chars=200, queue_frames=4, idle_timeout=60,
        write_timeout=10)).model_dump_json()


def _vanish(ws) -> None:
    """Speak as streamvlm, read a few messages, then drop the connection without a close frame."""
    ws.send(_session_json())
    for _ in range(4):
        ws.recv(timeout=10)
    ws.socket.shutdown(socket.SHUT_RDWR)


def test_narrate_server_not_streamvlm(cli, short_clip):  # noqa: F811
    with http_404() as url:
        one_error_line(cli("narrate", short_clip, "--server", url, "--no-progress"), url, "cannot connect", "404")
    with websocket_server(lambda ws: ws.send("hello")) as url:
        one_error_line(cli("narrate", short_clip, "--server", url, "--no-progress"), url, "not a streamvlm server")


def test_narrate_server_vanishing_mid_stream_fails(cli, short_clip, tmp_path):  # noqa: F811
    """The connection lost with no close frame: exit 2 naming the server (was exit 0 with what had
    come so far, the stream's close code unset, or a ConnectionClosedError traceback)."""
    out = tmp_path / "events.jsonl"
    with websocket_server(_vanish) as url:
        result = cli("narrate", short_clip, "--server", url, "--no-progress", "--output", out)
    one_error_line(result, url, "closed early", "1006")
    assert not out.exists()  # a failed run writes no output


def test_api_key_env_needs_a_server(cli, short_clip, monkeypatch):  # noqa: F811
    """--api-key-env without --server was ignored (the run went on locally); with --server, an unset
    variable was sent as no key at all."""
    monkeypatch.setenv("STREAMVLM_TEST_KEY", "k" * 16)
    one_error_line(cli("narrate", short_clip, "--api-key-env", "STREAMVLM_TEST_KEY"), "--api-key-env", "--server")
    monkeypatch.delenv("NO_SUCH_KEY_VARIABLE", raising=False)
    one_error_line(cli("narrate", short_clip, "--server", f"http://127.0.0.1:{_closed_port()}",
                       "--api-key-env", "NO_SUCH_KEY_VARIABLE"), "NO_SUCH_KEY_VARIABLE", "not set")
