"""The model's side of serving: one thread owns the model and runs the scheduler's plans.

For each plan (:meth:`~.scheduler.Scheduler.next_plan`) the runner decodes the frames' images on
a thread pool (never on the model's thread; each image brought to the model's input size on its
own, so frames of any size batch together), then on its own thread preprocesses them, encodes them
in one batch and advances the streams by one batched step
(:func:`~streamvlm.engine.batch.step_frames`: one forward for all their frames, then one per reply
token for those answering or speaking), each stream's result the same as alone.

Whatever fails for one stream's frame (its decoding, its preprocessing, its encoding, its step)
ends that stream alone: a batch whose encoding fails is encoded again frame by frame. Messages go
to each stream's ``emit``, called from this thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..engine.assistant import LiveAssistant
from ..engine.batch import step_frames
from .images import ImageError, decode_image
from .limits import ServeLimits
from .logs import log
from .metrics import ServeMetrics
from .protocol import AssistantDeltaMessage, AssistantMessage, CloseCode, ErrorMessage, UserMessage
from .scheduler import ClientStream, Close, QueuedFrame, Scheduler, StreamStep

if TYPE_CHECKING:
    from ..engine.defaults import StreamSetup
    from ..video.resize import FrameFit

DECODE_WORKERS = 4
"""Threads decoding client images (PyAV releases the GIL while it decodes)."""


class _Cancelled(Exception):
    """The stream was closed while its reply was being decoded."""


class ModelRunner:
    """Runs the plans of ``scheduler`` over the model of ``setup`` on one thread of its own."""

    def __init__(self, setup: StreamSetup, scheduler: Scheduler, *, limits: ServeLimits, metrics: ServeMetrics,
                 fit: FrameFit | None) -> None:
        self.setup = setup
        self.model = setup.model
        self.engine = setup.engine()
        """Every stream's engine: the KV policy checked once, here, not at each stream."""
        self.scheduler = scheduler
        self.limits = limits
        self.metrics = metrics
        self.fit = fit
        """The size client images are scaled to (the model's input: one resize), None: as sent."""
        self._decoder = ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="streamvlm-decode")
        self._thread = threading.Thread(target=self.serve, name="streamvlm-serve-worker", daemon=True)

    # ------------------------------------------------------------------ lifetime
    def new_assistant(self) -> LiveAssistant:
        """The model side of a new stream: a session of this runner's engine."""
        return LiveAssistant.for_engine(self.engine)

    def open(self, emit: Callable[[Any], None], *, live: bool = True, deltas: bool = True) -> ClientStream | None:
        """A new stream with its model side, or None when the scheduler is full."""
        return self.scheduler.open(emit, live=live, deltas=deltas, assistant=self.new_assistant)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close every stream, wait for the step under way, free the decoding threads."""
        self.scheduler.stop()
        self._thread.join(timeout=10)
        self._decoder.shutdown(wait=False, cancel_futures=True)

    def serve(self) -> None:
        """The model's thread: run plans until the scheduler stops."""
        while (plan := self.scheduler.next_plan()) is not None:
            self.run(plan)

    # ------------------------------------------------------------------ one plan
    def run(self, plan: list[StreamStep]) -> None:
        """Run one plan: finish the streams that ended, step the others together (their images
        decoded on the pool, encoded in one batch, one batched step). One stream's failure never
        touches another."""
        plan = [step for step in plan if not step.stream.closed]
        for step in plan:
            if step.frame is None:
                self._guard(step.stream, self._finish if step.finish else self._answer, step)
        framed = [step for step in plan if step.frame is not None]
        decoded = [self._decoder.submit(self._decode, step.frame) for step in framed]
        ready: list[tuple[StreamStep, Tensor]] = []
        for step, image in zip(framed, decoded):
            pixels = self._guard(step.stream, self._prepare, step, image)
            if pixels is not None:
                ready.append((step, pixels))
        self._advance(self._encode(ready))

    def _decode(self, frame: QueuedFrame) -> np.ndarray:
        """On a pool thread: the frame's RGB image at the model's input size (ImageError when refused)."""
        if isinstance(frame.payload, bytes):
            return decode_image(frame.payload, max_pixels=self.limits.max_image_pixels, fit=self.fit)
        return frame.payload

    def _prepare(self, step: StreamStep, image: Future) -> Tensor | None:
        """The frame's pixels ``[3, S, S]`` (None when its image is refused, with an error event);
        its theta applied and its questions asked (at the first frame at or after their time, as
        narrate does)."""
        stream = step.stream
        session = stream.assistant.session
        if step.threshold is not None:
            session.set_threshold(step.threshold)
        try:
            rgb = image.result()
        except ImageError as exc:
            stream.rejected += 1
            self.metrics.frames_rejected.inc()
            stream.emit(ErrorMessage(code=exc.code, message=f"frame at {step.frame.time:.3f}s: {exc}"))
            self.scheduler.requeue(stream, step.questions)  # asked at the next frame that is not refused
            return None
        pixels = self.model.frame_encoder.preprocess(torch.as_tensor(rgb)[None].to(self.model.device))[0]
        for q in step.questions:
            session.push_query(q.text, max(q.time, session.last_time))
        return pixels

    @torch.inference_mode()
    def _encode(self, ready: list[tuple[StreamStep, Tensor]]) -> list[tuple[StreamStep, Tensor]]:
        """The frames' pixels ``[3, S, S]`` -> their embeddings ``[T, D]``, in one batch; when the
        batch fails, frame by frame, so that only the frame that cannot be encoded fails its stream."""
        if not ready:
            return []
        try:
            embeds = self.model.embed_frames(torch.stack([pixels for _, pixels in ready]))
            return [(step, e) for (step, _), e in zip(ready, embeds)]
        except Exception as exc:  # noqa: BLE001 - find the frame at fault below
            if len(ready) == 1:
                log.error("session %s: its frame cannot be encoded", ready[0][0].stream.id[:6], exc_info=exc)
                self._fail(ready[0][0].stream, exc)
                return []
            log.warning("encoding a batch of %d frames failed (%s: %s); encoding them one by one",
                        len(ready), type(exc).__name__, exc)
        encoded = []
        for step, pixels in ready:
            embeds = self._guard(step.stream, self.model.embed_frames, pixels[None])
            if embeds is not None:
                encoded.append((step, embeds[0]))
        return encoded

    def _advance(self, encoded: list[tuple[StreamStep, Tensor]]) -> None:
        """One batched step of the encoded frames' streams; each stream's events delivered."""
        if not encoded:
            return
        sessions = [step.stream.assistant.session for step, _ in encoded]
        for (step, _), session in zip(encoded, sessions):
            session.on_token = self._streamer(step)
        try:
            results = step_frames(sessions, [e for _, e in encoded], [step.frame.time for step, _ in encoded])
        except Exception as exc:  # noqa: BLE001 - the step itself failed (e.g. out of memory): its streams end
            log.exception("batched step failed")
            for step, _ in encoded:
                self._fail(step.stream, exc)
            return
        finally:
            for session in sessions:
                session.on_token = None
        for (step, _), result in zip(encoded, results):
            if isinstance(result.error, _Cancelled):
                continue
            if result.error is not None:
                log.error("session %s failed", step.stream.id[:6], exc_info=result.error)
                self._fail(step.stream, result.error)
                continue
            self._guard(step.stream, self._deliver, step, result.events)

    def _deliver(self, step: StreamStep, events: list) -> None:
        stream = step.stream
        latency = time.monotonic() - step.frame.arrived
        stream.processed += 1
        stream.latency_sum += latency
        self.metrics.processed(latency)
        self._emit_events(stream, events)

    @staticmethod
    def _emit_events(stream: ClientStream, events: list) -> None:
        for event in stream.assistant.text_events(events):
            if event.role == "user":
                stream.emit(UserMessage(time=event.time, text=event.text))
            else:
                stream.emit(AssistantMessage(time=event.time, text=event.text))

    @torch.inference_mode()
    def _answer(self, step: StreamStep) -> None:
        """An ended stream's questions due at its last frame, answered after it (as that frame
        would have answered them, had it answered them all)."""
        stream, session = step.stream, step.stream.assistant.session
        if session.frames_seen == 0:  # every frame was refused: nothing to answer about
            self._not_asked(stream, step.questions, "no frame of the stream could be used")
            return
        times = [max(q.time, session.last_time) for q in step.questions]
        for q, time_ in zip(step.questions, times):
            session.push_query(q.text, time_)
        session.on_token = self._streamer(step, session.last_time)
        try:
            events = session.answer_queries(max(times), inclusive=True, index=session.frames_seen - 1)
        finally:
            session.on_token = None
        self._emit_events(stream, events)

    def _streamer(self, step: StreamStep, time_: float | None = None) -> Callable[[list[int]], None]:
        """The ``on_token`` of a stream's replies at this step (at ``time_``, default its frame's):
        streams the new text as deltas and stops the reply once the stream is closed."""
        decode = self.model.tokenizer.decode
        stream, said = step.stream, [""]
        when = step.frame.time if time_ is None else time_

        def on_token(ids: list[int]) -> None:
            if stream.closed:
                raise _Cancelled
            if len(ids) == 1:  # a new reply
                said[0] = ""
            if stream.deltas:
                text = decode(ids, skip_special_tokens=True)
                if text.startswith(said[0]) and len(text) > len(said[0]):
                    stream.emit(AssistantDeltaMessage(time=when, delta=text[len(said[0]):]))
                said[0] = text

        return on_token

    def _finish(self, step: StreamStep) -> None:
        """A stream that ended: the questions it never got asked reported, then closed (1000)."""
        stream = step.stream
        self._not_asked(stream, step.questions, "it came after the last frame")
        stream.emit(Close(CloseCode.NORMAL, "end"))
        self.scheduler.close(stream)

    @staticmethod
    def _not_asked(stream: ClientStream, questions: list, why: str) -> None:
        for q in questions:
            stream.emit(ErrorMessage(code="ended", message=f"query at {q.time:.1f}s not asked: {why}: {q.text}"))

    # ------------------------------------------------------------------ failures
    def _guard(self, stream: ClientStream, step: Callable, *args):
        """``step(*args)``; an unexpected exception fails ``stream`` alone (returns None)."""
        try:
            return step(*args)
        except _Cancelled:
            return None
        except Exception as exc:  # noqa: BLE001 - one stream's failure never touches another
            log.exception("session %s failed", stream.id[:6])
            self._fail(stream, exc)
            return None

    def _fail(self, stream: ClientStream, exc: BaseException) -> None:
        try:  # the client may be gone already (its emit then raises): the stream is freed all the same
            stream.emit(ErrorMessage(code="internal", message=f"the session failed: {type(exc).__name__}"))
            stream.emit(Close(CloseCode.INTERNAL, "internal error"))
        except Exception:  # noqa: BLE001
            log.warning("session %s: its failure could not be reported to its client", stream.id[:6])
        finally:
            self.scheduler.close(stream)
