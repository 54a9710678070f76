"""Streaming inference: the engine (token ids), the bounded KV policy, and a text wrapper."""

from .engine import Event, GenerationConfig, SessionTrace, StreamEngine, StreamSession
from .kv_policy import KVPolicy, RotaryShift, SinkWindowPolicy

__all__ = ["Event", "GenerationConfig", "KVPolicy", "RotaryShift", "SessionTrace", "SinkWindowPolicy",
           "StreamEngine", "StreamSession"]
