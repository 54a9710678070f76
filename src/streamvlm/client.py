"""A Python client of ``streamvlm serve`` (needs ``websockets``, in the serve extra)::

    from streamvlm.client import open_stream

    with open_stream("http://127.0.0.1:8000") as stream:
        stream.ask("What am I doing?", time=0.0)
        stream.send_frame(0.0, jpeg_bytes)      # or a uint8 RGB array [H, W, 3]
        stream.end()
        for message in stream.events():          # pydantic models of streamvlm.serve.protocol
            print(message)

Frames may be sent from one thread while another iterates the events.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from .errors import UserError
from .serve.protocol import SERVER_MESSAGE, SessionMessage, frame_message


def stream_url(url: str) -> str:
    """``http(s)://host:port[/]`` or ``ws(s)://...`` -> the WebSocket URL of ``/v1/stream``."""
    url = url.rstrip("/")
    if url.startswith("http://") or url.startswith("https://"):
        url = "ws" + url[4:]
    if not (url.startswith("ws://") or url.startswith("wss://")):
        raise UserError(f"--server {url}: expected an http(s):// or ws(s):// URL")
    return url if url.endswith("/v1/stream") else url + "/v1/stream"


class Stream:
    """One stream to a server: send frames and questions, iterate what the server says."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        from websockets.sync.client import connect

        headers = {"X-API-Key": api_key} if api_key else None
        try:
            self.ws = connect(stream_url(url), additional_headers=headers, open_timeout=timeout,
                              max_size=None).__enter__()
        except OSError as exc:
            raise UserError(f"{url}: cannot connect ({exc})") from None
        self.timeout = timeout
        self.close_code: int | None = None
        first = SERVER_MESSAGE.validate_json(self._recv())
        if not isinstance(first, SessionMessage):
            self.close()
            raise UserError(f"{url}: {getattr(first, 'message', first)} (close code {self.close_code})")
        self.session: SessionMessage = first

    def _recv(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            return self.ws.recv(timeout=self.timeout)
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else None
            raise

    def send_frame(self, time: float, image: Any) -> None:
        """A frame at capture time ``time``: JPEG/PNG/WebP bytes, or a uint8 RGB array (sent as PNG)."""
        if not isinstance(image, bytes | bytearray):
            from .serve.images import encode_png

            image = encode_png(image)
        self.ws.send(frame_message(time, bytes(image)))

    def ask(self, text: str, time: float) -> None:
        self.ws.send(json.dumps({"type": "query", "time": time, "text": text}))

    def configure(self, *, threshold: float | None = None, drop_frames: bool | None = None) -> None:
        message: dict[str, Any] = {"type": "config"}
        if threshold is not None:
            message["threshold"] = threshold
        if drop_frames is not None:
            message["drop_frames"] = drop_frames
        self.ws.send(json.dumps(message))

    def end(self) -> None:
        """No more frames: the server answers what is queued, then closes the stream."""
        self.ws.send(json.dumps({"type": "end"}))

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


def open_stream(url: str, api_key: str | None = None, timeout: float = 30.0) -> Stream:
    """Open a stream on the server at ``url`` (``api_key``: default $STREAMVLM_API_KEY)."""
    return Stream(url, api_key if api_key is not None else os.environ.get("STREAMVLM_API_KEY"), timeout)
