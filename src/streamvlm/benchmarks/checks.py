"""Checking annotation entries field by field: a bad value is one :class:`~streamvlm.errors.DataError`
naming the file, the entry and the field (``questions.json: record entry 3 (id 17), field
'test_info[1].realtime': must be a number >= 0, got 'soon'``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import DataError
from ..jsonfiles import read_json


@dataclass(frozen=True)
class Where:
    """The file and the entry a value comes from, and the path of the field inside the entry."""

    file: str
    record: str
    prefix: str = ""

    def at(self, name: str | int) -> Where:
        """The field ``name`` (a key, or an index of a list) inside this one."""
        if isinstance(name, int):
            return Where(self.file, self.record, f"{self.prefix}[{name}]")
        return Where(self.file, self.record, f"{self.prefix}.{name}" if self.prefix else name)

    def error(self, message: str) -> DataError:
        return DataError(message, file=self.file, record=self.record, field=self.prefix or None)


def read_list(path: str, what: str) -> list[Any]:
    """A JSON file whose top level is a list (``what`` names its items in the error)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"expected a JSON list of {what}, got {type(data).__name__}", file=str(path))
    if not data:
        raise DataError(f"no {what} in the file", file=str(path))
    return data


def entry(value: Any, where: Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(f"expected an object, got {_show(value)}")
    return value


def field(data: dict[str, Any], name: str, where: Where) -> tuple[Any, Where]:
    """The value of a required key and where it is."""
    at = where.at(name)
    if name not in data:
        raise at.error("missing")
    return data[name], at


def text(data: dict[str, Any], name: str, where: Where, *, empty: bool = False) -> str:
    value, at = field(data, name, where)
    return string(value, at, empty=empty)


def string(value: Any, at: Where, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise at.error(f"must be {'a' if empty else 'a non-empty'} string, got {_show(value)}")
    return value


def number(value: Any, at: Where, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise at.error(f"must be a number >= {minimum:g}, got {_show(value)}")
    return float(value)


def integer(value: Any, at: Where, *, minimum: int = 0, maximum: int | None = None) -> int:
    bad = isinstance(value, bool) or not isinstance(value, int) or value < minimum
    if bad or (maximum is not None and value > maximum):
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise at.error(f"must be an integer >= {minimum}{bound}, got {_show(value)}")
    return value


def items(data: dict[str, Any], name: str, where: Where, *, minimum: int = 1) -> list[tuple[Any, Where]]:
    """The items of a required list (at least ``minimum``), each with where it is."""
    value, at = field(data, name, where)
    if not isinstance(value, list) or len(value) < minimum:
        raise at.error(f"must be a list of at least {minimum} item{'s' * (minimum != 1)}, got {_show(value)}")
    return [(item, at.at(i)) for i, item in enumerate(value)]


def span(value: Any, at: Where) -> tuple[float, float]:
    """``[start, end]`` seconds with ``0 <= start <= end``."""
    if not isinstance(value, list) or len(value) != 2:
        raise at.error(f"must be [start, end] in seconds, got {_show(value)}")
    start, end = number(value[0], at.at(0)), number(value[1], at.at(1))
    if end < start:
        raise at.error(f"ends before it starts ({start:g} > {end:g})")
    return start, end


def clock(value: Any, at: Where) -> float:
    """``"HH:MM:SS"`` (or ``"MM:SS"``, ``"SS"``) -> seconds, as StreamingBench writes its times."""
    parts = value.split(":") if isinstance(value, str) else []
    if not parts or len(parts) > 3 or not all(p.strip().isdigit() for p in parts):
        raise at.error(f"must be a time like '00:03:10', got {_show(value)}")
    return float(sum(int(p) * 60 ** i for i, p in enumerate(reversed(parts))))


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
