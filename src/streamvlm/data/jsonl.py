"""The conversation JSONL format (version 1; see ``docs/data-format.md``).

One object per line::

    {"version": 1, "id": "...", "video": "relative/path.mp4", "fps": 2.0, "start": 0.0,
     "conversation": [turn dicts], "meta": {...}}

Frame ``i`` of the conversation (counting over all stream turns in order) is the video at time
``start + i / fps``. ``video`` is relative to a data root and must not escape it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ConversationError, DataError
from ..jsonfiles import iter_jsonl
from ..model.conversation import Turn, turns_from_dicts
from ..outputs import AtomicFile

FORMAT_VERSION = 1
FIELDS = ("version", "id", "video", "fps", "start", "conversation", "meta")


@dataclass
class ConversationRecord:
    """One line of a conversation JSONL file."""

    id: str
    video: str
    fps: float
    start: float
    conversation: list[Turn]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return sum(t.num_frames for t in self.conversation if t.role == "stream")

    def frame_range(self) -> tuple[int, int]:
        """``[first, stop)`` frame indices of the video sampled at ``fps`` (frame n at n / fps)."""
        first = round(self.start * self.fps)
        return first, first + self.num_frames

    def to_dict(self) -> dict[str, Any]:
        out = {"version": FORMAT_VERSION, "id": self.id, "video": self.video, "fps": self.fps, "start": self.start,
               "conversation": [t.to_dict() for t in self.conversation]}
        if self.meta:
            out["meta"] = self.meta
        return out


def check_video_path(video: str, root: str | Path | None = None) -> Path | None:
    """Reject absolute paths, ``..`` parts and (with a root) symlinks resolving outside the root.

    Returns the resolved path under ``root`` (None without a root). Raises ValueError.
    """
    pure = PurePosixPath(video.replace("\\", "/"))
    if not video or pure.is_absolute() or Path(video).is_absolute() or (video[1:2] == ":"):
        raise ValueError(f"must be a path relative to the data root, got {video!r}")
    if ".." in pure.parts:
        raise ValueError(f"must not contain '..', got {video!r}")
    if root is None:
        return None
    root_resolved = Path(root).resolve()
    resolved = (root_resolved / pure).resolve()
    if not resolved.is_relative_to(root_resolved):
        raise ValueError(f"{video!r} resolves outside the data root (symlink?)")
    return resolved


def parse_record(obj: Any, file: str, line: int) -> ConversationRecord:
    """Validate one decoded JSONL object; raise DataError naming file, line and field."""
    def fail(message: str, fld: str | None = None) -> None:
        raise DataError(message, file=file, record=f"line {line}", field=fld)

    if not isinstance(obj, dict):
        fail(f"expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        fail("unknown field", unknown[0])
    for key in ("version", "id", "video", "fps", "conversation"):
        if key not in obj:
            fail("missing", key)
    if obj["version"] != FORMAT_VERSION or isinstance(obj["version"], bool):
        fail(f"unsupported version {obj['version']!r} (this reader knows version {FORMAT_VERSION})", "version")
    if not isinstance(obj["id"], str) or not obj["id"]:
        fail("must be a non-empty string", "id")
    if not isinstance(obj["video"], str):
        fail(f"must be a string, got {type(obj['video']).__name__}", "video")
    try:
        check_video_path(obj["video"])
    except ValueError as exc:
        fail(str(exc), "video")
    for key, default in (("fps", None), ("start", 0.0)):
        value = obj.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(f"must be a finite number, got {value!r}", key)
    if obj["fps"] <= 0:
        fail(f"must be > 0, got {obj['fps']}", "fps")
    if obj.get("start", 0.0) < 0:
        fail(f"must be >= 0, got {obj['start']}", "start")
    if not isinstance(obj["conversation"], list):
        fail("must be a list of turns", "conversation")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        fail("must be an object", "meta")
    try:
        turns = turns_from_dicts(obj["conversation"])
    except ConversationError as exc:
        fail(str(exc), "conversation")
    return ConversationRecord(obj["id"], obj["video"], float(obj["fps"]), float(obj.get("start", 0.0)), turns, meta)


def read_jsonl(path: str | Path) -> list[ConversationRecord]:
    """Read and validate every line of a conversation JSONL file."""
    return [parse_record(obj, str(path), number) for number, obj in iter_jsonl(path)]


def write_jsonl(records: Iterable[ConversationRecord], path: str | Path) -> int:
    """Write records (one compact JSON object per line, UTF-8) atomically; return how many."""
    count = 0
    with AtomicFile(path) as out:
        for record in records:
            out.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            count += 1
        out.commit()
    return count
