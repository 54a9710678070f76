"""Stream defaults, resolved once: what a stream over a model runs with when the options leave it out.

:func:`resolve_stream` turns ``(model, options)`` into a :class:`StreamSetup`: the fps (the
model's own unless one is given), the KV policy (the budget given, else the model's own; its sink
taken from the model's own stream layout, :func:`~.kv_policy.stream_policy`) and the decision
settings (theta; the reply cap is the engine's, :class:`~.session.StreamEngine`). Every front end
starts here: ``narrate``, ``demo``, ``eval-live``, ``bench``, ``benchmark`` and the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .options import GenerationConfig, StreamOptions

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM
    from .assistant import LiveAssistant
    from .kv_policy import KVPolicy
    from .session import StreamEngine


@dataclass(frozen=True)
class StreamSetup:
    """Everything a stream over ``model`` needs, every default resolved."""

    model: StreamVLM
    fps: float
    """Frames per second sampled from a source (the model's own unless set)."""
    generation: GenerationConfig
    """How decisions are taken and replies decoded."""
    kv_policy: KVPolicy | None
    """The bounded KV cache's policy (None: unbounded); shared by every session of this setup."""
    realtime: bool = False
    """Pace sources by the wall clock."""

    def engine(self) -> StreamEngine:
        """An engine over the model with these settings (sessions: ``engine().new_session()``)."""
        from .session import StreamEngine

        return StreamEngine(self.model, self.generation, self.kv_policy)

    def assistant(self) -> LiveAssistant:
        """A fresh text-level assistant (one session) with these settings."""
        from .assistant import LiveAssistant

        return LiveAssistant(self.model, self.generation, self.kv_policy)


def resolve_stream(model: StreamVLM, stream: StreamOptions | None = None,
                   generation: GenerationConfig | None = None) -> StreamSetup:
    """The :class:`StreamSetup` of ``model`` with ``stream`` (fps, KV budget, realtime) and
    ``generation``; what they leave out is the model's own (fps, KV budget) or the defaults
    (:class:`~.options.GenerationConfig`). Raises :class:`~streamvlm.errors.ConfigError` for a KV
    budget the model's stream layout cannot fit."""
    from .kv_policy import stream_policy

    stream = stream or StreamOptions()
    fps = float(stream.fps if stream.fps is not None else model.config.frame_fps)
    return StreamSetup(model, fps, generation or GenerationConfig(), stream_policy(model, stream.kv_budget),
                       stream.realtime)


__all__ = ["StreamSetup", "resolve_stream"]
