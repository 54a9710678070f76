"""The wire protocol of ``streamvlm serve``, version :data:`PROTOCOL_VERSION` (docs/serve.md).

WebSocket ``/v1/stream``:

* the server speaks first: a :class:`SessionMessage` (session id, the model's fps, the limits);
* the client sends **frames** as binary messages: 8 bytes of capture time (seconds, a big-endian
  IEEE float64) then the image bytes (JPEG, PNG or WebP); and **JSON text messages**:
  :class:`QueryMessage`, :class:`ConfigMessage`, :class:`EndMessage`;
* the server sends :class:`UserMessage`, :class:`AssistantDeltaMessage` (reply text while it is
  decoded), :class:`AssistantMessage` (the final reply), :class:`StatsMessage` every few seconds,
  :class:`ErrorMessage` (a typed error; the stream goes on unless a close follows), and closes
  with one of :class:`CloseCode`.

Every model here is a pydantic model; :func:`json_schema` exports them all.
"""

from __future__ import annotations

import math
import struct
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

PROTOCOL_VERSION = 1
"""Bumped on any change a client could notice."""

FRAME_HEADER = struct.Struct(">d")
"""A binary frame message starts with its capture time: one big-endian float64 (8 bytes)."""


class CloseCode(IntEnum):
    """WebSocket close codes of the server."""

    NORMAL = 1000
    """The client sent ``end`` (after its last events)."""
    POLICY = 1008
    """The client broke the protocol beyond repair: too many errors, or a JSON message nested deeper than
    the parser allows."""
    TOO_BIG = 1009
    """A message larger than ``max_message_bytes``."""
    INTERNAL = 1011
    """The session failed inside the model; other sessions are not affected."""
    SERVICE_RESTART = 1012
    """The replica is stopping (SIGTERM, after ``drain_timeout``; or at once on a second signal or
    Ctrl-C): connect again, and a load balancer sends the new session to another replica."""
    SERVER_FULL = 1013
    """``max_sessions`` streams are running: try again later or another replica."""
    UNAUTHORIZED = 4401
    """Missing or wrong API key."""
    IDLE_TIMEOUT = 4408
    """Nothing received for ``idle_timeout`` seconds."""
    SLOW_READER = 4429
    """The client did not read its messages within ``write_timeout``."""


class ErrorCode:
    """The ``code`` of an :class:`ErrorMessage`."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    BAD_TIME = "bad_time"
    BAD_FRAME = "bad_frame"
    IMAGE_TOO_LARGE = "image_too_large"
    QUERY_TOO_LONG = "query_too_long"
    MESSAGE_TOO_LARGE = "message_too_large"
    IDLE_TIMEOUT = "idle_timeout"
    SLOW_READER = "slow_reader"
    SERVER_FULL = "server_full"
    UNAUTHORIZED = "unauthorized"
    INTERNAL = "internal"
    ENDED = "ended"
    DRAINING = "draining"
    # HTTP answers ({"code", "message"})
    BAD_VIDEO = "bad_video"
    UPLOAD_TOO_LARGE = "upload_too_large"
    UPLOAD_TIMEOUT = "upload_timeout"
    HEADER_TIMEOUT = "header_timeout"
    TOO_MANY_CONNECTIONS = "too_many_connections"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _ClientMessage(_Message):
    """Strict types, as the configuration's: ``"time": "5"`` or ``"drop_frames": "no"`` is refused
    (a number field takes an integer too: ``"time": 5``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


# ------------------------------------------------------------------ client -> server
class QueryMessage(_ClientMessage):
    """Ask ``text`` at video time ``time`` (answered at the first frame at or after it)."""

    type: Literal["query"]
    time: Annotated[float, Field(ge=0)]
    text: Annotated[str, Field(min_length=1)]

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty question")
        return value


class ConfigMessage(_ClientMessage):
    """Change the session's decision threshold (theta) from the next frame on, and/or make it
    lossless (``drop_frames: false``: a full queue makes the server stop reading instead of
    dropping the oldest frame; for files, where every frame counts)."""

    type: Literal["config"]
    threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    drop_frames: bool | None = None


class EndMessage(_ClientMessage):
    """No more frames: the server processes what is queued, sends its events and closes (1000)."""

    type: Literal["end"]


ClientMessage = Annotated[QueryMessage | ConfigMessage | EndMessage, Field(discriminator="type")]
CLIENT_MESSAGE: TypeAdapter = TypeAdapter(ClientMessage)


# ------------------------------------------------------------------ server -> client
class Limits(_Message):
    """The caps of this server, as the session message reports them."""

    max_message_bytes: int
    max_image_pixels: int
    max_query_chars: int
    queue_frames: int
    idle_timeout: float
    write_timeout: float


class SessionMessage(_Message):
    """The server's first message on a stream."""

    type: Literal["session"] = "session"
    version: int = PROTOCOL_VERSION
    id: str
    """Unguessable (128 random bits); valid for this connection only."""
    fps: float
    """Frames per second the model was trained at: send frames at this rate."""
    frame_side: int
    """The long side of the frames the model takes: the server scales every frame to it (with
    ``frame_resize``'s rule); send frames no larger."""
    frame_resize: Literal["streamvlm", "upstream"] | None = None
    """The model's resize rule (``vision.resize``): a client that scales frames to ``frame_side`` by
    it (:class:`streamvlm.video.resize.FrameFit`) sends exactly what the server would have made, and
    the frame is resized once. None (older servers): ``frame_side`` is only an upper bound."""
    threshold: float
    limits: Limits
    note: str | None = None
    """One line about the model to show the user, once (the embedded model's: it knows only the
    synthetic world, and what to use for real footage); None: nothing to say."""


class UserMessage(_Message):
    """A question, at the time it was inserted in the stream."""

    type: Literal["user"] = "user"
    time: float
    text: str


class AssistantDeltaMessage(_Message):
    """Text appended to the reply being decoded (the final :class:`AssistantMessage` follows)."""

    type: Literal["assistant_delta"] = "assistant_delta"
    time: float
    delta: str


class AssistantMessage(_Message):
    """A reply, whole, at the video time it was given."""

    type: Literal["assistant"] = "assistant"
    time: float
    text: str


class StatsMessage(_Message):
    """Counters of the stream so far."""

    type: Literal["stats"] = "stats"
    frames_received: int
    frames_processed: int
    frames_dropped: int
    frames_rejected: int
    fps: float
    """Frames processed per second over the last interval."""
    latency_ms: float
    """Mean time from a frame's arrival to the end of its processing, over the last interval."""
    queue: int
    kv_tokens: int


class ErrorMessage(_Message):
    """Something the client sent was refused (the stream goes on unless the server closes it)."""

    type: Literal["error"] = "error"
    code: str
    message: str


ServerMessage = Annotated[SessionMessage | UserMessage | AssistantDeltaMessage | AssistantMessage | StatsMessage
                          | ErrorMessage, Field(discriminator="type")]
SERVER_MESSAGE: TypeAdapter = TypeAdapter(ServerMessage)


class NarrateLine(_Message):
    """One line of ``POST /v1/narrate``'s answer: exactly a line of ``narrate --output``."""

    time: float
    role: Literal["user", "assistant"]
    text: str


def json_schema() -> dict[str, Any]:
    """The whole protocol as one JSON schema document (``GET /v1/schema``)."""
    return {
        "version": PROTOCOL_VERSION,
        "frame": "binary message: 8-byte big-endian float64 capture time (seconds), then JPEG/PNG/WebP bytes",
        "client": CLIENT_MESSAGE.json_schema(),
        "server": SERVER_MESSAGE.json_schema(),
        "narrate_line": NarrateLine.model_json_schema(),
        "close_codes": {c.name.lower(): int(c) for c in CloseCode},
        "error_codes": sorted(v for k, v in vars(ErrorCode).items() if k.isupper()),
    }


def frame_message(time: float, image: bytes) -> bytes:
    """The binary message of one frame."""
    return FRAME_HEADER.pack(float(time)) + image


def split_frame(data: bytes) -> tuple[float, bytes]:
    """``(time, image bytes)`` of a binary frame message; ValueError when it has no valid time."""
    if len(data) <= FRAME_HEADER.size:
        raise ValueError(f"a frame message is an {FRAME_HEADER.size}-byte time followed by image bytes")
    (time,) = FRAME_HEADER.unpack_from(data)
    if not math.isfinite(time) or time < 0:
        raise ValueError(f"frame time must be a finite number >= 0, got {time}")
    return time, data[FRAME_HEADER.size:]
