"""Run the app with uvicorn: blocking (``streamvlm serve``) or in a background thread (tests, bench).

uvicorn alone keeps a connection that never finishes its request headers open forever and logs a
traceback for every failed ``accept()``; :func:`guarded_protocol` adds a header timeout and a cap
on open connections to its HTTP protocol, and :class:`_Server` logs accept errors once per interval
and drains on SIGTERM (docs/serve.md, Scale-out).
"""

from __future__ import annotations

import errno
import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..errors import UserError
from .limits import ServeLimits, is_loopback  # noqa: F401 (is_loopback: its historical home)
from .logs import Throttled


def bind(host: str, port: int, send_buffer: int | None = None) -> socket.socket:
    """A listening socket (port 0: an ephemeral one); UserError when the address is taken.
    ``send_buffer`` fixes the kernel send buffer of every connection (tests of slow readers)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def raise_open_files(max_connections: int) -> str | None:
    """Raise this process's soft limit of open files to its hard limit (a server needs one per
    connection); a warning line when it stays below what ``max_connections`` needs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 2 * max_connections + 1024)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < max_connections + 64:  # model files, the listening socket, uploads
        return (f"only {soft} files may be open (ulimit -n): connections beyond about {max(soft - 64, 0)} fail "
                f"to be accepted before --max-connections {max_connections} is reached")
    return None


def _raw_response(status: str, code: str, message: str) -> bytes:
    body = json.dumps({"code": code, "message": message}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def guarded_protocol(limits: ServeLimits) -> type:
    """uvicorn's h11 HTTP protocol with ``limits.header_timeout`` (a connection must send its
    request headers in full within it: else HTTP 408 and closed) and ``limits.max_connections``
    (a connection beyond it is answered 503 and closed at once, before it is read)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    busy = _raw_response("503 Service Unavailable", "too_many_connections",
                         f"{limits.max_connections} connections are open; try again later")
    late = _raw_response("408 Request Timeout", "header_timeout",
                         f"the request headers did not arrive within {limits.header_timeout:g} s")
    refused = Throttled()

    class GuardedH11Protocol(H11Protocol):
        _timer: Any = None
        _refused = False

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:  # this one included
                refused.warning(f"refusing connections: {limits.max_connections} are open (--max-connections)")
                self._refused = True
                # answer, then read and drop what comes for a moment before closing: closing on
                # unread bytes would reset the connection and lose the answer
                transport.write(busy)
                if transport.can_write_eof():
                    transport.write_eof()
                self.loop.call_later(1.0, transport.close)
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            # waiting for (the rest of) a request's headers: the clock runs; else it stops
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm()
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._timer is None:
                self._timer = self.loop.call_later(limits.header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _headers_late(self) -> None:
            self._timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(late)
                self.transport.close()

    return GuardedH11Protocol


_ACCEPT_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def _server(app: Any, sock: socket.socket, say: Callable[[str], None] | None = None) -> Any:
    """A uvicorn server for ``app`` (its limits: ``app.state.serve.limits``) on ``sock``. In the main
    thread, SIGTERM drains first (``app.state.drain``: no new stream, the open ones finish or are
    closed within ``drain_timeout``), then stops; a second SIGTERM or Ctrl-C stops at once (open
    streams get close 1012). ``say`` gets a line at the drain's start and end."""
    import asyncio

    import uvicorn

    limits: ServeLimits = app.state.serve.limits
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            http=guarded_protocol(limits), ws_max_size=limits.max_message_bytes + 64,
                            lifespan="on", timeout_graceful_shutdown=3)
    accept_errors = Throttled()

    class _Server(uvicorn.Server):
        drain_asked = False
        draining: asyncio.Task | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # a signal handler: only a flag here; on_tick (the event loop) starts the drain. Not
            # recorded as captured, so uvicorn does not raise SIGTERM again once drained (exit 0)
            if sig == signal.SIGTERM and not (self.drain_asked or self.should_exit):
                self.drain_asked = True
                return
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if self.drain_asked and self.draining is None:
                self.draining = asyncio.create_task(app.state.drain())
                if say is not None:
                    say(f"SIGTERM: draining: no new stream; the {app.state.serve.scheduler.count} open ones get "
                        f"{limits.drain_timeout:g} s (--drain-timeout) to finish")
            if self.draining is not None and self.draining.done() and not self.should_exit:
                self.should_exit = True
                opened, closed = self.draining.result()
                if say is not None:
                    say(f"drained: {opened - closed} of {opened} streams finished, {closed} closed (1012)")
            return await super().on_tick(counter)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            loop = asyncio.get_running_loop()

            def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
                exc = context.get("exception")
                if isinstance(exc, OSError) and exc.errno in _ACCEPT_ERRORS:
                    # asyncio pauses accepting for a second and retries: one line, no traceback
                    accept_errors.warning(f"cannot accept connections: {exc.strerror} "
                                          f"(lower --max-connections or raise ulimit -n)")
                    return
                loop.default_exception_handler(context)

            loop.set_exception_handler(on_error)
            await super().startup(sockets)

    return _Server(config)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def serve_forever(app: Any, sock: socket.socket, say: Callable[[str], None] | None = None) -> None:
    """Serve until Ctrl-C, or SIGTERM and a drain (see :func:`_server`; ``say``: its lines)."""
    _server(app, sock, say).run(sockets=[sock])


class BackgroundServer:
    """The app on ``host`` (an ephemeral port by default) in a thread; a context manager."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, send_buffer: int | None = None) -> None:
        self.sock = bind(host, port, send_buffer)
        self.url = url_of(self.sock)
        self.ws_url = "ws" + self.url[4:]
        self.server = _server(app, self.sock)  # not the main thread: uvicorn leaves signals alone
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="streamvlm-uvicorn", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
