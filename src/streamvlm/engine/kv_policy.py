"""Bounded KV memory for endless streams: attention sink + recent window, positions kept contiguous.

In the spirit of StreamingLLM / StreamingVLM: the first ``sink_tokens`` of the cache (the system
prompt, which attention leans on) are kept forever; past ``sink_tokens + window_tokens`` the oldest
tokens after the sink are evicted in chunks, in place (:class:`~.kv_cache.StreamCache`: the window
moves down over the evicted span; the sink is not touched). The cache stores keys *after* rotary
embedding, so the kept window is re-rotated by ``-evicted`` positions (rotations compose: a key rotated for position
``p`` and then by ``-s`` is the key for ``p - s``); the next tokens then take positions from the new
cache length, and the model sees one contiguous sequence of positions.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..errors import ConfigError, StreamvlmWarning
from .kv_cache import StreamCache

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM

# RoPE variants whose frequencies do not depend on the sequence length: a shift is one rotation.
_SHIFTABLE_ROPE = {"default", "linear", "llama3", "yarn"}


class RotaryShift:
    """Re-rotates cached keys by a position offset, with the rotary frequencies of one model.

    Works for the ``rotate_half`` convention of Llama, Qwen2, Mistral and their kin, including a
    partial rotary dimension (only the first ``2 * len(inv_freq)`` channels rotate). The model's
    ``attention_scaling`` multiplies its cos/sin once when keys are made; a shift is a pure rotation
    and must not apply it again.
    """

    def __init__(self, inv_freq: Tensor) -> None:
        self.inv_freq = inv_freq.detach().to(torch.float64).cpu()

    @classmethod
    def from_model(cls, language_model: nn.Module) -> RotaryShift:
        """Find the rotary embedding module of a (possibly peft-wrapped) causal LM."""
        rotary = next((m for name, m in language_model.named_modules() if name.endswith("rotary_emb")), None)
        if rotary is None or not hasattr(rotary, "inv_freq"):
            raise ConfigError("kv policy: the language model has no rotary embedding (rotary_emb.inv_freq) to shift")
        rope_type = getattr(rotary, "rope_type", "default")
        if rope_type not in _SHIFTABLE_ROPE:
            raise ConfigError(
                f"kv policy: rope type {rope_type!r} changes its frequencies with the sequence length, "
                "so cached keys cannot be re-positioned; use unbounded mode"
            )
        return cls(rotary.inv_freq)

    def shift(self, keys: Tensor, delta: int) -> Tensor:
        """Keys ``[B, H, L, Dh]`` rotated for positions ``p`` -> the same keys for ``p + delta``."""
        angles = delta * self.inv_freq  # [Dr/2], float64 so large offsets stay exact
        rot = 2 * angles.numel()
        cos = torch.cat([angles.cos(), angles.cos()]).to(device=keys.device, dtype=torch.float32)
        sin = torch.cat([angles.sin(), angles.sin()]).to(device=keys.device, dtype=torch.float32)
        k = keys[..., :rot].float()
        half = rot // 2
        rotated_half = torch.cat([-k[..., half:], k[..., :half]], dim=-1)
        out = (k * cos + rotated_half * sin).to(keys.dtype)
        return torch.cat([out, keys[..., rot:]], dim=-1) if rot < keys.shape[-1] else out


class KVPolicy(ABC):
    """Decides which cached tokens to drop before new tokens are appended."""

    max_tokens: int
    """The most tokens the cache may hold at any time (the budget)."""

    @abstractmethod
    def plan(self, length: int, incoming: int) -> tuple[int, int]:
        """For a cache of ``length`` tokens about to receive ``incoming`` more: ``(start, count)``
        of the span to evict (``count == 0``: nothing)."""

    def apply(self, cache: StreamCache, incoming: int, rotary: RotaryShift) -> int:
        """Evict what :meth:`plan` asks from every layer of ``cache``; return how many tokens went."""
        start, count = self.plan(cache.get_seq_length(), incoming)
        if count:
            cache.evict(start, count, rotary.shift)
        return count


@dataclass
class SinkWindowPolicy(KVPolicy):
    """Keep the first ``sink_tokens`` and the most recent tokens, at most ``sink_tokens +
    window_tokens`` in all. Evicts at least ``chunk_tokens`` at a time (default a quarter of the
    window) so that eviction, which copies the cache, happens rarely."""

    sink_tokens: int
    window_tokens: int
    chunk_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.sink_tokens < 0:
            raise ConfigError(f"kv policy: sink_tokens must be >= 0, got {self.sink_tokens}")
        if self.window_tokens <= 0:
            raise ConfigError(f"kv policy: window_tokens must be > 0, got {self.window_tokens}")
        if self.chunk_tokens is None:
            self.chunk_tokens = max(1, self.window_tokens // 4)
        if not 0 < self.chunk_tokens <= self.window_tokens:
            raise ConfigError(
                f"kv policy: chunk_tokens must be in [1, window_tokens={self.window_tokens}], got {self.chunk_tokens}"
            )
        self.max_tokens = self.sink_tokens + self.window_tokens

    def plan(self, length: int, incoming: int) -> tuple[int, int]:
        if length + incoming <= self.max_tokens:
            return self.sink_tokens, 0
        if incoming > self.window_tokens:
            raise ConfigError(
                f"kv policy: {incoming} tokens arrive at once but the window holds {self.window_tokens}; "
                "raise window_tokens"
            )
        count = max(length + incoming - self.max_tokens, self.chunk_tokens)
        return self.sink_tokens, min(count, length - self.sink_tokens)


MIN_WINDOW = 128
"""The smallest recent window a budget may leave after the sink (tokens): room for a frame, a
reply and a query prompt at once."""
SINK_FRAMES = 8
"""Frames of the stream's beginning kept in the sink with the session start. A model trained on
clips attends to its first frames the way LLMs attend to their first tokens (StreamingLLM's
attention sinks): with the session start alone as sink, the embedded model fell silent or garbled
after the first eviction (10-minute stream, budget 1024: 28% of narrations answered, 53% of
replies well-formed); with 4 or 8 first frames kept it answered 65-72%, 96-98% well-formed, as
unbounded did (70%, 97%). See docs/long-streams.md."""


def lm_context(model: StreamVLM) -> int | None:
    """The language model's context (``max_position_embeddings``), or None when it has none."""
    from ..model.language_model import text_config

    context = getattr(text_config(model.language_model), "max_position_embeddings", None)
    return int(context) if context else None


def stream_policy(model: StreamVLM, kv_budget: int | None) -> SinkWindowPolicy | None:
    """The KV policy of a stream over ``model``: ``kv_budget`` tokens in all (None: the model's
    ``stream_kv_budget``, else its context; 0: unbounded). The sink (never evicted) is the session
    start of the model's own stream layout (:class:`~.layout.LayoutIds`) and the stream's first
    :data:`SINK_FRAMES` frames (fewer when the budget is tight); the rest is the most recent
    window. Warns when a budget exceeds the model's context; refuses one that leaves less than
    :data:`MIN_WINDOW` tokens after the session start."""
    from .layout import LayoutIds

    context = lm_context(model)
    budget = kv_budget if kv_budget is not None else (model.config.stream_kv_budget or context or 0)
    if not budget:
        return None
    start_tokens = len(LayoutIds.from_model(model).start)
    if context is not None and budget > context:
        warnings.warn(f"--kv-budget {budget} exceeds the model's context of {context} positions: positions past "
                      "it were never trained", StreamvlmWarning, stacklevel=2)
    spare = budget - start_tokens - MIN_WINDOW
    if spare < 0:
        raise ConfigError(f"--kv-budget {budget}: the session start takes {start_tokens} tokens, which leaves "
                          f"{budget - start_tokens} for the recent window; use at least {start_tokens + MIN_WINDOW}")
    frame_tokens = model.config.tokens_per_frame + (1 if model.config.interval_token else 0)
    sink = start_tokens + min(SINK_FRAMES, spare // frame_tokens) * frame_tokens
    return SinkWindowPolicy(sink_tokens=sink, window_tokens=budget - sink)
