"""Language-model wrappers whose outputs a test controls (the real LM still fills the cache)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LogitBias(nn.Module):
    """Adds a fixed ``[V]`` bias to every logit of the wrapped causal LM."""

    def __init__(self, lm: nn.Module, bias: Tensor) -> None:
        super().__init__()
        self.lm = lm
        self.register_buffer("bias", bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def forward(self, **kwargs):
        out = self.lm(**kwargs)
        out.logits = out.logits + self.bias.to(out.logits.dtype)
        return out


class FixedDistribution(LogitBias):
    """Every position predicts the same distribution ``probs [V]``."""

    def __init__(self, lm: nn.Module, probs: Tensor) -> None:
        super().__init__(lm, probs.clamp_min(1e-12).log())

    def forward(self, **kwargs):
        out = self.lm(**kwargs)
        out.logits = self.bias.to(out.logits.dtype).expand_as(out.logits).clone()
        return out


def bias_tokens(model, **token_bias: float) -> None:
    """Wrap ``model.language_model`` with a bias on named ids of ``model.token_ids`` (e.g.
    ``interval_id=4.0, eos_id=3.0``)."""
    bias = torch.zeros(model.vocab_size)
    for name, value in token_bias.items():
        bias[getattr(model.token_ids, name)] = value
    model.language_model = LogitBias(model.language_model, bias)
