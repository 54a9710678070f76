"""The FastAPI application of ``streamvlm serve`` (protocol: :mod:`.protocol`, docs/serve.md)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import math
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..engine.defaults import StreamSetup, resolve_stream
from ..engine.narration import NARRATE_INSTRUCTION, event_record, frame_fit
from ..engine.options import GenerationConfig, StreamOptions, TimedQuery, parse_query
from .limits import MAX_BACKLOG, MAX_ERRORS, MAX_PENDING_QUERIES, ServeLimits, check_access
from .logs import Throttled, log
from .metrics import ServeMetrics
from .model_runner import ModelRunner
from .protocol import (
    CLIENT_MESSAGE,
    AssistantMessage,
    CloseCode,
    ConfigMessage,
    EndMessage,
    ErrorCode,
    ErrorMessage,
    Limits,
    QueryMessage,
    SessionMessage,
    StatsMessage,
    UserMessage,
    json_schema,
    split_frame,
)
from .scheduler import ClientStream, Close, Scheduler

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM
    from ..video import FrameSource

STATIC = Path(__file__).parent / "static"
DRAINING = "this replica is shutting down; connect again for a new session (a load balancer sends it elsewhere)"
OPEN_PATHS = ("/", "/healthz", "/readyz", "/static/", "/favicon.ico")
"""Paths answered without the API key (the app page, health checks for load balancers)."""
_uploads_lost = Throttled()


@dataclass
class ServeState:
    """What one app holds: the scheduler and the model runner, the stream settings, the limits,
    the key, the metrics."""

    scheduler: Scheduler
    runner: ModelRunner
    setup: StreamSetup
    limits: ServeLimits
    api_key: str | None
    metrics: ServeMetrics
    uploads: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="streamvlm-uploads-")))
    sockets: int = 0
    """WebSocket streams being handled (a closing one included): a drain waits for them to close."""
    note: str | None = None
    """A line about the model, sent in every session message."""

    @property
    def fps(self) -> float:
        """Frames per second a client should send (the stream's, the model's by default)."""
        return self.setup.fps


def _authorized(state: ServeState, headers: Any, params: Any) -> bool:
    if state.api_key is None:
        return True
    given = headers.get("x-api-key") or params.get("key") or ""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode(), state.api_key.encode())


def create_app(model: StreamVLM, *, generation: GenerationConfig | None = None,
               stream: StreamOptions | None = None, limits: ServeLimits | None = None,
               api_key: str | None = None, note: str | None = None) -> FastAPI:
    """The app serving ``model`` (already loaded); its model runner's thread runs while the app
    runs. ``api_key`` follows the rule of :func:`~.limits.check_access` (UserError otherwise).
    ``note``: a line about the model every session message carries (the embedded model's)."""
    if api_key is not None:
        check_access("127.0.0.1", api_key, where="api_key")
    limits = limits or ServeLimits()
    metrics = ServeMetrics()
    setup = resolve_stream(model, stream, generation)
    scheduler = Scheduler(limits, metrics)
    runner = ModelRunner(setup, scheduler, limits=limits, metrics=metrics, fit=frame_fit(model))
    state = ServeState(scheduler, runner, setup, limits, api_key, metrics, note=note)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runner.start()
        try:
            yield
        finally:
            runner.stop()
            shutil.rmtree(state.uploads, ignore_errors=True)

    app = FastAPI(title="streamvlm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    app.state.drain = functools.partial(drain, state)  # what serve_forever runs on SIGTERM

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        path = request.url.path
        if not (path in OPEN_PATHS or path.startswith("/static/")) and not _authorized(
                state, request.headers, request.query_params):
            return JSONResponse({"code": ErrorCode.UNAUTHORIZED, "message": "missing or wrong API key"}, 401)
        return await call_next(request)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "sessions": scheduler.count}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = scheduler.accepting
        return JSONResponse({"ready": ready, "sessions": scheduler.count, "max_sessions": limits.max_sessions,
                             "draining": scheduler.draining}, 200 if ready else 503)

    @app.get("/metrics")
    async def metrics_page() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/schema")
    async def schema() -> dict[str, Any]:
        return json_schema()

    @app.websocket("/v1/stream")
    async def stream_socket(ws: WebSocket) -> None:
        await _stream(ws, state)

    @app.post("/v1/narrate")
    async def narrate(request: Request) -> Response:
        return await _narrate(request, state)

    return app


# ============================================================================ drain (SIGTERM)
async def drain(state: ServeState) -> tuple[int, int]:
    """Stop taking streams (``/readyz`` 503 at once), give the open ones ``drain_timeout`` seconds
    to finish, then close those left (error ``draining``, close 1012) and wait, at most
    ``write_timeout``, for their connections to close. Returns (streams open at the start, streams
    closed at the timeout)."""
    loop = asyncio.get_running_loop()
    scheduler, limits = state.scheduler, state.limits
    opened = scheduler.drain()
    deadline = loop.time() + limits.drain_timeout
    while scheduler.count and loop.time() < deadline:
        await asyncio.sleep(0.05)
    left = scheduler.streams()
    for stream in left:
        with contextlib.suppress(Exception):  # a client gone meanwhile: freed all the same
            stream.emit(ErrorMessage(code=ErrorCode.DRAINING, message=DRAINING))
            stream.emit(Close(CloseCode.SERVICE_RESTART, "draining"))
        scheduler.close(stream)
    deadline = loop.time() + limits.write_timeout
    while state.sockets and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return opened, len(left)


# ============================================================================ WebSocket
async def _stream(ws: WebSocket, state: ServeState) -> None:
    state.sockets += 1
    try:
        await _stream_session(ws, state)
    finally:
        state.sockets -= 1


async def _stream_session(ws: WebSocket, state: ServeState) -> None:
    await ws.accept()
    if not _authorized(state, ws.headers, ws.query_params):
        await _refuse(ws, ErrorCode.UNAUTHORIZED, "missing or wrong API key", CloseCode.UNAUTHORIZED)
        return
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue = asyncio.Queue()

    def emit(message: Any) -> None:
        loop.call_soon_threadsafe(outbox.put_nowait, message)

    session = state.runner.open(emit)
    if session is None:
        if state.scheduler.draining:
            await _refuse(ws, ErrorCode.DRAINING, DRAINING, CloseCode.SERVICE_RESTART)
        else:
            await _refuse(ws, ErrorCode.SERVER_FULL, f"{state.limits.max_sessions} streams are running; try again "
                                                     f"later", CloseCode.SERVER_FULL)
        return
    tasks: list[asyncio.Task] = []
    try:
        limits = state.limits
        await ws.send_text(SessionMessage(
            id=session.id, fps=state.fps, frame_side=state.runner.fit.size if state.runner.fit else 0,
            frame_resize=state.runner.fit.rule if state.runner.fit else None,
            threshold=session.assistant.session.threshold,
            limits=Limits(max_message_bytes=limits.max_message_bytes, max_image_pixels=limits.max_image_pixels,
                          max_query_chars=limits.max_query_chars, queue_frames=limits.queue_frames,
                          idle_timeout=limits.idle_timeout, write_timeout=limits.write_timeout),
            note=state.note).model_dump_json(exclude={"note"} if state.note is None else None))
        tasks = [asyncio.create_task(_reader(ws, state, session, outbox)),
                 asyncio.create_task(_writer(ws, state, outbox)),
                 asyncio.create_task(_stats(state, session, outbox))]
        reader, writer = tasks[:2]
        await asyncio.wait([reader, writer], return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and not reader.cancelled() and reader.result():
            # the reader queued a close (after its error event): let the writer send both
            await asyncio.wait([writer], timeout=limits.write_timeout)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        state.scheduler.close(session)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(CloseCode.NORMAL), 1.0)


async def _refuse(ws: WebSocket, code: str, message: str, close: int) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(ErrorMessage(code=code, message=message).model_dump_json())
        await ws.close(close, message[:100])


async def _reader(ws: WebSocket, state: ServeState, session: ClientStream, outbox: asyncio.Queue) -> bool:
    """Read the client's messages until it leaves (False) or a close is queued (True)."""
    try:
        return await _Reader(ws, state, session, outbox).run()
    except (WebSocketDisconnect, OSError):
        return False
    except Exception:  # noqa: BLE001 - a bug here ends this stream, visibly, and no other
        log.exception("session %s: reading its messages failed", session.id[:6])
        outbox.put_nowait(ErrorMessage(code=ErrorCode.INTERNAL, message="the server failed reading a message"))
        outbox.put_nowait(Close(CloseCode.INTERNAL, "internal error"))
        return True


class _Reader:
    """One client's messages, read in order: frames to the scheduler (a lossless stream waits for
    room in its queue), questions, settings and the end; errors and closes to its outbox. Each
    handler returns None to read on, False when the client left, True when a close is queued."""

    def __init__(self, ws: WebSocket, state: ServeState, session: ClientStream, outbox: asyncio.Queue) -> None:
        self.ws, self.session, self.outbox = ws, session, outbox
        self.limits, self.scheduler = state.limits, state.scheduler
        self.errors = 0
        self.room = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake() -> None:  # from the runner's thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self.room.set)

        session.on_room = wake

    async def run(self) -> bool:
        while (outcome := await self.message()) is None:
            pass
        return outcome

    async def message(self) -> bool | None:
        """Read and handle one message."""
        limits = self.limits
        try:
            # after `end` the client waits for the server: no idle timeout
            message = await asyncio.wait_for(self.ws.receive(), None if self.session.ending else limits.idle_timeout)
        except asyncio.TimeoutError:
            return self.close(ErrorCode.IDLE_TIMEOUT, f"nothing received for {limits.idle_timeout:g} s",
                              CloseCode.IDLE_TIMEOUT, "idle")
        if message["type"] == "websocket.disconnect":
            return False
        data, text = message.get("bytes"), message.get("text")
        size = len(data) if data is not None else len(text.encode()) if text is not None else 0
        if size > limits.max_message_bytes:
            return self.close(ErrorCode.MESSAGE_TOO_LARGE, f"message of {size} bytes > {limits.max_message_bytes}",
                              CloseCode.TOO_BIG, "message too large")
        if data is not None:
            await self.frame(data)
            return None
        return self.text(text) if text is not None else None

    def error(self, code: str, message: str) -> None:
        """An error event; too many of them close the stream (1008)."""
        self.errors += 1
        self.outbox.put_nowait(ErrorMessage(code=code, message=message))
        if self.errors >= MAX_ERRORS:
            self.outbox.put_nowait(Close(CloseCode.POLICY, "too many errors"))

    def close(self, code: str, message: str, close_code: int, reason: str) -> bool:
        """An error event and a close, queued for the writer."""
        self.outbox.put_nowait(ErrorMessage(code=code, message=message))
        self.outbox.put_nowait(Close(close_code, reason))
        return True

    async def frame(self, data: bytes) -> None:
        session = self.session
        try:
            time_, image = split_frame(data)
        except ValueError as exc:
            session.rejected += 1
            self.error(ErrorCode.BAD_FRAME, str(exc))
            return
        await self.wait_for_room()
        problem = self.scheduler.submit_frame(session, time_, image)
        if problem is not None:
            session.rejected += 1
            self.error(ErrorCode.BAD_TIME if "backwards" in problem else ErrorCode.ENDED, problem)

    async def wait_for_room(self) -> None:
        """A lossless stream stops reading while its queue is full (back-pressure instead of
        drops), until the runner takes a frame from it (or it closes)."""
        session = self.session
        while not session.live and session.queue_full and not session.closed:
            self.room.clear()
            if session.queue_full and not session.closed:  # checked again after clear: no wake-up is lost
                await self.room.wait()

    def text(self, text: str) -> bool | None:
        try:
            raw = json.loads(text)
        except RecursionError:  # not a ValueError: nested past the parser's depth, never a message
            return self.close(ErrorCode.BAD_JSON, "a text message nested too deeply", CloseCode.POLICY,
                              "JSON nested too deeply")
        except ValueError:
            self.error(ErrorCode.BAD_JSON, "a text message must be one JSON object")
            return None
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in ("query", "config", "end"):
            self.error(ErrorCode.UNKNOWN_TYPE, f"unknown message type {str(kind)[:40]!r} (query, config, end)")
            return None
        try:
            parsed = CLIENT_MESSAGE.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"][1:]) or kind
            code = ErrorCode.BAD_TIME if where == "time" else ErrorCode.BAD_MESSAGE
            self.error(code, f"{kind}: {where}: {first['msg']}")
            return None
        if isinstance(parsed, QueryMessage):
            self.query(parsed)
        elif isinstance(parsed, ConfigMessage):
            if parsed.threshold is not None:
                self.scheduler.set_threshold(self.session, parsed.threshold)
            if parsed.drop_frames is not None:
                self.session.live = parsed.drop_frames
        elif isinstance(parsed, EndMessage):
            self.scheduler.end(self.session)
        return None

    def query(self, parsed: QueryMessage) -> None:
        limits = self.limits
        if len(parsed.text) > limits.max_query_chars:
            self.error(ErrorCode.QUERY_TOO_LONG, f"a question has at most {limits.max_query_chars} characters")
        elif not math.isfinite(parsed.time):
            self.error(ErrorCode.BAD_TIME, "query: time must be finite")
        elif len(self.session.queries) >= MAX_PENDING_QUERIES:
            self.error(ErrorCode.BAD_MESSAGE, f"{MAX_PENDING_QUERIES} questions are already waiting for their frame")
        else:
            self.scheduler.submit_query(self.session, TimedQuery(parsed.time, parsed.text.strip()))


async def _writer(ws: WebSocket, state: ServeState, outbox: asyncio.Queue) -> None:
    timeout = state.limits.write_timeout
    while True:
        message = await outbox.get()
        if isinstance(message, Close):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(int(message.code), message.reason), timeout)
            return
        if outbox.qsize() > MAX_BACKLOG:
            await _drop_slow(ws, state)
            return
        try:
            await asyncio.wait_for(ws.send_text(message.model_dump_json()), timeout)
        except asyncio.TimeoutError:
            await _drop_slow(ws, state)
            return


async def _drop_slow(ws: WebSocket, state: ServeState) -> None:
    state.metrics.slow_readers.inc()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(CloseCode.SLOW_READER, "slow reader"), 1.0)


async def _stats(state: ServeState, session: ClientStream, outbox: asyncio.Queue) -> None:
    loop = asyncio.get_running_loop()
    last_time, last_done, last_latency = loop.time(), 0, 0.0
    while True:
        await asyncio.sleep(state.limits.stats_interval)
        now, done, latency = loop.time(), session.processed, session.latency_sum
        frames = done - last_done
        outbox.put_nowait(StatsMessage(
            frames_received=session.received, frames_processed=done, frames_dropped=session.dropped,
            frames_rejected=session.rejected, fps=round(frames / max(now - last_time, 1e-9), 2),
            latency_ms=round(1000 * (latency - last_latency) / frames, 1) if frames else 0.0,
            queue=len(session.frames), kv_tokens=session.kv_tokens))
        last_time, last_done, last_latency = now, done, latency


# ============================================================================ POST /v1/narrate
def _bad(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status)


def _refuse_upload(status: int, code: str, message: str) -> JSONResponse:
    """An error answered before the body was read in full: the connection closes after it (an
    unread body is never waited for)."""
    response = _bad(status, code, message)
    response.headers["connection"] = "close"
    return response


async def _narrate(request: Request, state: ServeState) -> Response:
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    limits = state.limits
    too_large = f"uploads are limited to {limits.max_upload_bytes} bytes"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_upload_bytes:
        return _refuse_upload(413, ErrorCode.UPLOAD_TOO_LARGE, too_large)
    try:
        asked = [parse_query(q) for q in request.query_params.getlist("query")]
    except ValueError as exc:
        return _refuse_upload(422, ErrorCode.BAD_MESSAGE, str(exc))
    instruction = request.query_params.get("instruction", NARRATE_INSTRUCTION).strip()
    if any(len(q.text) > limits.max_query_chars for q in asked) or len(instruction) > limits.max_query_chars:
        return _refuse_upload(422, ErrorCode.QUERY_TOO_LONG,
                              f"a question has at most {limits.max_query_chars} characters")
    if instruction:
        asked.insert(0, TimedQuery(0.0, instruction))
    if len(asked) > MAX_PENDING_QUERIES:
        return _refuse_upload(422, ErrorCode.BAD_MESSAGE, f"{len(asked)} questions (the instruction included); "
                                                          f"an upload has at most {MAX_PENDING_QUERIES}")
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue = asyncio.Queue()
    # the upload's place is taken before a byte of its body is read: a full server writes no file
    session = state.runner.open(lambda m: loop.call_soon_threadsafe(outbox.put_nowait, m),
                                live=False, deltas=False)
    if session is None:
        if state.scheduler.draining:
            return _refuse_upload(503, ErrorCode.DRAINING, DRAINING)
        return _refuse_upload(503, ErrorCode.SERVER_FULL,
                              f"{limits.max_sessions} streams are running; try again later")
    path: Path | None = None
    size = 0
    handed_over = False
    try:
        with tempfile.NamedTemporaryFile(dir=state.uploads, suffix=".upload", delete=False) as handle:
            path = Path(handle.name)
            try:
                async with asyncio.timeout(limits.body_timeout):
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > limits.max_upload_bytes:
                            return _refuse_upload(413, ErrorCode.UPLOAD_TOO_LARGE, too_large)
                        handle.write(chunk)
            except TimeoutError:
                return _refuse_upload(408, ErrorCode.UPLOAD_TIMEOUT, f"the body did not arrive in full within "
                                                                     f"{limits.body_timeout:g} s ({size} bytes came)")
        if size == 0:
            return _bad(400, ErrorCode.BAD_VIDEO, "the request body is empty: send the video file's bytes as the "
                                                  "body (curl --data-binary @video.mp4 URL)")
        try:
            source = await run_in_threadpool(_open_upload, state, path)
        except Exception as exc:  # noqa: BLE001 - any file the decoder refuses is the client's
            return _bad(400, ErrorCode.BAD_VIDEO, _not_a_video(path, size, exc))
        for q in asked:
            state.scheduler.submit_query(session, q)
        threading.Thread(target=_feed, args=(state, session, source, path), daemon=True).start()
        handed_over = True  # the feeder deletes the file, _lines closes the session
        return StreamingResponse(_lines(state, session, outbox), media_type="application/x-ndjson")
    except ClientDisconnect:
        _uploads_lost.warning(f"an upload's client left before its body was in ({size} bytes came)")
        return Response(status_code=400)  # nobody reads it
    finally:
        if not handed_over:
            state.scheduler.close(session)
            if path is not None:
                path.unlink(missing_ok=True)


_NOT_VIDEO = {b"%PDF": "a PDF document", b"PK\x03\x04": "a ZIP archive", b"\x1f\x8b": "gzip data",
              b"GIF8": "a GIF image", b"BM": "a BMP image", b"ID3": "MP3 audio", b"fLaC": "FLAC audio",
              b"\x7fELF": "a program (ELF)", b"SQLite format 3": "an SQLite database"}
"""Leading bytes of files that are plainly not videos (named in the answer to such an upload)."""


def _not_a_video(path: Path, size: int, exc: Exception) -> str:
    """Why an upload cannot be narrated: what its bytes look like when they are plainly not a
    video (text, an image, a document), else the decoder's own words."""
    from .images import sniff

    with open(path, "rb") as f:
        head = f.read(256)
    found = sniff(head)
    if found is not None:
        what = f"a {'JPEG' if found[0] == 'mjpeg' else found[0].upper()} image (send images as WebSocket frames)"
    elif head[8:12] == b"WAVE":
        what = "WAV audio"
    else:
        what = next((name for magic, name in _NOT_VIDEO.items() if head.startswith(magic)), None)
    if what is None:
        text = head.decode("utf-8", errors="replace").rstrip("\ufffd")  # a character cut at byte 256
        if text.strip() and all(c.isprintable() or c in "\t\r\n" for c in text):
            first = text.strip().splitlines()[0]
            what = f"text ({first[:40]!r}{'...' if len(first) > 40 else ''})"
    if what is None:
        return str(exc).replace(str(path), "the upload")
    return f"the request body ({size} bytes) is not a video: it looks like {what}"


def _open_upload(state: ServeState, path: Path) -> FrameSource:
    from ..video import open_source

    return open_source(str(path), fps=state.fps, fit=state.runner.fit, allow_urls=False,
                       max_pixels=state.limits.max_image_pixels)


def _feed(state: ServeState, session: ClientStream, source: FrameSource, path: Path) -> None:
    """Hand the upload's frames over (waiting for room), the last one marked as last."""
    scheduler = state.scheduler
    try:
        with source:
            previous = None
            for frame in source:
                if previous is not None and scheduler.submit_frame(session, previous.time, previous.image) is not None:
                    return
                previous = frame
            if previous is not None:
                scheduler.submit_frame(session, previous.time, previous.image, last=True)
    except Exception as exc:  # noqa: BLE001 - a file that breaks mid-way: a last error line
        session.emit(ErrorMessage(code=ErrorCode.BAD_VIDEO, message=str(exc).replace(str(path), "the upload")))
    finally:
        path.unlink(missing_ok=True)
        scheduler.end(session)


async def _lines(state: ServeState, session: ClientStream, outbox: asyncio.Queue) -> AsyncIterator[str]:
    try:
        while True:
            message = await outbox.get()
            if isinstance(message, Close):
                return
            if isinstance(message, (UserMessage, AssistantMessage)):
                yield json.dumps(event_record(message.time, message.type, message.text), ensure_ascii=False) + "\n"
            elif isinstance(message, ErrorMessage) and message.code != ErrorCode.ENDED:
                yield json.dumps({"error": message.code, "message": message.message}, ensure_ascii=False) + "\n"
    finally:
        state.scheduler.close(session)
