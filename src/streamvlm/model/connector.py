"""Connector: maps frame tokens from the vision width to the LM width (MLP, fully trained)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Connector(nn.Sequential):
    """``Linear(vision, llm) -> GELU -> Linear(llm, llm)``: ``[..., D_vision] -> [..., D_llm]``.

    A ``Sequential`` so that parameter names are ``0.weight``/``2.weight``, as in the released
    VideoLLM-online checkpoint (``connector.0``/``connector.2``).
    """

    def __init__(self, vision_hidden_size: int, llm_hidden_size: int, *, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__(
            nn.Linear(vision_hidden_size, llm_hidden_size, dtype=dtype, device=device),
            nn.GELU(),
            nn.Linear(llm_hidden_size, llm_hidden_size, dtype=dtype, device=device),
        )
        self.vision_hidden_size = vision_hidden_size
        self.llm_hidden_size = llm_hidden_size

    def forward(self, frame_tokens: Tensor) -> Tensor:
        return super().forward(frame_tokens)
