"""Tokenizer setup: the frame placeholder token and the ids the stream layout needs.

The frame placeholder (``<v>``) is added to the tokenizer as a special token **without**
resizing the LM's embedding table, as the released VideoLLM-online checkpoint expects: its id is
usually ``len(tokenizer) - 1`` (past the table); ids are clamped before lookup and placeholder
positions are overwritten by frame embeddings (see :mod:`streamvlm.model.vlm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .config import StreamVLMConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class StreamTokenIds:
    """Token ids of the stream layout, resolved once per tokenizer.

    ``silence_id`` is the label of a frame decision that stays silent: the interval token, or
    the end-of-sequence token when frames have no interval token (live1). ``reply_open_ids`` are
    the tokens that close a stream and open a reply (upstream ``]\\nAssistant:``); the first of
    them is the label of a frame decision that speaks.
    """

    frame_id: int
    interval_id: int | None
    silence_id: int
    eos_id: int
    bos_id: int | None
    pad_id: int
    reply_open_ids: tuple[int, ...]
    query_open_ids: tuple[int, ...]
    stream_open_ids: tuple[int, ...]

    @property
    def speak_id(self) -> int:
        return self.reply_open_ids[0]


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` alone, without special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def add_frame_token(tokenizer: PreTrainedTokenizerBase, config: StreamVLMConfig) -> StreamTokenIds:
    """Add the frame placeholder (if missing), set pad = eos when no pad, and resolve all ids.

    Raises ConfigError when the tokenizer has no eos token, or when the interval token is not a
    single token of the vocabulary.
    """
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"tokenizer {tokenizer.name_or_path!r} has no eos token; set one before use")
    if config.frame_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [config.frame_token]})
    frame_id = tokenizer.convert_tokens_to_ids(config.frame_token)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    interval_id: int | None = None
    if config.interval_token:
        ids = encode_text(tokenizer, config.interval_token)
        if len(ids) != 1:
            raise ConfigError(
                f"interval_token {config.interval_token!r} is not a single token of tokenizer "
                f"{tokenizer.name_or_path!r} (it encodes to {ids}); choose a token in its vocabulary"
            )
        interval_id = ids[0]
    template = config.template
    reply_open = encode_text(tokenizer, template.stream_close + template.assistant_open)
    query_open = encode_text(tokenizer, template.stream_close + template.user_open)
    stream_open = encode_text(tokenizer, template.stream_open)
    if not reply_open:
        raise ConfigError("template: stream_close + assistant_open must not be empty")
    if interval_id is not None and reply_open[0] == interval_id:
        raise ConfigError("template: the reply must not open with the interval token")
    return StreamTokenIds(
        frame_id=frame_id,
        interval_id=interval_id,
        silence_id=interval_id if interval_id is not None else tokenizer.eos_token_id,
        eos_id=tokenizer.eos_token_id,
        bos_id=tokenizer.bos_token_id,
        pad_id=tokenizer.pad_token_id,
        reply_open_ids=tuple(reply_open),
        query_open_ids=tuple(query_open),
        stream_open_ids=tuple(stream_open),
    )
