"""Run the app with uvicorn: blocking (``streamvlm serve``) or in a background thread (tests, bench)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any

from ..errors import UserError


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def _config(app: Any, sock: socket.socket, max_message_bytes: int) -> Any:
    import uvicorn

    host, port = sock.getsockname()[:2]
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          ws_max_size=max_message_bytes + 64, lifespan="on", timeout_graceful_shutdown=3)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def serve_forever(app: Any, sock: socket.socket, max_message_bytes: int) -> None:
    """Serve until Ctrl-C / SIGTERM."""
    import uvicorn

    uvicorn.Server(_config(app, sock, max_message_bytes)).run(sockets=[sock])


class BackgroundServer:
    """The app on ``host`` (an ephemeral port by default) in a thread; a context manager."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, max_message_bytes: int = 8 * 2**20,
                 send_buffer: int | None = None) -> None:
        import uvicorn

        self.sock = bind(host, port, send_buffer)
        self.url = url_of(self.sock)
        self.ws_url = "ws" + self.url[4:]
        self.server = uvicorn.Server(_config(app, self.sock, max_message_bytes))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
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
