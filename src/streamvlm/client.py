"""A Python client of ``streamvlm serve`` (needs ``websockets``, in the serve extra)::

    from streamvlm.client import open_stream

    with open_stream("http://127.0.0.1:8000") as stream:
        stream.ask("What am I doing?", time=0.0)
        stream.send_frame(0.0, jpeg_bytes)      # or a uint8 RGB array [H, W, 3]
        stream.end()
        for message in stream.events():          # pydantic models of streamvlm.serve.protocol
            print(message)

Frames may be sent from one thread while another iterates the events, or all sent first and the
events read after ``end()``: the connection reads what the server says as it arrives (keepalive
pings stay answered) and keeps it until :meth:`Stream.events` takes it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import deque
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import UserError
from .serve.protocol import SERVER_MESSAGE, SessionMessage, frame_message

FRAMES_IN_FLIGHT = 4
"""Frames sent that the server has not read yet, at most. A lossless stream's server stops reading
while its queue is full; anything sent behind the frames waiting in the connection (a keepalive
ping or pong, either way) arrives only once the model has processed them, so only a few may wait."""


def stream_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` or ``ws(s)://...`` -> the WebSocket URL of ``/v1/stream``;
    a UserError naming the URL and what is wrong with it."""
    text = url.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in ("http", "https", "ws", "wss"):
        raise UserError(f"--server {url}: expected an http(s):// or ws(s):// URL")
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", a port that is no number
        raise UserError(f"--server {url}: not a valid URL ({exc})") from None
    if not host:
        raise UserError(f"--server {url}: no host (expected e.g. http://127.0.0.1:8000)")
    if port == 0:
        raise UserError(f"--server {url}: port 0 is not a server's port")
    if parts.fragment:
        raise UserError(f"--server {url}: a URL of a server has no #fragment")
    path = parts.path.rstrip("/")
    path = path if path.endswith("/v1/stream") else path + "/v1/stream"
    return urlunsplit((scheme.replace("http", "ws"), parts.netloc, path, parts.query, ""))


class Stream:
    """One stream to a server: send frames and questions, iterate what the server says.

    ``ping_interval``/``ping_timeout`` (seconds, ``None``: off): the WebSocket keepalive that finds
    a server gone away. What the server sends waits in memory until :meth:`events` reads it."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0, *,
                 ping_interval: float | None = 20.0, ping_timeout: float | None = 20.0) -> None:
        try:
            from websockets.exceptions import WebSocketException
            from websockets.sync.client import connect
        except ImportError as exc:
            raise UserError(f"a client of streamvlm serve needs the serve extra ({exc.name} is missing): "
                            f"pip install 'streamvlm[serve]'") from None

        headers = {"X-API-Key": api_key} if api_key else None
        try:  # max_queue=None: read every server message at once, whenever it comes (see the docstring)
            self.ws = connect(stream_url(url), additional_headers=headers, open_timeout=timeout, max_size=None,
                              max_queue=None, ping_interval=ping_interval, ping_timeout=ping_timeout
                              ).__enter__()  # a bare connect() warns (deprecated)
        except (OSError, WebSocketException) as exc:  # refused, no such host, not a WebSocket server
            raise UserError(f"{url}: cannot connect ({exc})") from None
        self.timeout = timeout
        self.close_code: int | None = None
        """Set when the stream has closed: the server's close code (1000: it ended normally), or the
        code this side closed with when no close came from the server (1011: keepalive timeout; 1006)."""
        self.close_reason = ""
        self._unread: deque = deque()  # a pong event per frame the server may not have read yet
        try:
            first = SERVER_MESSAGE.validate_json(self._recv())
        except (WebSocketException, TimeoutError, ValueError) as exc:
            self.close()
            what = f"close code {self.close_code}" if self.close_code else str(exc).splitlines()[0][:200]
            raise UserError(f"{url}: not a streamvlm server, or it closed the stream at once ({what})") from None
        if not isinstance(first, SessionMessage):
            self.close()
            raise UserError(f"{url}: {getattr(first, 'message', first)} (close code {self.close_code})")
        self.session: SessionMessage = first

    @contextlib.contextmanager
    def _noting_close(self) -> Iterator[None]:
        """Re-raise a websockets ``ConnectionClosed`` after noting its close code and reason."""
        from websockets.exceptions import ConnectionClosed

        try:
            yield
        except ConnectionClosed as closed:
            if self.close_code is None:
                frame = closed.rcvd or closed.sent
                self.close_code = frame.code if frame else 1006
                self.close_reason = frame.reason if frame else "the connection was lost"
            raise

    def _recv(self) -> str | bytes:
        with self._noting_close():
            return self.ws.recv(timeout=self.timeout)

    def _send(self, message: str | bytes) -> None:
        with self._noting_close():
            self.ws.send(message)

    def send_frame(self, time: float, image: Any) -> None:
        """A frame at capture time ``time``: JPEG/PNG/WebP bytes, or a uint8 RGB array (sent as PNG).
        Blocks while :data:`FRAMES_IN_FLIGHT` frames wait for the server to read them."""
        if not isinstance(image, bytes | bytearray):
            from .serve.images import encode_png

            image = encode_png(image)
        while len(self._unread) >= FRAMES_IN_FLIGHT:
            # its pong: the server has read the frames before that ping (set too when the connection closes)
            self._unread.popleft().wait()
        with self._noting_close():
            self.ws.send(frame_message(time, bytes(image)))
            self._unread.append(self.ws.ping(ack_on_close=True))

    def ask(self, text: str, time: float) -> None:
        self._send(json.dumps({"type": "query", "time": time, "text": text}))

    def configure(self, *, threshold: float | None = None, drop_frames: bool | None = None) -> None:
        message: dict[str, Any] = {"type": "config"}
        if threshold is not None:
            message["threshold"] = threshold
        if drop_frames is not None:
            message["drop_frames"] = drop_frames
        self._send(json.dumps(message))

    def end(self) -> None:
        """No more frames: the server answers what is queued, then closes the stream."""
        self._send(json.dumps({"type": "end"}))

    def events(self) -> Iterator[Any]:
        """Every server message until the stream closes (then :attr:`close_code` is set)."""
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                raw = self._recv()
            except ConnectionClosed:
                return
            except TimeoutError:
                continue
            yield SERVER_MESSAGE.validate_json(raw)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_stream(url: str, api_key: str | None = None, timeout: float = 30.0, *,
                ping_interval: float | None = 20.0, ping_timeout: float | None = 20.0) -> Stream:
    """Open a stream on the server at ``url`` (``api_key``: default $STREAMVLM_API_KEY)."""
    return Stream(url, api_key if api_key is not None else os.environ.get("STREAMVLM_API_KEY"), timeout,
                  ping_interval=ping_interval, ping_timeout=ping_timeout)
