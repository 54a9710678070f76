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

``open_stream(url, reconnect=N)`` gives a :class:`ReconnectingStream`: a stream whose replica dies
or stops (behind a load balancer) goes on in a new session on another one (docs/serve.md, Scale-out).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time as clock
from collections import deque
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import UserError
from .serve.protocol import SERVER_MESSAGE, AssistantMessage, CloseCode, SessionMessage, UserMessage, frame_message

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
        self.close_from_server = False
        """Whether :attr:`close_code` came in a close frame from the server (else: lost, or this side's)."""
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
                self.close_from_server = closed.rcvd is not None
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


RECONNECT_ON = frozenset({1001, CloseCode.SERVICE_RESTART})
"""Close codes from the server (1001 "going away", from a proxy or another server; 1012: a replica
draining or stopping) after which a :class:`ReconnectingStream` opens a new session (the
replica stops); it does too when no close came at all (the connection was lost: 1006, or the
keepalive timed out), never after any other code (1000: the stream ended; 1008, 1009, 1011, 44xx:
this stream's own fault or the model's, which a new session would meet again)."""
RETRY_DELAYS = (0.0, 0.2, 0.5, 1.0, 2.0, 4.0)
"""Seconds waited before each try to open a new session (refused, full or unreachable: try again)."""


def lost_replica(stream: Stream) -> bool:
    """Whether ``stream`` closed because its replica died or stops (see :data:`RECONNECT_ON`)."""
    return stream.close_code is not None and (not stream.close_from_server or stream.close_code in RECONNECT_ON)


class ReconnectingStream:
    """A stream that outlives its replica: when the connection is lost or the replica stops (see
    :data:`RECONNECT_ON`), a new session is opened at the same URL (a load balancer sends it to
    another replica), at most ``reconnect`` times in all, and the stream goes on there.

    The new session starts from the next frame with an empty KV cache (the model has not seen what
    came before). Frames keep the caller's clock, so the new session's events carry times on the
    same timeline as the old one's (a session accepts any first time; only within a session must
    times not go back). ``instruction`` is asked at time 0 on the first session and at the last
    frame's time on each new one; questions whose ``user`` event has not been read yet are asked
    again (at that time too, so the transcript stays in time order), as are the ``configure``
    settings. :attr:`transcript` keeps every
    ``user`` and ``assistant`` message of every session, in order. :meth:`events` yields each new
    session's ``session`` message where its events begin. After :meth:`end` nothing is reopened."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0, *, reconnect: int = 3,
                 instruction: str | None = None, ping_interval: float | None = 20.0,
                 ping_timeout: float | None = 20.0) -> None:
        self._open = lambda: Stream(url, api_key, timeout, ping_interval=ping_interval, ping_timeout=ping_timeout)
        self.reconnect = reconnect
        self.instruction = instruction
        self.transcript: list[UserMessage | AssistantMessage] = []
        """Every ``user`` and ``assistant`` message read, of every session."""
        self._streams = [self._open()]
        self._lock = threading.Lock()
        self._asked: list[tuple[float, str]] = []  # questions without their user event yet
        self._settings: dict[str, Any] = {}
        self._last_time = 0.0
        self._ended = False
        if instruction:
            self.stream.ask(instruction, 0.0)

    @property
    def stream(self) -> Stream:
        """The session in use now."""
        return self._streams[-1]

    @property
    def session(self) -> SessionMessage:
        return self.stream.session

    @property
    def sessions(self) -> list[SessionMessage]:
        """The ``session`` message of every session so far, in order."""
        return [s.session for s in self._streams]

    @property
    def close_codes(self) -> list[int | None]:
        """The close code of every session so far (None: still open); each but the last was lost."""
        return [s.close_code for s in self._streams]

    @property
    def close_code(self) -> int | None:
        return self.stream.close_code

    def _replace(self, lost: Stream) -> Stream | None:
        """The session after ``lost``: the one a thread opened already, a new one, or None (``lost``
        ended for good, or no new session could be opened)."""
        with self._lock:
            at = self._streams.index(lost)
            if at + 1 < len(self._streams):
                return self._streams[at + 1]
            if self._ended or not lost_replica(lost) or len(self._streams) > self.reconnect:
                return None
            for delay in RETRY_DELAYS:
                clock.sleep(delay)
                try:
                    stream = self._open()
                    break
                except UserError:
                    continue
            else:
                return None
            with contextlib.suppress(Exception):  # lost as well: the next call finds it
                if self._settings:
                    stream.configure(**self._settings)
                if self.instruction:
                    stream.ask(self.instruction, self._last_time)  # answered at the new session's first frame
                for time, text in sorted(self._asked):  # at the new session's first frame: in order
                    stream.ask(text, max(time, self._last_time))
            self._streams.append(stream)
            return stream

    def _on(self, call: Any) -> None:
        """``call(stream)`` on the session in use; once more on a new one when it is lost meanwhile."""
        from websockets.exceptions import ConnectionClosed

        stream = self.stream
        try:
            call(stream)
        except ConnectionClosed:
            stream.close()  # the close code is noted; wait for the closing handshake, if any
            new = self._replace(stream)
            if new is None:
                raise
            call(new)

    def send_frame(self, time: float, image: Any) -> None:
        """As :meth:`Stream.send_frame`; on a new session when this one is lost."""
        self._last_time = max(self._last_time, float(time))
        self._on(lambda s: s.send_frame(time, image))

    def ask(self, text: str, time: float) -> None:
        with self._lock:
            self._asked.append((float(time), text.strip()))
        self._on(lambda s: s.ask(text, time))

    def configure(self, *, threshold: float | None = None, drop_frames: bool | None = None) -> None:
        changes = {k: v for k, v in (("threshold", threshold), ("drop_frames", drop_frames)) if v is not None}
        self._settings.update(changes)
        self._on(lambda s: s.configure(**changes))

    def end(self) -> None:
        """No more frames (nothing is reopened from now on)."""
        self._ended = True
        self._on(lambda s: s.end())

    def _read(self, message: Any) -> None:
        if isinstance(message, UserMessage | AssistantMessage):
            self.transcript.append(message)
        if isinstance(message, UserMessage):
            with self._lock:
                for i, (_, text) in enumerate(self._asked):
                    if text == message.text:
                        del self._asked[i]
                        break

    def events(self) -> Iterator[Any]:
        """Every server message of every session, in order, until the last one closes; a new
        session's ``session`` message first, where its events begin."""
        at = 0
        while True:
            stream = self._streams[at]
            if at:
                yield stream.session
            for message in stream.events():
                self._read(message)
                yield message
            if self._replace(stream) is None:
                return
            at += 1

    def close(self) -> None:
        self._ended = True
        self.stream.close()

    def __enter__(self) -> ReconnectingStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_stream(url: str, api_key: str | None = None, timeout: float = 30.0, *,
                ping_interval: float | None = 20.0, ping_timeout: float | None = 20.0, reconnect: int = 0,
                instruction: str | None = None) -> Stream | ReconnectingStream:
    """Open a stream on the server at ``url`` (``api_key``: default $STREAMVLM_API_KEY). ``reconnect``
    > 0: a :class:`ReconnectingStream` (``instruction``: asked on each of its sessions)."""
    key = api_key if api_key is not None else os.environ.get("STREAMVLM_API_KEY")
    if reconnect > 0:
        return ReconnectingStream(url, key, timeout, reconnect=reconnect, instruction=instruction,
                                  ping_interval=ping_interval, ping_timeout=ping_timeout)
    if instruction is not None:
        raise ValueError("instruction= is for a reconnecting stream (reconnect > 0); ask() it otherwise")
    return Stream(url, key, timeout, ping_interval=ping_interval, ping_timeout=ping_timeout)
