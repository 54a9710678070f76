"""What runs next, decided from the streams' states and queues alone (no model, no torch here).

Each :class:`ClientStream` has a bounded queue of frames: a live stream's frame arriving on a full
queue drops the oldest waiting one (counted); an upload (``POST /v1/narrate``) waits instead, so
nothing of a file is lost. :meth:`Scheduler.plan` takes one frame from each stream with work, in
round-robin order (every stream with a frame waiting is in every step: none starves), with the
questions due at it (at most :data:`~.limits.QUESTIONS_PER_FRAME`, so one client's questions never
hold the others' frames for long) and a theta the client set since. A stream that has ended and
has nothing queued is planned frameless: first with the questions still due at its last frame
(as many per step as a frame answers, answered after that frame), then once more to be finished.
The model runner (:mod:`.model_runner`) runs each plan; the app hands frames and questions over
with the ``submit_*`` methods (which never block a live stream).

Everything here is guarded by one condition variable: the app's threads and the event loop submit,
the runner's thread plans (:meth:`Scheduler.next_plan` waits for work).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..engine.options import TimedQuery
from .limits import QUESTIONS_PER_FRAME, ServeLimits
from .metrics import ServeMetrics

if TYPE_CHECKING:
    import numpy as np

    from ..engine.assistant import LiveAssistant


@dataclass(frozen=True)
class Close:
    """Emitted last: the stream is over; the app closes the connection with ``code``."""

    code: int
    reason: str = ""


@dataclass
class QueuedFrame:
    """A frame waiting in a stream's queue: its video time, its bytes (or decoded RGB ``[H, W, 3]``)."""

    time: float
    payload: bytes | np.ndarray
    arrived: float = field(default_factory=time.monotonic)


class ClientStream:
    """One client's stream (a WebSocket or an upload) as the scheduler sees it: its frame queue, its
    questions, its flags and counters. ``assistant`` is its model side (KV cache, theta), made by
    the model runner and used by it alone."""

    def __init__(self, emit: Callable[[Any], None], *, queue_frames: int, live: bool, deltas: bool,
                 assistant: LiveAssistant | None = None) -> None:
        self.id = secrets.token_urlsafe(16)
        self.emit = emit
        """Called (from any thread) with each message for the client."""
        self.live = live
        """Drop the oldest waiting frame when the queue is full (else the sender waits)."""
        self.deltas = deltas
        """Stream replies as they are decoded (assistant_delta messages)."""
        self.assistant = assistant
        self.frames: deque[QueuedFrame] = deque()
        self.queue_frames = queue_frames
        self.queries: list[TimedQuery] = []
        self.threshold: float | None = None
        """A theta asked for and not yet applied (applied before the next frame)."""
        self.ending = False
        self.closed = False
        self.last_time = -1.0  # of the last frame accepted
        self.planned_time = -math.inf
        """Video time of the last frame planned (questions up to it are due)."""
        self.received = self.processed = self.dropped = self.rejected = 0
        self.latency_sum = 0.0
        self.opened = time.monotonic()
        self.on_room: Callable[[], None] | None = None
        """Called (from the runner's thread) when a frame leaves its queue or it closes: a sender
        waiting for room (a lossless stream) wakes up."""

    @property
    def kv_tokens(self) -> int:
        """Tokens in its KV cache (0 before its model side exists)."""
        return self.assistant.session.kv_length if self.assistant is not None else 0

    @property
    def queue_full(self) -> bool:
        return len(self.frames) >= self.queue_frames

    def has_work(self) -> bool:
        return bool(self.frames) or (self.ending and not self.closed)

    def _wake(self) -> None:
        if self.on_room is not None:
            self.on_room()


@dataclass
class StreamStep:
    """One stream's part of a plan: its ``frame`` with the ``questions`` to ask at it and a new
    ``threshold`` to apply first. ``frame`` None: the stream has ended, and either ``questions``
    due at its last frame are answered now (after that frame), or, ``finish``, it is finished
    (``questions``: those never asked)."""

    stream: ClientStream
    frame: QueuedFrame | None
    questions: list[TimedQuery] = field(default_factory=list)
    threshold: float | None = None
    finish: bool = False


class Scheduler:
    """The streams being served and the decisions of what each step runs."""

    def __init__(self, limits: ServeLimits, metrics: ServeMetrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self._cond = threading.Condition()
        self._streams: dict[str, ClientStream] = {}
        self._turn: deque[str] = deque()
        self._stopped = False
        self._draining = False
        metrics.watch(capacity=limits.max_sessions, depth=self.queued_frames, lag=self.queue_lag,
                      ready=lambda: float(self.accepting))

    # ------------------------------------------------------------------ app side
    @property
    def count(self) -> int:
        return len(self._streams)

    @property
    def full(self) -> bool:
        return len(self._streams) >= self.limits.max_sessions

    @property
    def draining(self) -> bool:
        """Set by :meth:`drain`: no new stream is taken."""
        return self._draining

    @property
    def accepting(self) -> bool:
        """Whether a new stream would be taken now (``/readyz``)."""
        return not (self._draining or self.full)

    def streams(self) -> list[ClientStream]:
        """The open streams, in the order they opened."""
        with self._cond:
            return list(self._streams.values())

    def queued_frames(self) -> int:
        return sum(len(s.frames) for s in list(self._streams.values()))

    def queue_lag(self) -> float:
        """Seconds the oldest frame waiting in any stream's queue has waited (0 when none waits)."""
        with self._cond:
            oldest = min((s.frames[0].arrived for s in self._streams.values() if s.frames), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    def open(self, emit: Callable[[Any], None], *, live: bool = True, deltas: bool = True,
             assistant: Callable[[], LiveAssistant] | None = None) -> ClientStream | None:
        """A new stream, or None at ``max_sessions`` or once draining. ``assistant`` makes its model side once it
        is admitted (cheap: no tensor is allocated)."""
        with self._cond:
            if not self.accepting:
                self.metrics.sessions_refused.inc()
                return None
            stream = ClientStream(emit, queue_frames=self.limits.queue_frames, live=live, deltas=deltas,
                                  assistant=assistant() if assistant is not None else None)
            self._streams[stream.id] = stream
            self._turn.append(stream.id)
            self.metrics.sessions.set(len(self._streams))
        return stream

    def close(self, stream: ClientStream) -> None:
        """Forget ``stream`` now (a client left, or it ended): its queue is dropped (its model side
        goes with it); a reply being decoded for it stops at the next token."""
        with self._cond:
            stream.closed = True
            stream.frames.clear()
            self._streams.pop(stream.id, None)
            self.metrics.sessions.set(len(self._streams))
            self._cond.notify_all()
        stream._wake()

    def submit_frame(self, stream: ClientStream, time_: float, payload: bytes | np.ndarray, *,
                     last: bool = False) -> str | None:
        """Queue a frame. A live stream drops its oldest waiting frame when full; an upload waits
        (call it from a thread). ``last``: no frame follows (as :meth:`end`, at once: the questions
        still due are all answered at this frame). Returns an error message when the time goes
        backwards or the stream has ended."""
        with self._cond:
            if stream.closed or stream.ending:
                return "the stream has ended"
            if time_ < stream.last_time:
                return f"frame time goes backwards ({time_} < {stream.last_time})"
            stream.last_time = time_
            stream.received += 1
            self.metrics.frames_received.inc()
            while stream.queue_full:
                if stream.live:
                    stream.frames.popleft()
                    stream.dropped += 1
                    self.metrics.frames_dropped.inc()
                else:
                    self._cond.wait(timeout=0.1)  # woken by plan(); the timeout only bounds a missed wake-up
                    if stream.closed:
                        return "the stream has ended"
            stream.frames.append(QueuedFrame(time_, payload))
            stream.ending = stream.ending or last
            self._cond.notify_all()
        return None

    def submit_query(self, stream: ClientStream, query: TimedQuery) -> None:
        with self._cond:
            stream.queries.append(query)
            stream.queries.sort(key=lambda q: q.time)
            self._cond.notify_all()

    def set_threshold(self, stream: ClientStream, threshold: float) -> None:
        """Apply theta ``threshold`` to ``stream`` from its next frame."""
        with self._cond:
            stream.threshold = threshold

    def requeue(self, stream: ClientStream, questions: list[TimedQuery]) -> None:
        """Put back questions planned at a frame that was refused: asked at the next frames."""
        with self._cond:
            stream.queries = sorted(questions + stream.queries, key=lambda q: q.time)

    def end(self, stream: ClientStream) -> None:
        """No more frames: what is queued is processed, then the stream is finished."""
        with self._cond:
            stream.ending = True
            self._cond.notify_all()

    def drain(self) -> int:
        """Take no new stream from now on (the open ones go on); returns how many are open."""
        with self._cond:
            self._draining = True
            self.metrics.draining.set(1)
            return len(self._streams)

    def stop(self) -> None:
        """Close every stream and wake :meth:`next_plan` (it returns None from now on)."""
        with self._cond:
            self._stopped = True
            streams = list(self._streams.values())
            for stream in streams:
                stream.closed = True
            self._cond.notify_all()
        for stream in streams:
            stream._wake()

    # ------------------------------------------------------------------ runner side
    def next_plan(self, timeout: float | None = None) -> list[StreamStep] | None:
        """Wait until some stream has work, then :meth:`plan`; None once stopped (or ``[]`` after
        ``timeout`` seconds without work)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._stopped and not any(s.has_work() for s in self._streams.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return []
                self._cond.wait(timeout=0.5 if left is None else min(left, 0.5))
            if self._stopped:
                return None
            return self._plan()

    def plan(self) -> list[StreamStep]:
        """One step for each stream with work, in round-robin order (see the module's docstring)."""
        with self._cond:
            return self._plan()

    def _plan(self) -> list[StreamStep]:
        steps = []
        for _ in range(len(self._turn)):
            sid = self._turn[0]
            self._turn.rotate(-1)
            stream = self._streams.get(sid)
            if stream is None:
                self._turn.remove(sid)
                continue
            if stream.frames:
                steps.append(self._frame_step(stream))
            elif stream.ending:
                steps.append(self._ended_step(stream))
        self._cond.notify_all()  # uploads waiting for room
        for step in steps:
            if step.frame is not None:
                step.stream._wake()
        return steps

    @staticmethod
    def _frame_step(stream: ClientStream) -> StreamStep:
        frame = stream.frames.popleft()
        stream.planned_time = frame.time
        due = [q for q in stream.queries if q.time <= frame.time][:QUESTIONS_PER_FRAME]
        stream.queries = stream.queries[len(due):]
        threshold, stream.threshold = stream.threshold, None
        return StreamStep(stream, frame, due, threshold)

    @staticmethod
    def _ended_step(stream: ClientStream) -> StreamStep:
        """An ended stream with no frame queued: the questions still due at its last frame (as
        many as one frame answers: the others' frames go on meanwhile), else its finish with the
        questions that came after its last frame."""
        due = [q for q in stream.queries if q.time <= stream.planned_time][:QUESTIONS_PER_FRAME]
        if due:
            stream.queries = stream.queries[len(due):]
            return StreamStep(stream, None, due)
        leftover, stream.queries = stream.queries, []
        return StreamStep(stream, None, leftover, finish=True)
