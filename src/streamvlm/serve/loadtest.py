"""A bounded load run of the server (``streamvlm bench --serve``): N WebSocket clients on
127.0.0.1 stream frames in real time at the model's fps for a fixed time, then stop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .images import encode_png
from .protocol import CloseCode, frame_message

if TYPE_CHECKING:
    from ..engine.options import GenerationConfig
    from ..model.vlm import StreamVLM


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    except OSError:
        return float("nan")


def _images(side: int, count: int = 8) -> list[bytes]:
    """Smooth synthetic frames (compress like camera frames, not like noise)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = []
    for k in range(count):
        phase = k / count
        rgb = np.stack([np.sin(6.28 * (x + phase)), np.cos(6.28 * (y - phase)), np.sin(3.14 * (x + y))], -1)
        out.append(encode_png(((rgb + 1) * 127.5).astype(np.uint8)))
    return out


def load_run(model: StreamVLM, *, sessions: int, seconds: float,
             generation: GenerationConfig | None = None) -> dict[str, Any]:
    """Serve ``model`` on 127.0.0.1 (an ephemeral port, ``max_sessions = sessions``), stream from
    ``sessions`` clients for ``seconds``; return the figures."""
    from websockets.asyncio.client import connect

    from .app import create_app
    from .limits import ServeLimits
    from .server import BackgroundServer

    limits = ServeLimits(max_sessions=sessions, idle_timeout=max(60.0, 2 * seconds), stats_interval=1.0)
    app = create_app(model, generation=generation, limits=limits)
    state = app.state.serve
    images = _images(min(state.runner.fit.size if state.runner.fit else 128, 256))
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.1)

    async def client(url: str) -> tuple[bool, int]:
        sent = 0
        async with connect(url, max_size=None) as ws:
            first = json.loads(await ws.recv())
            if first["type"] != "session":
                return False, 0
            start = time.monotonic()
            k = 0
            while time.monotonic() - start < seconds:
                await ws.send(frame_message(k / state.fps, images[k % len(images)]))
                sent += 1
                k += 1
                await asyncio.sleep(max(0.0, start + k / state.fps - time.monotonic()))
            await ws.send(json.dumps({"type": "end"}))
            async for _ in ws:
                pass
        return ws.close_code == CloseCode.NORMAL, sent

    async def run_clients(url: str) -> list[tuple[bool, int]]:
        return await asyncio.wait_for(asyncio.gather(*(client(url) for _ in range(sessions))), seconds * 4 + 120)

    with BackgroundServer(app) as server:
        baseline = _rss_mib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.monotonic()
        results = asyncio.run(run_clients(server.ws_url + "/v1/stream"))
        wall = time.monotonic() - start
        stop.set()
        sampler.join()
    metrics = state.metrics
    latencies = np.array(metrics.latencies) * 1000 if metrics.latencies else np.zeros(1)
    processed = int(metrics.total("frames_processed"))
    return {
        "sessions": sessions,
        "sessions_held": sum(held for held, _ in results),
        "seconds": round(wall, 1),
        "fps_per_session": state.fps,
        "frames_sent": sum(n for _, n in results),
        "frames_processed": processed,
        "frames_dropped": int(metrics.total("frames_dropped")),
        "aggregate_fps": round(processed / wall, 1),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "latency_p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "rss_baseline_mib": round(baseline),
        "rss_peak_mib": round(peak[0]),
        "mib_per_session": round((peak[0] - baseline) / sessions, 1),
    }


def format_report(report: dict[str, Any]) -> str:
    return (f"serve load run: {report['sessions_held']}/{report['sessions']} sessions held for {report['seconds']}s "
            f"at {report['fps_per_session']:g} frames/s each; aggregate {report['aggregate_fps']} frames/s "
            f"({report['frames_processed']} processed, {report['frames_dropped']} dropped of {report['frames_sent']} "
            f"sent); per-frame latency p50 {report['latency_p50_ms']} ms, p99 {report['latency_p99_ms']} ms; "
            f"memory {report['rss_baseline_mib']} -> {report['rss_peak_mib']} MiB "
            f"({report['mib_per_session']} MiB per session)")
