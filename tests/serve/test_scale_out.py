"""Scale-out: three real ``streamvlm serve`` replicas (subprocesses, the tiny checkpoint) behind a real
HAProxy running the shipped deploy/haproxy.cfg (only its addresses rendered); real WebSocket
clients and the browser app. docs/serve.md, Scale-out.

The replicas start once for the module, in parallel. The tests run in file order and the last two
stop a replica each (one drained by SIGTERM, one killed); each works on the replicas still alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
httpx = pytest.importorskip("httpx")
pytest.importorskip("websockets", reason="the serve extra is not installed")

from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from streamvlm.client import open_stream  # noqa: E402
from streamvlm.serve.protocol import (  # noqa: E402
    AssistantMessage,
    CloseCode,
    ErrorCode,
    ErrorMessage,
    SessionMessage,
    UserMessage,
    frame_message,
)

from .conftest import KEY  # noqa: E402
from .test_serve import small_png  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
MAX_SESSIONS = 20
DRAIN_TIMEOUT = 1.0
INSTRUCTION = "Please narrate."
HEADERS = {"X-API-Key": KEY}
"""The replicas require the key (HAProxy listens on every address): clients send it through HAProxy."""


def render(config: str, port: int, replicas: list[str], stats: Path) -> str:
    """The shipped configuration with its addresses replaced: the frontend on ``port``, one server
    line per replica (``host:port``), and an admin socket for the tests to read server states."""
    out, servers = [], 0
    for line in config.splitlines():
        words = line.split()
        if words[:1] == ["global"]:
            out += [line, f"    stats socket {stats} level admin"]
        elif words[:1] == ["bind"]:
            out.append(f"    bind 127.0.0.1:{port}")
        elif words[:1] == ["server"]:
            if servers == 0:
                out += [f"    server replica{i + 1} {address}" for i, address in enumerate(replicas)]
            servers += 1
        else:
            out.append(line)
    assert servers and sum(w.split()[:1] == ["bind"] for w in config.splitlines()) == 1, \
        "deploy/haproxy.cfg: expected one bind line and server lines to render"
    return "\n".join(out) + "\n"


@dataclass
class Replica:
    proc: subprocess.Popen
    stderr: Path
    url: str = ""
    name: str = ""

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] + "/v1/stream"

    def sessions(self) -> int:
        return httpx.get(self.url + "/healthz").json()["sessions"]

    def metric(self, name: str) -> float:
        for line in httpx.get(self.url + "/metrics", headers=HEADERS).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} is not in /metrics")


@dataclass
class Cluster:
    replicas: list[Replica]
    haproxy: subprocess.Popen
    log: Path
    stats: Path
    url: str
    alive: list[Replica] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] + "/v1/stream"

    def states(self) -> dict[str, str]:
        """HAProxy's status of each server (UP, DOWN, "UP 1/2", ...), from its admin socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.stats))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = data.decode().splitlines()
        header = rows[0].lstrip("# ").split(",")
        table = [dict(zip(header, row.split(","))) for row in rows[1:] if row]
        return {r["svname"]: r["status"] for r in table if r["pxname"] == "replicas"
                and r["svname"] not in ("BACKEND", "FRONTEND")}

    def wait_state(self, replica: Replica, state: str, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while self.states()[replica.name] != state:
            assert time.monotonic() < deadline, f"HAProxy: {replica.name} is {self.states()[replica.name]}"
            time.sleep(0.05)

    def wait_up(self, within: float = 20.0) -> None:
        """Until HAProxy runs and sees every server up."""
        deadline = time.monotonic() + within
        while not self.stats.exists() or set(self.states().values()) != {"UP"}:
            assert self.haproxy.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"HAProxy does not see every server up: {self.states()}"
            time.sleep(0.05)

    def counts(self) -> list[int]:
        return [r.sessions() for r in self.alive]

    def wait_idle(self, within: float = 10.0) -> None:
        """Until every replica alive has freed the sessions of the tests before."""
        deadline = time.monotonic() + within
        while any(self.counts()):
            assert time.monotonic() < deadline, f"sessions not freed: {self.counts()}"
            time.sleep(0.05)

    def statuses(self) -> list[int]:
        """The HTTP status of every request HAProxy logged (101: a WebSocket upgrade)."""
        pattern = re.compile(r" -?\d+/-?\d+/-?\d+/-?\d+/\+?-?\d+ (\d{3}) ")
        return [int(m.group(1)) for line in self.log.read_text().splitlines() if (m := pattern.search(line))]


def _url_of(proc: subprocess.Popen, stderr: Path, within: float = 90.0) -> str:
    """The URL a replica prints once it listens (its first line)."""
    ready, _, _ = select.select([proc.stdout], [], [], within)
    line = proc.stdout.readline() if ready else ""
    assert line.startswith("streamvlm serve: open http://"), f"replica did not start: {line}{stderr.read_text()}"
    return line.split("open ")[1].split("/ ")[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_haproxy(work: Path, replicas: list[str]) -> tuple[subprocess.Popen, int, Path, Path]:
    """HAProxy on deploy/haproxy.cfg rendered for ``replicas`` (host:port): (process, its port, its
    admin socket, its log)."""
    port, stats, log, cfg = _free_port(), work / "haproxy.sock", work / "haproxy.log", work / "haproxy.cfg"
    cfg.write_text(render(CONFIG.read_text(), port, replicas, stats))
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, port, stats, log


@pytest.fixture(scope="module")
def cluster(tiny_checkpoint, tmp_path_factory):
    if not Path(HAPROXY).exists():
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy); .ci/run installs it")
    work = tmp_path_factory.mktemp("scale-out")
    replicas = []
    env = {**os.environ, "STREAMVLM_API_KEY": KEY}
    for i in range(3):  # started together: their start-up (imports, the model) overlaps
        err = work / f"replica{i + 1}.err"
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamvlm.cli", "serve", "--model", str(tiny_checkpoint), "--device", "cpu",
             "--port", "0", "--threads", "1", "--api-key-env", "STREAMVLM_API_KEY", "--max-sessions", str(MAX_SESSIONS),
             "--drain-timeout", str(DRAIN_TIMEOUT), "--stats-interval", "0.5"],
            stdout=subprocess.PIPE, stderr=err.open("w"), text=True, env=env)
        replicas.append(Replica(proc, err, name=f"replica{i + 1}"))
    haproxy = None
    try:
        for r in replicas:
            r.url = _url_of(r.proc, r.stderr)
        haproxy, port, stats, log = start_haproxy(work, [r.url[len("http://"):] for r in replicas])
        c = Cluster(replicas, haproxy, log, stats, f"http://127.0.0.1:{port}", alive=list(replicas))
        c.wait_up()
        yield c
        assert not [s for s in c.statuses() if s >= 500], "HAProxy answered a 5xx:\n" + log.read_text()
    finally:
        for proc in [r.proc for r in replicas] + ([haproxy] if haproxy else []):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_48_sessions_spread_over_the_replicas(cluster):
    """48 streams at once through HAProxy: least-connections spreads them evenly; each is served to its
    end (1000), and each replica's /metrics shows its sessions, its capacity and its frames/s moving."""
    png = small_png()
    assert [r.metric("streamvlm_max_sessions") for r in cluster.alive] == [MAX_SESSIONS] * len(cluster.alive)
    before = [r.metric("streamvlm_frames_processed_total") for r in cluster.alive]

    async def main() -> tuple[list[int | None], list[int], list[float]]:
        from websockets.asyncio.client import connect as aconnect

        opened, go = asyncio.Barrier(49), asyncio.Event()

        async def one() -> int | None:
            async with aconnect(cluster.ws_url, additional_headers=HEADERS) as ws:
                assert json.loads(await ws.recv())["type"] == "session"
                await opened.wait()
                await go.wait()
                await ws.send(frame_message(0.0, png))
                await ws.send(json.dumps({"type": "end"}))
                async for _ in ws:
                    pass
            return ws.close_code

        clients = [asyncio.create_task(one()) for _ in range(48)]
        await asyncio.wait_for(opened.wait(), 30)
        counts = await asyncio.to_thread(cluster.counts)
        gauges = await asyncio.to_thread(lambda: [r.metric("streamvlm_sessions") for r in cluster.alive])
        go.set()
        return await asyncio.wait_for(asyncio.gather(*clients), 60), counts, gauges

    codes, counts, gauges = asyncio.run(main())
    assert codes == [CloseCode.NORMAL] * 48
    assert sum(counts) == 48 and max(counts) - min(counts) <= 2, counts  # 16 each, give or take
    assert gauges == counts
    after = [r.metric("streamvlm_frames_processed_total") for r in cluster.alive]
    assert [a - b for a, b in zip(after, before)] == counts  # a frame each
    assert all(r.metric("streamvlm_frames_per_second") > 0 for r in cluster.alive)
    assert all(r.metric("streamvlm_queue_lag_seconds") == 0 for r in cluster.alive)  # nothing waits now
    assert cluster.statuses().count(101) >= 48  # the log is read: the no-5xx check at the end means something


class DyingReplica(threading.Thread):
    """A replica in its last moment: it passes the health check (/readyz 200) and closes every other
    connection after reading its request, without an answer (a killed replica's listening socket
    still accepts until the process is gone)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.dropped = 0

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request and (chunk := conn.recv(4096)):
                    request += chunk
                if b" /readyz " in request:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                else:
                    self.dropped += 1


def test_a_replica_dying_as_it_accepts_costs_no_5xx(cluster, tmp_path):
    """A request that a replica accepts and drops without an answer goes to another replica: the
    client gets its answer, never a 502 (HAProxy's retry-on empty-response)."""
    dying = DyingReplica()
    dying.start()
    haproxy, port, stats, log = start_haproxy(tmp_path, [dying.address, cluster.alive[0].url[len("http://"):]])
    try:
        pair = Cluster([], haproxy, log, stats, f"http://127.0.0.1:{port}")
        pair.wait_up()
        with httpx.Client() as client:
            statuses = [client.get(pair.url + "/healthz", headers={"connection": "close"}).status_code
                        for _ in range(10)]
        with connect(pair.ws_url, additional_headers=HEADERS) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "session"
    finally:
        haproxy.kill()
        haproxy.wait()
        dying.sock.close()
    assert dying.dropped >= 1, "no request reached the dying replica: the case was not tried"
    assert statuses == [200] * 10 and not [s for s in pair.statuses() if s >= 500], log.read_text()


def test_a_full_replica_gets_no_new_session(cluster):
    """A replica at --max-sessions (its streams opened directly, unseen by HAProxy's connection
    counts) answers /readyz 503; HAProxy takes it out, and new streams all go to the others."""
    cluster.wait_idle()
    full = cluster.alive[0]
    with contextlib.ExitStack() as opened:
        held = [opened.enter_context(connect(full.ws_url, additional_headers=HEADERS)) for _ in range(MAX_SESSIONS)]
        assert all(json.loads(ws.recv(timeout=10))["type"] == "session" for ws in held)
        assert httpx.get(full.url + "/readyz").status_code == 503
        assert full.metric("streamvlm_ready") == 0
        refused = full.metric("streamvlm_sessions_refused_total")
        cluster.wait_state(full, "DOWN")
        others = [r.sessions() for r in cluster.alive[1:]]
        fresh = [opened.enter_context(connect(cluster.ws_url, additional_headers=HEADERS)) for _ in range(6)]
        assert all(json.loads(ws.recv(timeout=10))["type"] == "session" for ws in fresh)
        assert full.sessions() == MAX_SESSIONS and full.metric("streamvlm_sessions_refused_total") == refused
        assert sum(r.sessions() for r in cluster.alive[1:]) == sum(others) + 6


class Sender(threading.Thread):
    """Streams frames on a stream (times 0, 0.5, 1, ...: the model's fps) every ``period`` seconds
    until stopped, then ends it; reads its events on a thread of their own."""

    def __init__(self, stream, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.stream, self.period = stream, period
        self.stop, self.sent, self.messages = threading.Event(), 0, []
        self.reader = threading.Thread(target=lambda: self.messages.extend(stream.events()), daemon=True)

    def run(self) -> None:
        png = small_png()
        while not self.stop.is_set():
            self.stream.send_frame(self.sent * 0.5, png)
            self.sent += 1
            time.sleep(self.period)
        self.stream.end()

    def begin(self) -> Sender:
        self.start()
        self.reader.start()
        return self

    def replied(self) -> bool:
        return any(isinstance(m, AssistantMessage) for m in list(self.messages))

    def moved(self, frames: int = 3) -> bool:
        """Whether the stream is on its second session with ``frames`` frames sent there."""
        if len(self.stream.sessions) < 2:
            self.mark = None
            return False
        self.mark = self.mark if getattr(self, "mark", None) is not None else self.sent
        return self.sent >= self.mark + frames

    def finish(self, within: float = 30.0) -> list:
        finish_all([self], within)
        return self.messages


def finish_all(senders: list[Sender], within: float = 30.0) -> None:
    """End every stream at once and wait for their last events."""
    for sender in senders:
        sender.stop.set()
    for sender in senders:
        sender.join(within)
        sender.reader.join(within)
        assert not sender.reader.is_alive(), "the stream did not end"


def placed(cluster: Cluster, before: list[int]) -> Replica:
    """The replica whose session count went up by one since ``before`` (a stream just opened)."""
    deadline = time.monotonic() + 5
    while (diff := [a - b for a, b in zip(cluster.counts(), before)]).count(1) != 1 or sum(diff) != 1:
        assert time.monotonic() < deadline, diff
        time.sleep(0.02)
    return cluster.alive[diff.index(1)]


def check_transcript(stream, lost_code: int) -> None:
    """Two sessions, the first lost with ``lost_code``, the second ended; the transcript holds both
    sessions' events on one timeline, the instruction asked again on the second."""
    assert stream.close_codes == [lost_code, CloseCode.NORMAL], stream.close_codes
    assert len({s.id for s in stream.sessions}) == 2
    times = [m.time for m in stream.transcript]
    assert times == sorted(times), times
    asked = [m.time for m in stream.transcript if isinstance(m, UserMessage) and m.text == INSTRUCTION]
    assert len(asked) == 2 and asked[0] == 0 and asked[1] > 0, asked
    assert any(isinstance(m, AssistantMessage) and m.time >= asked[1] for m in stream.transcript)


def test_sigterm_drains_a_replica(cluster):
    """SIGTERM: /readyz 503 at once, a new stream refused (draining, 1012); a stream that ends within
    --drain-timeout finishes (1000, all its events); one still open then is closed (draining, 1012)
    and its reconnecting client goes on through HAProxy on another replica; the process exits 0."""
    cluster.wait_idle()
    before = cluster.counts()
    moving = open_stream(cluster.url, KEY, reconnect=2, instruction=INSTRUCTION)
    drained = placed(cluster, before)
    sender = Sender(moving).begin()
    ending = open_stream(drained.url, KEY)
    ending.ask(INSTRUCTION, 0.0)
    for k in range(3):
        ending.send_frame(k * 0.5, small_png())
    while sender.sent < 5:
        time.sleep(0.02)
    drained.proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    while httpx.get(drained.url + "/readyz").status_code != 503:
        assert time.monotonic() - start < 1.0, "/readyz still 200 after SIGTERM"
    assert httpx.get(drained.url + "/healthz").status_code == 200  # alive: not restarted by a liveness probe
    upload = httpx.post(drained.url + "/v1/narrate", content=b"\0" * 1024, headers=HEADERS)
    assert upload.status_code == 503 and upload.json()["code"] == ErrorCode.DRAINING
    with connect(drained.ws_url, additional_headers=HEADERS) as ws:
        refused = json.loads(ws.recv(timeout=5))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert refused["code"] == ErrorCode.DRAINING and closed.value.rcvd.code == CloseCode.SERVICE_RESTART
    ending.end()
    finished = list(ending.events())
    assert ending.close_code == CloseCode.NORMAL and not [m for m in finished if isinstance(m, ErrorMessage)]
    assert any(isinstance(m, AssistantMessage) for m in finished)
    while not sender.moved():
        assert time.monotonic() - start < 20, "the reconnecting stream did not go on"
        time.sleep(0.05)
    messages = sender.finish()
    assert drained.proc.wait(timeout=DRAIN_TIMEOUT + 15) == 0
    cluster.alive.remove(drained)
    assert "drained: 1 of 2 streams finished, 1 closed (1012)" in drained.stderr.read_text()
    check_transcript(moving, CloseCode.SERVICE_RESTART)
    draining = [i for i, m in enumerate(messages) if isinstance(m, ErrorMessage) and m.code == ErrorCode.DRAINING]
    second = [i for i, m in enumerate(messages) if isinstance(m, SessionMessage)]
    assert len(draining) == 1 and len(second) == 1 and draining[0] < second[0]


def test_killed_replica_clients_reconnect_others_untouched(cluster, short_clip, tmp_path):
    """A replica killed mid-stream: its clients' connections drop without a close frame (1006); the
    Python client and the browser app reconnect through HAProxy to another replica, keeping their
    transcripts; the streams on the other replicas go on untouched."""
    assert len(cluster.alive) >= 2, "needs two replicas alive"
    cluster.wait_idle()
    for r in cluster.alive:
        cluster.wait_state(r, "UP")
    with Browser.open(short_clip, tmp_path) as browser:
        if browser.page is not None:
            before = cluster.counts()
            browser.start(cluster.url)
            victim = placed(cluster, before)
        else:
            victim = None
        streams: list[tuple[Sender, Replica]] = []
        while len(streams) < 6 and not (victim and any(r is victim for _, r in streams)
                                        and any(r is not victim for _, r in streams)):
            before = cluster.counts()
            stream = open_stream(cluster.url, KEY, reconnect=2, instruction=INSTRUCTION)
            where = placed(cluster, before)
            victim = victim or where
            streams.append((Sender(stream).begin(), where))
        deadline = time.monotonic() + 20
        while not all(s.replied() and s.sent >= 3 for s, _ in streams):  # replies and frames past 0 s before the kill
            assert time.monotonic() < deadline, "no reply"
            time.sleep(0.05)
        victim.proc.kill()
        victim.proc.wait()
        cluster.alive.remove(victim)
        killed = time.monotonic()
        moved = [s for s, r in streams if r is victim]
        kept = [s for s, r in streams if r is not victim]
        while not all(s.moved() for s in moved):
            assert time.monotonic() - killed < 20, "a stream of the killed replica did not go on"
            time.sleep(0.05)
        if browser.page is not None:
            browser.wait_reconnected()
        finish_all(kept + moved)
    for sender in moved:
        check_transcript(sender.stream, 1006)
    for sender in kept:
        assert sender.stream.close_codes == [CloseCode.NORMAL]
        assert not [m for m in sender.messages if isinstance(m, ErrorMessage | SessionMessage)]
        assert any(isinstance(m, AssistantMessage) for m in sender.messages)
    assert moved and kept
    if browser.page is None:
        pytest.skip(f"the browser part did not run: {browser.why}")


class Browser:
    """The browser app in headless Chromium (a fake camera playing the clip), or ``page`` None with
    ``why`` when Chromium or Playwright is missing."""

    def __init__(self) -> None:
        self.page, self.why, self._close = None, "", []

    @classmethod
    def open(cls, clip: Path, tmp: Path) -> Browser:
        from .test_browser import CHROMIUM, write_y4m

        self = cls()
        if not Path(CHROMIUM).exists():
            self.why = "Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it"
            return self
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            self.why = "the playwright package is not installed"
            return self
        y4m = write_y4m(clip, tmp / "camera.y4m")
        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}"])
        self._close = [browser.close, playwright.stop]
        self.page = browser.new_page()
        return self

    def start(self, url: str) -> None:
        self.page.goto(url + "/")
        self.page.fill("#key", KEY)
        self.page.dispatch_event("#key", "change")
        self.page.fill("#instruction", INSTRUCTION)
        self.page.click("#camera")
        self.page.wait_for_function("document.querySelector('#transcript li.assistant') !== null", timeout=30_000)

    def wait_reconnected(self) -> None:
        """The transcript notes the lost connection (its code) and goes on: a reply after the note."""
        self.page.wait_for_function(
            """() => { const items = [...document.querySelectorAll('#transcript li')];
                       const note = items.findIndex(li => li.classList.contains('note'));
                       return note > 0 && items.slice(note + 1).some(li => li.classList.contains('assistant')); }""",
            timeout=30_000)
        note = self.page.text_content("#transcript li.note")
        assert "code 1006" in note, note
        assert self.page.locator("#transcript li.assistant").count() >= 2
        assert "Streaming" in self.page.text_content("#status")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        for close in self._close:
            close()
