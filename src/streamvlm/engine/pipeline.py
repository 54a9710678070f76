"""The parallel pipeline: decoding, frame encoding and the LLM run concurrently.

Three stages joined by bounded queues::

    reader thread  --raw-->  encoder thread  --embeds-->  caller (LLM, in the caller's thread)

The reader pulls sampled frames from a source (any iterable of :class:`~streamvlm.video.Frame`);
the encoder batches whatever frames are waiting (up to ``encode_batch``) through the frame encoder,
so it catches up when it falls behind; the caller feeds the LLM frame by frame and receives the
events. Nothing holds more than ``queue_size`` frames.

Pacing: ``realtime=False`` (offline) applies back-pressure: the reader waits for the model, no
frame is lost, it runs as fast as the slowest stage. ``realtime=True`` never makes a live source
wait: when the raw queue is full the oldest waiting frame is dropped and counted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from torch import Tensor

from .options import TimedQuery

_END = object()


class FrameConsumer(Protocol):
    """What the pipeline drives (see :class:`~streamvlm.engine.assistant.LiveAssistant`)."""

    def encode_images(self, images: Sequence[np.ndarray]) -> Tensor: ...  # uint8 [H,W,3] each -> [N, T, D]

    def ask(self, text: str, time: float) -> None: ...

    def push_frame(self, frame: Tensor, time: float) -> list[Any]: ...  # frame embeds [T, D]


@dataclass
class PipelineStats:
    """Counters of one run. ``fps`` counts frames through the LLM per second of wall time."""

    frames: int = 0
    dropped: int = 0
    encoded_batches: int = 0
    encode_seconds: float = 0.0
    llm_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    video_time: float = 0.0

    @property
    def wall_seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def fps(self) -> float:
        wall = self.wall_seconds
        return self.frames / wall if wall > 0 else 0.0


@dataclass
class Step:
    """One frame through the LLM: its time and index, and the events it produced."""

    time: float
    index: int
    events: list[Any]


class StreamPipeline:
    """Run ``frames`` through ``consumer`` with decoding and encoding in background threads.

    Iterate it to get one :class:`Step` per frame the LLM processed. Queries are asked when the
    first frame at or after their time comes up.
    """

    def __init__(
        self,
        consumer: FrameConsumer,
        frames: Iterable[Any],
        *,
        queries: Iterable[TimedQuery] = (),
        realtime: bool = False,
        queue_size: int = 16,
        encode_batch: int = 8,
    ) -> None:
        if queue_size < 1 or encode_batch < 1:
            raise ValueError("queue_size and encode_batch must be >= 1")
        self.consumer = consumer
        self.frames = frames
        self.queries = sorted(queries, key=lambda q: q.time)
        self.pending_queries: list[TimedQuery] = []
        self.realtime = realtime
        self.encode_batch = encode_batch
        self.stats = PipelineStats()
        self._raw: queue.Queue = queue.Queue(maxsize=queue_size)
        self._embeds: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read, name="streamvlm-reader", daemon=True),
            threading.Thread(target=self._encode, name="streamvlm-encoder", daemon=True),
        ]

    # ---------------------------------------------------------------- stages
    def _put(self, q: queue.Queue, item: Any) -> bool:
        """Blocking put that gives up when the pipeline stops."""
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _put_dropping_oldest(self, item: Any) -> None:
        while True:
            try:
                self._raw.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._raw.get_nowait()
                    with self._lock:
                        self.stats.dropped += 1
                except queue.Empty:
                    pass

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc

    def _read(self) -> None:
        try:
            for frame in self.frames:
                if self._stop.is_set():
                    return
                if self.realtime:
                    self._put_dropping_oldest(frame)
                elif not self._put(self._raw, frame):
                    return
        except BaseException as exc:  # handed to the caller's thread and raised there
            self._fail(exc)
        finally:
            self._put(self._raw, _END)

    def _encode(self) -> None:
        try:
            done = False
            while not done and not self._stop.is_set():
                try:
                    first = self._raw.get(timeout=0.05)
                except queue.Empty:
                    continue
                batch = [first]
                while len(batch) < self.encode_batch and batch[-1] is not _END:
                    try:
                        batch.append(self._raw.get_nowait())
                    except queue.Empty:
                        break
                if batch[-1] is _END:
                    batch.pop()
                    done = True
                if batch:
                    start = time.perf_counter()
                    embeds = self.consumer.encode_images([f.image for f in batch])
                    with self._lock:
                        self.stats.encode_seconds += time.perf_counter() - start
                        self.stats.encoded_batches += 1
                    for frame, emb in zip(batch, embeds):
                        if not self._put(self._embeds, (frame, emb)):
                            return
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._put(self._embeds, _END)

    # ---------------------------------------------------------------- caller side
    def __iter__(self) -> Iterator[Step]:
        for t in self._threads:
            t.start()
        queries = list(self.queries)
        try:
            while True:
                item = self._embeds.get()
                if item is _END:
                    break
                frame, embeds = item
                while queries and queries[0].time <= frame.time:
                    q = queries.pop(0)
                    self.consumer.ask(q.text, q.time)
                start = time.perf_counter()
                events = self.consumer.push_frame(embeds, frame.time)
                self.stats.llm_seconds += time.perf_counter() - start
                self.stats.frames += 1
                self.stats.video_time = frame.time
                yield Step(frame.time, frame.index, events)
            if self._error is not None:
                raise self._error
            self.pending_queries = queries
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background threads and wait for them (idempotent)."""
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5)
