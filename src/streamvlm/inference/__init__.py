"""Streaming inference: the engine (token ids), the bounded KV policy, a text wrapper and the
parallel pipeline. Settings live in :mod:`.config` (torch-free); the names below load lazily."""

from __future__ import annotations

from ..lazy import lazy_getattr

_EXPORTS = {
    "Event": "engine", "SessionTrace": "engine", "StreamEngine": "engine", "StreamSession": "engine",
    "GenerationConfig": "config", "StreamOptions": "config", "TimedQuery": "config",
    "KVPolicy": "kv_policy", "RotaryShift": "kv_policy", "SinkWindowPolicy": "kv_policy",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
