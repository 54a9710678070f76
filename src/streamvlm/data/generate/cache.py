"""A resumable reply cache around any chat backend.

The cache is a JSONL file, one ``{"key": sha256, "reply": str}`` line per finished prompt, where
the key hashes the backend's :meth:`~ChatBackend.identity` (kind, model, generation parameters)
together with the messages. Lines are appended and flushed the moment a reply arrives, so an
interrupted run keeps every reply it got and a rerun only asks for the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from ...errors import DataError
from ...jsonfiles import loads
from .backend import ChatBackend, Prompt


def cache_key(identity: dict[str, Any], prompt: Prompt) -> str:
    """Hex sha256 of the canonical JSON of (backend identity, messages)."""
    blob = json.dumps({"backend": identity, "messages": [dict(m) for m in prompt]},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def load_cache(path: Path) -> dict[str, str]:
    """Replies by key from a cache file; a torn last line (interrupted write) is ignored."""
    if not path.exists():
        return {}
    entries: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").split("\n")
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = loads(line, file=str(path), record=f"line {n}")
        except DataError:
            if n == len(lines):  # the last line, not newline-terminated: a write cut short
                continue
            raise DataError("not a JSON object; delete the cache file to start over", file=str(path),
                            record=f"line {n}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not isinstance(obj.get("reply"), str):
            raise DataError('expected {"key": str, "reply": str}', file=str(path), record=f"line {n}")
        entries[obj["key"]] = obj["reply"]
    return entries


class CachedBackend(ChatBackend):
    """Answers from ``path`` when it can, asks ``backend`` otherwise and appends what it gets."""

    def __init__(self, backend: ChatBackend, path: str | Path) -> None:
        self.backend = backend
        self.path = Path(path)
        self.batch_size = backend.batch_size
        self.entries = load_cache(self.path)
        self.hits = 0
        self.misses = 0

    def identity(self) -> dict[str, Any]:
        return self.backend.identity()

    def _open_for_append(self) -> TextIO:
        """Open for appending; a torn last line (a write cut short) is cut off first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("r+b") as f:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.seek(0)
                    f.truncate(f.read().rfind(b"\n") + 1)
        return self.path.open("a", encoding="utf-8")

    def iter_complete(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, str]]:
        identity = self.identity()
        keys = [cache_key(identity, p) for p in prompts]
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key in self.entries:
                self.hits += 1
                yield i, self.entries[key]
            else:
                todo.setdefault(key, []).append(i)
        if not todo:
            return
        firsts = [indices[0] for indices in todo.values()]
        with self._open_for_append() as handle:
            for j, reply in self.backend.iter_complete([prompts[i] for i in firsts]):
                key = keys[firsts[j]]
                handle.write(json.dumps({"key": key, "reply": reply}, ensure_ascii=False) + "\n")
                handle.flush()
                self.entries[key] = reply
                self.misses += 1
                for i in todo[key]:
                    yield i, reply
