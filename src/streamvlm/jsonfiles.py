"""Reading JSON and JSON-lines files that a user hands in, safely.

Every JSON or JSONL file streamvlm reads (configs, annotations, conversations, requests, model
metadata) goes through :func:`loads`, :func:`read_json` or :func:`iter_jsonl`. They refuse, with
one error naming the file and line, what would otherwise escape as a traceback or a silent bad
value: bytes that are not UTF-8, invalid JSON, nesting deeper than :data:`MAX_DEPTH`, numbers that
overflow to infinity (``1e999``), ``NaN`` / ``Infinity`` literals, and integers of more than
:data:`MAX_INT_DIGITS` digits. The error class is the caller's (a
:class:`~streamvlm.errors.DataError` for data, a :class:`~streamvlm.errors.ConfigError` for
configs), so the CLI prints it on one line with exit code 2.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .errors import DataError, UserError

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (real configs and annotations use under 10)."""
MAX_INT_DIGITS = 32
"""Longest integer literal accepted (enough for any id, size or count)."""


class _Refused(ValueError):
    """A JSON value refused by the safe parser (its message says why)."""


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:20]} is out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer of {len(text)} digits is too large")
    return int(text)


def _parse_constant(name: str) -> float:
    raise _Refused(f"{name} is not a JSON number")


_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|NaN|-?Infinity|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?')


def _position(text: str) -> str:
    """``line L column C`` of the first refused value of ``text`` (strings skipped)."""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token.startswith('"'):
            continue
        refused = token in ("NaN", "Infinity", "-Infinity") or len(token.lstrip("-")) > MAX_INT_DIGITS \
            or not math.isfinite(float(token))
        if refused:
            line = text.count("\n", 0, match.start()) + 1
            column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
            return f"line {line} column {column}"
    return "an unknown position"


def _depth(value: Any) -> int:
    """Nesting depth of a decoded value (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in node)
    return deepest


def loads(text: str | bytes, *, file: str, record: str | None = None,
          error: type[UserError] = DataError) -> Any:
    """Decode one JSON document; refusals raise ``error`` naming ``file`` (and ``record``)."""
    where = f"{file}: {record}" if record else file

    def fail(message: str) -> UserError:
        if error is DataError:
            return DataError(message, file=file, record=record)
        return error(f"{where}: {message}")

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fail(f"not valid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(text, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise fail(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except _Refused as exc:
        raise fail(f"refused JSON at {_position(text)}: {exc}") from None
    except RecursionError:
        raise fail(f"refused JSON: nested more than {MAX_DEPTH} levels deep") from None
    if _depth(value) > MAX_DEPTH:
        raise fail(f"refused JSON: nested more than {MAX_DEPTH} levels deep")
    return value


def read_json(path: str | Path, *, error: type[UserError] = DataError) -> Any:
    """Read and decode a whole JSON file (see :func:`loads`); an unreadable file is ``error`` too."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        message = f"cannot read: {exc.strerror or exc}"
        raise (DataError(message, file=str(path)) if error is DataError else error(f"{path}: {message}")) from None
    return loads(raw, file=str(path), error=error)


def iter_jsonl(path: str | Path, *, error: type[UserError] = DataError) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, decoded value)`` for each non-blank line of a JSON-lines file."""
    file = str(path)
    with ExitStack() as stack:  # the file stays open only while the caller iterates
        try:
            handle = stack.enter_context(open(path, "rb"))
        except OSError as exc:
            message = f"cannot read: {exc.strerror or exc}"
            raise (DataError(message, file=file) if error is DataError else error(f"{file}: {message}")) from None
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, loads(raw, file=file, record=f"line {number}", error=error)
