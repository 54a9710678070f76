"""Prometheus metrics of one server (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServeMetrics:
    """Sessions (in use, capacity, refused), readiness and draining, frames received / processed /
    dropped / rejected, frames/s, per-frame latency, queue depth and lag: what an autoscaler reads."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("streamvlm_sessions", "Streams open now (WebSocket and narrate uploads)", registry=r)
        self.capacity = Gauge("streamvlm_max_sessions", "Streams this replica takes at most (--max-sessions)",
                              registry=r)
        self.ready = Gauge("streamvlm_ready", "1 while a new stream would be taken (/readyz 200), else 0",
                           registry=r)
        self.draining = Gauge("streamvlm_draining", "1 from SIGTERM on (open streams finishing, none taken)",
                              registry=r)
        self.sessions_refused = Counter("streamvlm_sessions_refused", "Streams refused at max-sessions", registry=r)
        self.slow_readers = Counter("streamvlm_slow_readers", "Streams dropped for not reading their messages",
                                    registry=r)
        self.frames_received = Counter("streamvlm_frames_received", "Frames received", registry=r)
        self.frames_processed = Counter("streamvlm_frames_processed", "Frames through the model", registry=r)
        self.frames_dropped = Counter("streamvlm_frames_dropped",
                                      "Frames dropped (oldest first) from a full session queue", registry=r)
        self.frames_rejected = Counter("streamvlm_frames_rejected", "Frames refused (bad or too large image)",
                                       registry=r)
        self.frame_latency = Histogram(
            "streamvlm_frame_latency_seconds", "From a frame's arrival to the end of its processing",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.queue_depth = Gauge("streamvlm_queue_frames", "Frames waiting in all session queues", registry=r)
        self.queue_lag = Gauge("streamvlm_queue_lag_seconds",
                               "How long the oldest frame waiting in any session queue has waited", registry=r)
        self.fps = Gauge("streamvlm_frames_per_second", "Frames processed per second over the last 10 s",
                         registry=r)
        self._done: deque[float] = deque()
        self.latencies: deque[float] = deque(maxlen=100_000)
        """The most recent per-frame latencies, in seconds (``bench --serve`` reads percentiles)."""
        self._lock = threading.Lock()
        self.fps.set_function(self.recent_fps)

    def processed(self, latency: float) -> None:
        self.frames_processed.inc()
        self.frame_latency.observe(latency)
        self.latencies.append(latency)
        now = time.monotonic()
        with self._lock:
            self._done.append(now)
            while self._done and self._done[0] < now - 10:
                self._done.popleft()

    def recent_fps(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._done and self._done[0] < now - 10:
                self._done.popleft()
            return len(self._done) / 10.0

    def total(self, name: str) -> float:
        """The value of counter ``name`` (e.g. ``frames_processed``) in this registry."""
        return self.registry.get_sample_value(f"streamvlm_{name}_total") or 0.0

    def watch(self, *, capacity: int, depth: Callable[[], float], lag: Callable[[], float],
              ready: Callable[[], float]) -> None:
        """Read the scheduler's state at each scrape: its capacity, queue depth and lag, readiness."""
        self.capacity.set(capacity)
        self.queue_depth.set_function(depth)
        self.queue_lag.set_function(lag)
        self.ready.set_function(ready)
