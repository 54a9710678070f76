"""Shared test helpers: tiny models and a word-level tokenizer whose tokens are easy to read."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from streamvlm.config import StreamVLMConfig
from streamvlm.model import StreamVLM
from streamvlm.presets import tiny_config, train_tokenizer

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"

WORDS = ["<s>", "</s>", "<pad>", "\n", "[", "]", ",", ":", " ", ".", "?", "User", "Assistant",
         "cool", "so", "what", "narrate", "You", "pick", "up", "the", "cup", "§", "|"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """One token per word, per punctuation mark, per space and per newline (ids = WORDS order)."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+|\s|[^\w\s]"), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_model(llm: str = "llama", vision: str = "siglip", seed: int = 0, **kwargs) -> StreamVLM:
    import torch

    torch.manual_seed(seed)
    config: StreamVLMConfig = tiny_config(llm, vision, **kwargs)
    return StreamVLM.from_config(config, train_tokenizer()).eval()
