"""Model presets built from configs alone (no download): tiny models for tests and CPU work, the
shapes of the released 8B-v1+ model for speed benchmarks, and a byte-level BPE tokenizer trained
on the fly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from .config import StreamVLMConfig, VisionConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

_DEFAULT_CORPUS = (
    "You pick up the red cup. You put the blue box on the table. What have I done? "
    "What do you see now? What should I do next? You open the drawer, then you close it. "
    "A multimodal AI assistant is helping users with some activities. Below is their conversation, "
    "interleaved with the list of video frames received by the assistant. User: Assistant: [ ] , . ? ! "
    "0 1 2 3 4 5 6 7 8 9"
)


def train_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2/Llama-3 style pre-tokenizer) with ``<s>``, ``</s>``, ``<pad>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(corpus) if corpus is not None else [_DEFAULT_CORPUS] * 4
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def tiny_llm_config(kind: str = "llama", vocab_size: int = 512, hidden: int = 64, layers: int = 2,
                    heads: int = 4, kv_heads: int = 2, max_positions: int = 4096) -> dict[str, Any]:
    """A small causal-LM config dict for ``kind`` in llama, qwen2, mistral, qwen3, gemma."""
    common = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_positions,
        tie_word_embeddings=False,
    )
    if kind in ("llama", "mistral", "qwen3", "gemma"):
        return {"model_type": kind, **common, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}
    if kind == "qwen2":
        return {"model_type": "qwen2", **common, "eos_token_id": 1, "pad_token_id": 2, "use_sliding_window": False}
    raise ValueError(f"unknown tiny LM kind {kind!r}")


def tiny_tower_config(kind: str = "siglip", hidden: int = 32, image_size: int = 32, patch_size: int = 8,
                      layers: int = 1, heads: int = 2) -> dict[str, Any]:
    """A small image-tower config dict for ``kind`` in siglip, siglip2, clip."""
    common = dict(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                  num_attention_heads=heads, patch_size=patch_size)
    if kind == "siglip":
        return {"model_type": "siglip_vision_model", **common, "image_size": image_size}
    if kind == "clip":
        return {"model_type": "clip_vision_model", **common, "image_size": image_size, "projection_dim": hidden}
    if kind == "siglip2":
        return {"model_type": "siglip2_vision_model", **common, "num_patches": (image_size // patch_size) ** 2}
    raise ValueError(f"unknown tiny tower kind {kind!r}")


def tiny_config(llm: str = "llama", vision: str = "siglip", *, use_pooled: bool = True, pool_size: int = 3,
                interval_token: str = ",", vocab_size: int = 512, **llm_kwargs: Any) -> StreamVLMConfig:
    """A tiny random StreamVLM config: 2-layer LM, 1-layer 32x32 image tower."""
    return StreamVLMConfig(
        llm_config=tiny_llm_config(llm, vocab_size=vocab_size, **llm_kwargs),
        vision=VisionConfig(tower_config=tiny_tower_config(vision), use_pooled=use_pooled, pool_size=pool_size),
        interval_token=interval_token,
    )


def llama3_8b_config() -> dict[str, Any]:
    """Meta-Llama-3-8B-Instruct's architecture (random weights)."""
    return dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                bos_token_id=128000, eos_token_id=128009, tie_word_embeddings=False)


def siglip_large_384_config() -> dict[str, Any]:
    """google/siglip-large-patch16-384's vision tower architecture (random weights)."""
    return dict(model_type="siglip_vision_model", hidden_size=1024, intermediate_size=4096,
                num_hidden_layers=24, num_attention_heads=16, image_size=384, patch_size=16)


def videollm_online_8b_config() -> StreamVLMConfig:
    """The 8B-v1+ architecture: Llama-3-8B + SigLIP-L/16-384, live1+ tokens, for speed figures."""
    return StreamVLMConfig(
        llm_config=llama3_8b_config(),
        vision=VisionConfig(tower_config=siglip_large_384_config(), use_pooled=True, pool_size=3),
    )


MODEL_PRESETS: dict[str, Callable[[], StreamVLMConfig]] = {
    "tiny": tiny_config,
    "tiny-qwen2": lambda: tiny_config("qwen2"),
    "videollm-online-8b": videollm_online_8b_config,
}
"""Named model configs a training config can start from (``model.preset``)."""

PresetName = Literal[tuple(MODEL_PRESETS)]  # type: ignore[valid-type]
"""One of the names of :data:`MODEL_PRESETS`."""
