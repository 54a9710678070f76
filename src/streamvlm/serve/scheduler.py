"""One worker thread owns the model and serves every session fairly.

Each :class:`Session` has a bounded queue of frames: a live stream's frame arriving on a full
queue drops the oldest waiting one (counted); an upload (``POST /v1/narrate``) waits instead, so
nothing of a file is lost. The worker takes one frame from each session that has work, in
round-robin order (:meth:`Scheduler._next_batch`), and runs that batch (:meth:`Scheduler._step`):
each frame is decoded and brought to the model's input geometry on its own (so frames of any size
batch together), the frames are encoded in one batch, and the sessions advanced by one batched
step (:func:`~streamvlm.engine.batch.step_frames`: one forward for all their frames, then one
per reply token for those answering or speaking), each session's result the same as alone.

Whatever fails for one session's frame (its decoding, its preprocessing, its encoding, its step)
ends that session alone: a batch whose encoding fails is encoded again frame by frame. A session
gets at most :data:`~.limits.QUESTIONS_PER_FRAME` questions answered at one frame, so one client's
questions never hold the worker (and everyone's frames) for long.

Nothing here runs on the event loop: the app hands frames and questions over with the
``submit_*`` methods (which never block a live stream) and receives messages through each
session's ``emit`` callback, called from the worker thread.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..engine.batch import step_frames
from ..engine.kv_policy import stream_policy
from ..engine.layout import LayoutIds
from ..engine.options import GenerationConfig, TimedQuery
from .images import ImageError, decode_image
from .limits import QUESTIONS_PER_FRAME, ServeLimits
from .logs import log
from .metrics import ServeMetrics
from .protocol import AssistantDeltaMessage, AssistantMessage, CloseCode, ErrorMessage, UserMessage

if TYPE_CHECKING:
    from ..video.resize import FrameFit


@dataclass(frozen=True)
class Close:
    """Emitted last: the session is over; the app closes the connection with ``code``."""

    code: int
    reason: str = ""


class _Cancelled(Exception):
    """The session was closed while the worker was decoding its reply."""


@dataclass
class _Frame:
    time: float
    payload: bytes | np.ndarray
    arrived: float = field(default_factory=time.monotonic)


class Session:
    """One stream: its assistant (KV cache), its frame queue, its questions and counters."""

    def __init__(self, assistant: Any, emit: Callable[[Any], None], *, queue_frames: int, live: bool,
                 deltas: bool) -> None:
        self.id = secrets.token_urlsafe(16)
        self.assistant = assistant
        self.emit = emit
        self.live = live
        self.deltas = deltas
        self.frames: deque[_Frame] = deque()
        self.queue_frames = queue_frames
        self.queries: list[TimedQuery] = []
        self.threshold: float | None = None
        self.ending = False
        self.closed = False
        self.last_time = -1.0  # of the last frame accepted
        self.received = self.processed = self.dropped = self.rejected = 0
        self.latency_sum = 0.0
        self.opened = time.monotonic()

    @property
    def kv_tokens(self) -> int:
        return self.assistant.session.kv_length

    def has_work(self) -> bool:
        return bool(self.frames) or (self.ending and not self.closed)


class Scheduler:
    """The model's one worker thread and the sessions it serves."""

    def __init__(self, model: Any, generation: GenerationConfig, *, kv_budget: int | None, limits: ServeLimits,
                 metrics: ServeMetrics, fit: FrameFit | None) -> None:
        self.model = model
        self.generation = generation
        self.kv_policy = stream_policy(model, kv_budget, len(LayoutIds.from_model(model).start))
        """Every session's (None: unbounded); checked once, here, not at each session."""
        self.limits = limits
        self.metrics = metrics
        self.fit = fit
        """The size client images are scaled to (the model's input: one resize), None: as sent."""
        self._cond = threading.Condition()
        self._sessions: dict[str, Session] = {}
        self._turn: deque[str] = deque()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="streamvlm-serve-worker", daemon=True)
        metrics.watch_queue(self.queued_frames)

    # ------------------------------------------------------------------ app side (event loop)
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            for session in self._sessions.values():
                session.closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    @property
    def count(self) -> int:
        return len(self._sessions)

    @property
    def full(self) -> bool:
        return len(self._sessions) >= self.limits.max_sessions

    def queued_frames(self) -> int:
        return sum(len(s.frames) for s in list(self._sessions.values()))

    def open(self, emit: Callable[[Any], None], *, live: bool = True, deltas: bool = True) -> Session | None:
        """A new session, or None at ``max_sessions``."""
        from ..engine.assistant import LiveAssistant

        with self._cond:
            if self.full:
                self.metrics.sessions_refused.inc()
                return None
            # Reserve the place first: building the assistant is cheap (no tensor is allocated).
            session = Session(LiveAssistant(self.model, self.generation, self.kv_policy), emit,
                              queue_frames=self.limits.queue_frames, live=live, deltas=deltas)
            self._sessions[session.id] = session
            self._turn.append(session.id)
            self.metrics.sessions.set(len(self._sessions))
        return session

    def close(self, session: Session) -> None:
        """Forget ``session`` now (a client left): its queue and KV cache are freed, a reply being
        decoded for it stops at the next token."""
        with self._cond:
            session.closed = True
            session.frames.clear()
            self._sessions.pop(session.id, None)
            self.metrics.sessions.set(len(self._sessions))
            self._cond.notify_all()

    def submit_frame(self, session: Session, time_: float, payload: bytes | np.ndarray, *,
                     last: bool = False) -> str | None:
        """Queue a frame. A live session drops its oldest waiting frame when full; an upload waits
        (call it from a thread). ``last``: no frame follows (as :meth:`end`, at once: the questions
        still due are all answered at this frame). Returns an error message when the time goes
        backwards."""
        with self._cond:
            if session.closed or session.ending:
                return "the stream has ended"
            if time_ < session.last_time:
                return f"frame time goes backwards ({time_} < {session.last_time})"
            session.last_time = time_
            session.received += 1
            self.metrics.frames_received.inc()
            while len(session.frames) >= session.queue_frames:
                if session.live:
                    session.frames.popleft()
                    session.dropped += 1
                    self.metrics.frames_dropped.inc()
                else:
                    self._cond.wait(timeout=0.1)
                    if session.closed:
                        return "the stream has ended"
            session.frames.append(_Frame(time_, payload))
            session.ending = session.ending or last
            self._cond.notify_all()
        return None

    def submit_query(self, session: Session, query: TimedQuery) -> None:
        with self._cond:
            session.queries.append(query)
            session.queries.sort(key=lambda q: q.time)
            self._cond.notify_all()

    def set_threshold(self, session: Session, threshold: float) -> None:
        with self._cond:
            session.threshold = threshold

    def end(self, session: Session) -> None:
        """No more frames: process what is queued, then emit :class:`Close` (1000)."""
        with self._cond:
            session.ending = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not any(s.has_work() for s in self._sessions.values()):
                    self._cond.wait(timeout=0.5)
                if self._stop:
                    return
                batch = self._next_batch()
            self._step(batch)

    def _next_batch(self) -> list[tuple[Session, _Frame | None]]:
        """One frame of each session with work, in round-robin order (called under the lock). A
        ``None`` frame: the session has ended and its queue is empty."""
        batch = []
        for _ in range(len(self._turn)):
            sid = self._turn[0]
            self._turn.rotate(-1)
            session = self._sessions.get(sid)
            if session is None:
                self._turn.remove(sid)
                continue
            if session.frames:
                batch.append((session, session.frames.popleft()))
            elif session.ending:
                batch.append((session, None))
        self._cond.notify_all()  # uploads waiting for room
        return batch

    def _step(self, batch: list[tuple[Session, _Frame | None]]) -> None:
        """Run one frame of each session of ``batch``: their images encoded in one batch, their
        frames (and queries, and replies) advanced by one batched step (``step_frames``). One
        session's failure never touches another."""
        ready: list[tuple[Session, _Frame, Tensor]] = []
        for session, frame in batch:
            if session.closed:
                continue
            if frame is None:
                self._guard(session, self._finish, session)
                continue
            pixels = self._guard(session, self._prepare, session, frame)
            if pixels is not None:
                ready.append((session, frame, pixels))
        ready = self._encode(ready)
        if not ready:
            return
        assistants = [session.assistant for session, _, _ in ready]
        for (session, frame, _), assistant in zip(ready, assistants):
            assistant.session.on_token = self._streamer(session, frame)
        try:
            results = step_frames([a.session for a in assistants], [e for _, _, e in ready],
                                  [f.time for _, f, _ in ready])
        except Exception as exc:  # noqa: BLE001 - the step itself failed (e.g. out of memory): its sessions end
            log.exception("batched step failed")
            for session, _, _ in ready:
                self._fail(session, exc)
            return
        finally:
            for assistant in assistants:
                assistant.session.on_token = None
        for (session, frame, _), result in zip(ready, results):
            if isinstance(result.error, _Cancelled):
                continue
            if result.error is not None:
                log.error("session %s failed", session.id[:6], exc_info=result.error)
                self._fail(session, result.error)
                continue
            self._guard(session, self._deliver, session, frame, result.events)

    @torch.inference_mode()
    def _encode(self, ready: list[tuple[Session, _Frame, Tensor]]) -> list[tuple[Session, _Frame, Tensor]]:
        """The frames' pixels ``[3, S, S]`` -> their embeddings ``[T, D]``, in one batch; when the
        batch fails, frame by frame, so that only the frame that cannot be encoded fails its session."""
        if not ready:
            return []
        try:
            embeds = self.model.embed_frames(torch.stack([pixels for _, _, pixels in ready]))
            return [(session, frame, e) for (session, frame, _), e in zip(ready, embeds)]
        except Exception as exc:  # noqa: BLE001 - find the frame at fault below
            if len(ready) == 1:
                log.error("session %s: its frame cannot be encoded", ready[0][0].id[:6], exc_info=exc)
                self._fail(ready[0][0], exc)
                return []
            log.warning("encoding a batch of %d frames failed (%s: %s); encoding them one by one",
                        len(ready), type(exc).__name__, exc)
        encoded = []
        for session, frame, pixels in ready:
            embeds = self._guard(session, self.model.embed_frames, pixels[None])
            if embeds is not None:
                encoded.append((session, frame, embeds[0]))
        return encoded

    def _deliver(self, session: Session, frame: _Frame, events: list) -> None:
        latency = time.monotonic() - frame.arrived
        session.processed += 1
        session.latency_sum += latency
        self.metrics.processed(latency)
        for event in session.assistant.text_events(events):
            if event.role == "user":
                session.emit(UserMessage(time=event.time, text=event.text))
            else:
                session.emit(AssistantMessage(time=event.time, text=event.text))

    def _guard(self, session: Session, step: Callable, *args):
        """``step(*args)``; an unexpected exception fails ``session`` alone (returns None)."""
        try:
            return step(*args)
        except _Cancelled:
            return None
        except Exception as exc:  # noqa: BLE001 - one session's failure never touches another
            log.exception("session %s failed", session.id[:6])
            self._fail(session, exc)
            return None

    def _fail(self, session: Session, exc: BaseException) -> None:
        try:  # the client may be gone already (its emit then raises): the session is freed all the same
            session.emit(ErrorMessage(code="internal", message=f"the session failed: {type(exc).__name__}"))
            session.emit(Close(CloseCode.INTERNAL, "internal error"))
        except Exception:  # noqa: BLE001
            log.warning("session %s: its failure could not be reported to its client", session.id[:6])
        finally:
            self.close(session)

    def _prepare(self, session: Session, frame: _Frame) -> Tensor | None:
        """The frame's pixels ``[3, S, S]`` at the model's input geometry (None when the image is
        rejected, with an error event), its threshold and the questions due at it queued on the
        session (at most :data:`QUESTIONS_PER_FRAME`, all of them at a stream's last frame)."""
        image = frame.payload
        if isinstance(image, bytes):
            try:
                image = decode_image(image, max_pixels=self.limits.max_image_pixels, fit=self.fit)
            except ImageError as exc:
                session.rejected += 1
                self.metrics.frames_rejected.inc()
                session.emit(ErrorMessage(code=exc.code, message=f"frame at {frame.time:.3f}s: {exc}"))
                return None
        device = self.model.device
        pixels = self.model.frame_encoder.preprocess(torch.as_tensor(image)[None].to(device))[0]
        assistant = session.assistant
        if session.threshold is not None:
            assistant.session.set_threshold(session.threshold)
            session.threshold = None
        with self._cond:
            due = [q for q in session.queries if q.time <= frame.time]
            if not (session.ending and not session.frames):
                due = due[:QUESTIONS_PER_FRAME]
            session.queries = session.queries[len(due):]
        last = assistant.session.last_time
        for q in due:  # asked at the first frame at or after their time, as narrate does
            assistant.ask(q.text, max(q.time, last))
        return pixels

    def _streamer(self, session: Session, frame: _Frame) -> Callable[[list[int]], None]:
        """The ``on_token`` of a session's replies at ``frame``: streams the new text as deltas and
        stops the reply once the session is closed."""
        decode = self.model.tokenizer.decode
        said = [""]

        def on_token(ids: list[int]) -> None:
            if session.closed:
                raise _Cancelled
            if len(ids) == 1:  # a new reply
                said[0] = ""
            if session.deltas:
                text = decode(ids, skip_special_tokens=True)
                if text.startswith(said[0]) and len(text) > len(said[0]):
                    session.emit(AssistantDeltaMessage(time=frame.time, delta=text[len(said[0]):]))
                said[0] = text

        return on_token

    def _finish(self, session: Session) -> None:
        with self._cond:
            pending, session.queries = session.queries, []
        last = session.assistant.session.last_time
        for q in pending:
            why = ("more questions were due at its frame than one frame answers, and the stream ended before the "
                   "next frame" if q.time <= last else "it came after the last frame")
            session.emit(ErrorMessage(code="ended", message=f"query at {q.time:.1f}s not asked: {why}: {q.text}"))
        session.emit(Close(CloseCode.NORMAL, "end"))
        self.close(session)
