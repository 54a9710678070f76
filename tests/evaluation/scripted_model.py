"""A StreamVLM stand-in whose output distributions are scripted, for hand-worked metric tests.

Frames are identified by their features: frame ``n`` of a conversation is given as
``frame_tokens[n] = n`` (shape ``[N, T, 1]``), so the decision after a frame depends on which
frame it is, whether it is seen in the full forward or fed after a turn. Text positions are
scripted by absolute position. Unscripted decisions stay silent with P(interval) = 0.99;
unscripted text positions are uniform. A real :class:`~transformers.DynamicCache` is kept (with
dummy tensors) so that cache cropping is exercised for real.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from transformers import DynamicCache

from streamvlm.model.config import StreamVLMConfig, TemplateConfig
from streamvlm.model.conversation import ConversationRenderer
from streamvlm.model.presets import tiny_config
from streamvlm.model.vlm import StreamVLMOutput

from ..helpers import word_tokenizer


class ScriptedModel(nn.Module):
    def __init__(self, template: TemplateConfig | None = None, interval_token: str = ",") -> None:
        super().__init__()
        self.config: StreamVLMConfig = tiny_config(pool_size=1, use_pooled=True, interval_token=interval_token)
        if template is not None:
            self.config.template = template
        self.tokenizer = word_tokenizer()
        self.renderer = ConversationRenderer(self.tokenizer, self.config)
        self.token_ids = self.renderer.ids
        self.vocab = len(self.tokenizer)
        self.decisions: dict[int, dict[int, float]] = {}
        """frame index -> {token id: probability} at the frame's decision."""
        self.text: dict[int, dict[int, float]] = {}
        """absolute position -> {token id: probability}."""
        self.calls: list[tuple[int, list[int]]] = []
        """(first absolute position, input ids) of every forward."""

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def decide(self, frame: int, p_interval: float, p_speak: float | None = None) -> None:
        """Script frame ``frame``'s decision: P(interval), and P(speak token) (default: the rest)."""
        rest = 1.0 - p_interval if p_speak is None else p_speak
        self.decisions[frame] = {self.token_ids.silence_id: p_interval, self.token_ids.speak_id: rest}

    def _row(self, probs: dict[int, float]) -> Tensor:
        row = torch.full((self.vocab,), (1.0 - sum(probs.values())) / (self.vocab - len(probs)))
        for token, p in probs.items():
            row[token] = p
        return row.clamp(min=1e-12).log()

    def forward(self, input_ids: Tensor, frame_tokens: Tensor | None = None, cache=None,
                use_cache: bool = False, **_) -> StreamVLMOutput:
        cache = cache if cache is not None else DynamicCache()
        start = cache.get_seq_length()
        ids = input_ids[0].tolist()
        self.calls.append((start, ids))
        k = self.config.tokens_per_frame
        rows, seen = [], 0
        for i, token in enumerate(ids):
            if token == self.token_ids.frame_id:
                seen += 1
                if seen % k == 0:
                    frame = int(frame_tokens[seen // k - 1, 0, 0])
                    rows.append(self._row(self.decisions.get(frame, {self.token_ids.silence_id: 0.99})))
                    continue
            rows.append(self._row(self.text.get(start + i, {})))
        dummy = torch.zeros(1, 1, len(ids), 1)
        cache.update(dummy, dummy, 0)
        return StreamVLMOutput(logits=torch.stack(rows)[None], cache=cache if use_cache else None)


def frame_ids(n: int, tokens_per_frame: int) -> Tensor:
    """Frame features ``[n, T, 1]`` whose value is the frame index."""
    return torch.arange(n, dtype=torch.float)[:, None, None].expand(n, tokens_per_frame, 1).clone()


def nll(*probs: float) -> float:
    return -sum(math.log(p) for p in probs) / len(probs)
