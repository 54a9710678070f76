"""The caps, timeouts and access rule of ``streamvlm serve``, stated once (torch- and FastAPI-free:
the CLI, the app and the docs table all read them from here)."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Annotated

from pydantic import Field

from ..errors import UserError
from ..settings import settings


@settings
class ServeLimits:
    """Caps and timeouts of every session (each one is reported to clients in the session message)."""

    max_sessions: Annotated[int, Field(ge=1, le=10_000)] = 8
    """Most live streams and uploads at once; one more is refused and /readyz reports not ready."""
    max_connections: Annotated[int, Field(ge=2, le=1_000_000)] = 1000
    """Most open connections (HTTP and WebSocket, handshakes included); more are answered 503 and closed."""
    header_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """Seconds a connection may take to send a request's headers in full (then HTTP 408 and closed)."""
    queue_frames: Annotated[int, Field(ge=1, le=1024)] = 8
    """Frames waiting per session; a frame arriving on a full queue drops the oldest (counted)."""
    max_message_bytes: Annotated[int, Field(ge=1024, le=256 * 2**20)] = 8 * 2**20
    """Largest WebSocket message (a frame's bytes included); larger closes the stream with 1009."""
    max_image_pixels: Annotated[int, Field(ge=64, le=100_000_000)] = 3840 * 2160
    """Largest frame, in pixels, read from the image header before it is decoded."""
    max_query_chars: Annotated[int, Field(ge=1, le=100_000)] = 2000
    """Longest question, in characters."""
    max_upload_bytes: Annotated[int, Field(ge=1024, le=2**40)] = 512 * 2**20
    """Largest video uploaded to POST /v1/narrate."""
    body_timeout: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    """Seconds an upload's body may take to arrive in full."""
    idle_timeout: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """Seconds without any message from a client before its stream is closed (close code 4408)."""
    write_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """Seconds a client may take to read one message (or its backlog may grow) before it is dropped (4429)."""
    stats_interval: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """Seconds between the stats messages of a stream."""
    drain_timeout: Annotated[float, Field(ge=0, le=86_400)] = 30.0
    """Seconds the open streams get to finish after SIGTERM before they are closed (close 1012); no new
    stream is taken from the signal on (docs/serve.md, Scale-out)."""


MAX_PENDING_QUERIES = 64
"""Questions waiting for a frame at or after their time, per stream (an upload's included)."""
QUESTIONS_PER_FRAME = 1
"""Questions a stream gets answered at one frame; more due at one frame wait for its next frames
(at its last frame, all are answered), so that one stream's questions hold the worker (and every
other stream's frames) no longer than one reply per frame. Two questions due at one frame still
give exactly narrate's events: the second is answered before the next frame."""
MAX_ERRORS = 64
"""Errors a stream may cause before it is closed with 1008."""
MAX_BACKLOG = 1024
"""Messages waiting for a client; more means it does not read: dropped as a slow reader."""
MIN_KEY_CHARS = 16
"""Shortest API key accepted at start."""

SEEN_WHEN_HIT: dict[str, str] = {
    "max_sessions": "WebSocket: `server_full`, close 1013; POST /v1/narrate: HTTP 503 `server_full` before any "
                    "of the body is read; `/readyz` 503",
    "max_connections": "HTTP 503, then the connection is closed (WebSocket handshakes too)",
    "header_timeout": "HTTP 408, then the connection is closed",
    "queue_frames": "live streams: the oldest waiting frame is dropped (`stats.frames_dropped`); "
                    "`drop_frames: false` and uploads: the server reads no more until there is room",
    "max_message_bytes": "`message_too_large`, close 1009",
    "max_image_pixels": "`image_too_large` for that frame (the stream goes on); uploads: HTTP 400 `bad_video`",
    "max_query_chars": "`query_too_long` (the stream goes on); POST /v1/narrate: HTTP 422 `query_too_long`",
    "max_upload_bytes": "HTTP 413 `upload_too_large`",
    "body_timeout": "HTTP 408 `upload_timeout`",
    "idle_timeout": "`idle_timeout`, close 4408",
    "write_timeout": "close 4429 (`slow_reader` in `/metrics`)",
    "stats_interval": "(not a limit) a `stats` message at this interval",
    "drain_timeout": "after SIGTERM: `/readyz` 503 and new streams refused (`draining`, close 1012) at once; "
                     "streams still open at the timeout: `draining`, close 1012; then the process exits 0",
    "MAX_PENDING_QUERIES": "`bad_message` (that question is not queued); POST /v1/narrate: HTTP 422 `bad_message`",
    "QUESTIONS_PER_FRAME": "the further questions due at that frame are asked at the next frames (after a "
                           "stream's last frame, as many per step, each answered after that frame)",
    "MAX_ERRORS": "close 1008",
    "MAX_BACKLOG": "close 4429",
    "MIN_KEY_CHARS": "`streamvlm serve` refuses to start (exit 2)",
}
"""What a client sees when each limit (a :class:`ServeLimits` field or a constant here) is hit."""

CONSTANT_LIMITS = {
    "MAX_PENDING_QUERIES": "Most questions waiting for their frame, per stream or upload",
    "QUESTIONS_PER_FRAME": "Most questions answered at one frame of a stream",
    "MAX_ERRORS": "Most errors one stream may cause",
    "MAX_BACKLOG": "Most messages waiting for a client that does not read",
    "MIN_KEY_CHARS": "Fewest characters of the API key (`--api-key-env`; printable ASCII, no spaces)",
}
"""The limits above that are constants, not flags: what each one bounds (a row of the table)."""


def _shown(name: str, value: object) -> str:
    if name.endswith("_bytes") and isinstance(value, int) and value % 2**20 == 0:
        return f"{value // 2**20} MiB"
    if name.endswith(("_timeout", "_interval")):
        return f"{value:g} s"
    if name == "max_image_pixels":
        return f"{value:,} (3840x2160)" if value == 3840 * 2160 else f"{value:,}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def limits_table() -> str:
    """The Limits table of docs/serve.md (markdown): every limit, its flag, its default and what a
    client sees when it is hit, from :class:`ServeLimits` and the constants above."""
    rows = ["| limit | flag | default | a client that hits it sees |", "|---|---|---|---|"]
    defaults = ServeLimits()
    for f in dataclasses.fields(ServeLimits):
        doc = ServeLimits.__pydantic_fields__[f.name].description or ""
        what = doc.split(";")[0].split(" (")[0].rstrip(".")
        rows.append(f"| {what} | `--{f.name.replace('_', '-')}` | {_shown(f.name, getattr(defaults, f.name))} "
                    f"| {SEEN_WHEN_HIT[f.name]} |")
    for name, what in CONSTANT_LIMITS.items():
        rows.append(f"| {what} | (fixed) | {_shown(name, globals()[name])} | {SEEN_WHEN_HIT[name]} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------- who may connect
def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(host: str, api_key: str | None, *, where: str = "--api-key-env") -> None:
    """The one access rule: listening beyond this machine needs an API key, and a key (wherever it
    is used) has at least :data:`MIN_KEY_CHARS` printable ASCII characters and no spaces.
    :class:`UserError` naming ``where`` otherwise."""
    if api_key is None:
        if not is_loopback(host):
            raise UserError(f"--host {host}: listening beyond this machine needs an API key (--api-key-env NAME)")
        return
    if not api_key.strip():
        problem = "it is empty or blank"
    elif not all("!" <= c <= "~" for c in api_key):
        problem = "it holds spaces or characters outside printable ASCII"
    elif len(api_key) < MIN_KEY_CHARS:
        problem = f"it has {len(api_key)}"
    else:
        return
    raise UserError(f"{where}: an API key needs at least {MIN_KEY_CHARS} characters of printable ASCII without "
                    f"spaces; {problem}")
