"""Streaming inference: the engine (token ids), the bounded KV policy, a text wrapper and the
parallel pipeline. Settings live in :mod:`.config` (torch-free); the names below load lazily."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Event": "engine", "SessionTrace": "engine", "StreamEngine": "engine", "StreamSession": "engine",
    "GenerationConfig": "config", "StreamOptions": "config", "TimedQuery": "config",
    "KVPolicy": "kv_policy", "RotaryShift": "kv_policy", "SinkWindowPolicy": "kv_policy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
