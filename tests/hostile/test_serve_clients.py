"""Slow, half-open and vanishing clients against a real server, a good client streaming beside them:
request headers never finished, more connections than the cap, accept() out of file descriptors,
uploads that stall, that come to a full server, that are abandoned mid-way, or are not videos.
Limits are small here (a 50-connection cap, half-second timeouts) so that every case is quick."""

from __future__ import annotations

import logging
import os
import resource
import socket
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("websockets", reason="the serve extra is not installed")
httpx = pytest.importorskip("httpx")

from streamvlm.serve.limits import MAX_PENDING_QUERIES  # noqa: E402

from .conftest import GoodClient, hostile  # noqa: E402

CAP = 50
GUARDED = dict(max_connections=CAP, header_timeout=0.5, body_timeout=0.5, max_sessions=3, idle_timeout=5.0)


@pytest.fixture(scope="module")
def guarded_server(tiny_model):
    with hostile(tiny_model, **GUARDED) as running:
        yield running


def uploads_of(server) -> list:
    return list(server.server.config.app.state.serve.uploads.iterdir())


def wait_sessions(server, n: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while server.server.config.app.state.serve.scheduler.count != n:
        assert time.monotonic() < deadline, "sessions were not freed"
        time.sleep(0.02)


def raw(server, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(server.sock.getsockname()[:2], timeout=5)
    if data:
        sock.sendall(data)
    return sock


def answer(sock: socket.socket, within: float = 3.0) -> bytes:
    """Everything the server sends until it closes the connection (a hang fails at ``within``)."""
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    return data


def test_half_sent_headers_time_out_and_connections_are_capped(guarded_server, tiny_model):
    """80 connections that never finish their headers on a 50-connection server: those beyond the
    cap are answered 503 at once, the others 408 after the header timeout; all are closed, and a
    stream that was running goes on undisturbed."""
    with GoodClient(guarded_server, tiny_model, pause=0.3) as good:
        start = time.monotonic()
        socks = [raw(guarded_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(80)]
        answers = [answer(s, within=3.0) for s in socks]
        took = time.monotonic() - start
    good.check()
    statuses = [a.split(b" ", 2)[1] if a.startswith(b"HTTP/1.1 ") else a for a in answers]
    assert set(statuses) == {b"503", b"408"}, set(statuses)
    assert statuses.count(b"503") >= 80 - CAP and statuses.count(b"408") <= CAP - 1
    assert took < 3.0
    assert httpx.get(guarded_server.url + "/healthz").status_code == 200


def test_a_keep_alive_connection_half_sending_its_next_request_times_out(guarded_server):
    sock = raw(guarded_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(3)
    first = b""
    while b"sessions" not in first:
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the next request, never finished
    assert answer(sock).startswith(b"HTTP/1.1 408")


def test_accept_out_of_file_descriptors_logs_one_line(guarded_server, tiny_model, caplog):
    """The server process runs out of file descriptors while 40 clients connect: one log line, no
    traceback, and connections are accepted again once descriptors are free."""
    caplog.set_level(logging.WARNING)
    with GoodClient(guarded_server, tiny_model, pause=0.4) as good:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(40)]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        in_use = len(os.listdir("/proc/self/fd"))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 2, hard))
            for sock in socks:  # the kernel completes each handshake; accept() then fails for want of an fd
                sock.connect(guarded_server.sock.getsockname()[:2])
            time.sleep(1.3)  # asyncio retries accepting every second: two failures at least
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for sock in socks:
                sock.close()
    good.check()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert httpx.get(guarded_server.url + "/healthz", timeout=2).status_code == 200
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
    lines = [r.getMessage() for r in caplog.records if "accept" in r.getMessage()]
    assert len(lines) == 1 and "cannot accept connections" in lines[0], lines
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_stalled_chunked_upload_times_out_and_leaves_no_file(guarded_server, tiny_model):
    with GoodClient(guarded_server, tiny_model) as good:
        sock = raw(guarded_server, b"POST /v1/narrate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"10\r\n0123456789abcdef\r\n")
        start = time.monotonic()
        reply = answer(sock)  # the server answers and closes, though the body never ends
        assert time.monotonic() - start < 2.5
    good.check()
    assert reply.startswith(b"HTTP/1.1 408") and b"upload_timeout" in reply
    wait_sessions(guarded_server, 0)
    assert uploads_of(guarded_server) == []


def test_full_server_refuses_an_upload_before_its_body(guarded_server, tiny_model):
    from websockets.sync.client import connect

    with connect(guarded_server.ws_url + "/v1/stream") as a, connect(guarded_server.ws_url + "/v1/stream") as b:
        a.recv(timeout=5), b.recv(timeout=5)
        with GoodClient(guarded_server, tiny_model, pause=0.2) as good:  # the third and last session
            sock = raw(guarded_server, b"POST /v1/narrate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            reply = answer(sock, within=2.0)  # answered at once: not one byte of the body was sent
            assert uploads_of(guarded_server) == []
        good.check()
    assert reply.startswith(b"HTTP/1.1 503") and b"server_full" in reply


def test_client_leaving_mid_upload_logs_one_line(guarded_server, tiny_model, caplog):
    caplog.set_level(logging.INFO)
    with GoodClient(guarded_server, tiny_model) as good:
        sock = raw(guarded_server, b"POST /v1/narrate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                   + b"\x00" * 5000)
        time.sleep(0.1)
        sock.close()
        deadline = time.monotonic() + 5
        while not [r for r in caplog.records if "upload" in r.getMessage()]:
            assert time.monotonic() < deadline, "the server did not notice the client leaving"
            time.sleep(0.02)
    good.check()
    wait_sessions(guarded_server, 0)
    assert uploads_of(guarded_server) == []
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in lines] == ["an upload's client left before its body was in (5000 bytes came)"]


def test_upload_questions_capped_and_a_text_body_named(guarded_server, tiny_model):
    queries = [("query", f"{k}:Question {k}?") for k in range(MAX_PENDING_QUERIES)]  # + the instruction
    with GoodClient(guarded_server, tiny_model) as good:
        r = httpx.post(guarded_server.url + "/v1/narrate", params=queries, content=b"\x00" * 2000)
        assert r.status_code == 422 and f"at most {MAX_PENDING_QUERIES}" in r.json()["message"]
        r = httpx.post(guarded_server.url + "/v1/narrate", content=b"These are my notes, not a video.\n" * 30)
        assert r.status_code == 400 and r.json()["code"] == "bad_video"
        assert r.json()["message"] == ("the request body (990 bytes) is not a video: it looks like text "
                                       "('These are my notes, not a video.')")
        r = httpx.post(guarded_server.url + "/v1/narrate", content=b"")
        assert r.status_code == 400 and "empty" in r.json()["message"]
    good.check()
    assert uploads_of(guarded_server) == []
