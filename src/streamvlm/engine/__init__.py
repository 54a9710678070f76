"""The streaming engine: sessions over one KV cache each (token ids), the batched step, the bounded
KV policy, a text wrapper, the parallel pipeline and the stream defaults. Settings live in
:mod:`.options` (torch-free); the names below load lazily."""

from __future__ import annotations

from ..lazy import lazy_getattr

_EXPORTS = {
    "Event": "session", "SessionTrace": "session", "StreamEngine": "session", "StreamSession": "session",
    "GenerationConfig": "options", "StreamOptions": "options", "TimedQuery": "options",
    "KVPolicy": "kv_policy", "RotaryShift": "kv_policy", "SinkWindowPolicy": "kv_policy",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
