"""Attention for streaming: SDPA that never copies grouped K/V heads.

Llama-3, Qwen2 and the embedded model use grouped-query attention (``H`` query heads share
``H_kv`` key/value heads). transformers' ``sdpa`` path expands the cached keys and values to ``H``
heads (``repeat_kv``: a copy of the whole cache, per layer, per forward) whenever an attention mask
is passed on CPU or CUDA, which is every batched step over sessions of different lengths. On CPU
(and when no mask is passed on CUDA) ``torch.nn.functional.scaled_dot_product_attention`` attends
over the shared heads directly (``enable_gqa=True``), with the same result: the expansion was
measured at 40-59% of a frame's cost on CPU at long caches.

:data:`STREAM_ATTENTION` (``"streamvlm_sdpa"``) is that function registered with transformers'
attention interface; :func:`use_stream_attention` switches a language model to it (and back to
``sdpa`` when saving, so saved configs stay plain). On CUDA with a mask it delegates to
transformers' own ``sdpa`` path, whose fused kernels need expanded heads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

STREAM_ATTENTION = "streamvlm_sdpa"


def stream_sdpa_forward(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                        dropout: float = 0.0, scaling: float | None = None, is_causal: bool | None = None,
                        **kwargs) -> tuple[Tensor, None]:
    """``query [B, H, Lq, Dh]``, ``key/value [B, H_kv, Lk, Dh]``, an additive or boolean ``mask
    [B, 1, Lq, Lk]`` or None -> ``([B, Lq, H, Dh], None)``, as transformers' ``sdpa`` returns."""
    groups = getattr(module, "num_key_value_groups", 1)
    direct = (groups > 1 and key.shape[-1] == value.shape[-1] and kwargs.get("position_bias") is None
              and kwargs.get("softcap") is None and (query.device.type == "cpu" or attention_mask is None))
    if not direct:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    q_length = query.shape[2]
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = bool(q_length > 1 and attention_mask is None and is_causal)
    if is_causal and key.shape[2] > q_length:  # causal without a mask means an empty cache: same slice as sdpa
        key, value = key[:, :, :q_length], value[:, :, :q_length]
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, is_causal=is_causal,
                                                           enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(STREAM_ATTENTION, stream_sdpa_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(STREAM_ATTENTION, sdpa_mask)


def use_stream_attention(language_model: nn.Module) -> bool:
    """Switch a (possibly peft-wrapped) transformers LM that uses ``sdpa`` to :data:`STREAM_ATTENTION`;
    returns whether it was switched (eager, flash and flex models are left as they are)."""
    config = getattr(language_model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    language_model.set_attn_implementation(STREAM_ATTENTION)
    return True


__all__ = ["STREAM_ATTENTION", "stream_sdpa_forward", "use_stream_attention"]
