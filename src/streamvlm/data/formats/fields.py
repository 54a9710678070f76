"""Strict field access for annotation JSON: each failure is a DataError naming file, record, field."""

from __future__ import annotations

import math
from typing import Any

from ...errors import DataError


class Record:
    """One JSON object of an annotation file, with typed accessors that name it in errors."""

    def __init__(self, data: Any, file: str, record: str | int) -> None:
        self.file, self.record = file, record
        if not isinstance(data, dict):
            self.fail(f"expected an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, message: str, field: str | None = None) -> None:
        raise DataError(message, file=self.file, record=self.record, field=field)

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False, default: Any = None) -> Any:
        if key not in self.data or (optional and self.data[key] is None):
            if optional:
                return default
            self.fail("missing", key)
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.fail(f"expected {names}, got {type(value).__name__} {value!r:.40}", key)
        return value

    def text(self, key: str, *, optional: bool = False) -> str | None:
        return self.get(key, str, optional=optional)

    def seconds(self, key: str, *, optional: bool = False, default: float | None = None) -> float | None:
        """A finite, non-negative number of seconds."""
        value = self.get(key, (int, float), optional=optional, default=default)
        if value is None:
            return None
        if not math.isfinite(value):
            self.fail(f"must be a finite number, got {value}", key)
        if value < 0:
            self.fail(f"must be >= 0, got {value}", key)
        return float(value)

    def span(self, start_key: str, end_key: str) -> tuple[float, float]:
        """Two times in order (end >= start)."""
        start, end = self.seconds(start_key), self.seconds(end_key)
        if end < start:
            self.fail(f"ends before it starts ({end} < {start_key} {start})", end_key)
        return start, end

    def child(self, data: Any, record: str | int) -> Record:
        return Record(data, self.file, f"{self.record}/{record}")

    def items(self, key: str) -> list[Any]:
        return self.get(key, list)
