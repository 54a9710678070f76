"""The caps and timeouts of ``streamvlm serve`` (torch- and FastAPI-free: the CLI reads them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..settings import settings


@settings
class ServeLimits:
    """Caps and timeouts of every session (each one is reported to clients in the session message)."""

    max_sessions: Annotated[int, Field(ge=1, le=10_000)] = 8
    """Most live streams at once; one more is refused with close code 1013 and /readyz reports not ready."""
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
    idle_timeout: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """Seconds without any message from a client before its stream is closed (close code 4408)."""
    write_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """Seconds a client may take to read one message (or its backlog may grow) before it is dropped (4429)."""
    stats_interval: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """Seconds between the stats messages of a stream."""
