"""Background reading for live sources (webcams, network streams, pipes).

A blocking read from a camera or a socket can stall forever (a device that stops delivering,
a server that accepts and never sends, a pipe with no writer). The reading therefore runs in a
daemon thread that feeds a bounded queue, and the caller waits on that queue with a timeout:
a stall becomes a :class:`VideoError` after ``read_timeout`` seconds, never a hang. A thread
stuck inside a system call is abandoned (it exits as soon as the call returns).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from streamvlm.errors import VideoError
from streamvlm.video.frames import DecodeStats

_END = object()
# How often a blocked producer re-checks whether the reader was stopped (seconds).
_POLL = 0.1


class LiveReader:
    """Runs ``work(reader)`` in a daemon thread. ``work`` announces the stream header with
    :meth:`set_info`, then hands items to :meth:`put` until it returns or :meth:`put` says stop.

    maxsize: queue length; when full and ``drop_oldest`` is passed to put, the oldest waiting
    item is discarded (counted in ``stats.dropped``) so a slow caller sees fresh frames.
    """

    def __init__(self, name: str, work: Callable[[LiveReader], None], stats: DecodeStats,
                 *, maxsize: int = 4) -> None:
        self.name = name
        self.stats = stats
        self.info: Any = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._opened = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True,
                                        name=f"streamvlm-video {name}")
        self._thread.start()

    def stopped(self) -> bool:
        return self._stopped.is_set()

    def set_info(self, info: Any) -> None:
        """Called by ``work`` once the source is open."""
        self.info = info
        self._opened.set()

    def put(self, item: Any, *, drop_oldest: bool) -> bool:
        """Queues ``item``; False when the reader was stopped (``work`` should return)."""
        while not self._stopped.is_set():
            try:
                if drop_oldest:
                    self._queue.put_nowait(item)
                else:
                    self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                if drop_oldest:
                    try:
                        self._queue.get_nowait()
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass
        return False

    def wait_info(self, timeout: float) -> Any:
        """The header set by ``work``; raises what ``work`` raised, or VideoError on timeout."""
        if not self._opened.wait(timeout):
            self.stop()
            raise VideoError(f"{self.name}: no response within {timeout:g} s (source stalled)")
        if self._error is not None:
            raise self._error
        return self.info

    def get(self, timeout: float) -> Any | None:
        """The next item, or None at the end of the source; raises what ``work`` raised, or
        VideoError when nothing arrives within ``timeout`` seconds."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise VideoError(f"{self.name}: no frame within {timeout:g} s (source stalled)") from None
        if item is _END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        """Asks the thread to finish and waits briefly; a thread stuck in a system call is left."""
        self._stopped.set()
        self._thread.join(timeout=2 * _POLL)

    def _run(self, work: Callable[[LiveReader], None]) -> None:
        try:
            work(self)
            final: Any = _END
        except BaseException as error:  # handed to the caller's thread, which re-raises it
            final = error
        if not self._opened.is_set():
            self._error = final if isinstance(final, BaseException) else VideoError(
                f"{self.name}: ended before opening")
            self._opened.set()
        self.put(final, drop_oldest=False)
