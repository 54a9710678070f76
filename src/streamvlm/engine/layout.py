"""The token-id pieces of the stream layout, resolved once per model.

The engine works in token ids only; this is where the template strings become ids, exactly as
:class:`~streamvlm.model.conversation.ConversationRenderer` tokenizes them: the text between two special
tokens is tokenized whole (e.g. ``"]\\nUser: {query}\\nAssistant:"``, see
:meth:`~streamvlm.model.conversation.ConversationRenderer.encode_query_prompt`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.vlm import StreamVLM


@dataclass(frozen=True)
class LayoutIds:
    """Ids of every piece the engine feeds. ``after_stream`` pieces close a stream (``]...``),
    ``after_reply`` pieces follow a reply's eos, ``start`` opens the whole session."""

    start: tuple[int, ...]
    """``<bos>`` + ``{system}`` + ``system_close + stream_open`` (``\\n\\n[``), the text tokenized
    whole (Llama-3 merges the prompt's last ``.`` with ``\\n\\n``); without a system prompt ``<bos>``
    + ``stream_open``."""
    stream_open: tuple[int, ...]
    interval_id: int | None
    silence_id: int
    eos_id: int
    frame_id: int
    tokens_per_frame: int
    reply_open_after_stream: tuple[int, ...]
    reply_open_after_user: tuple[int, ...]
    user_open_after_stream: tuple[int, ...]
    user_open_after_reply: tuple[int, ...]
    template: tuple[int, ...] = ()
    """Ids of the layout's pieces that spell brackets, a newline or a role opener (``]``, ``\\n``,
    ``Assistant``...): text no reply holds, banned from replies by ``GenerationConfig.guard``."""

    @classmethod
    def from_model(cls, model: StreamVLM, system_prompt_ids: list[int] | None = None) -> LayoutIds:
        """``system_prompt_ids``: ``None`` takes the template's default system prompt; ``[]`` means
        no system turn."""
        renderer, ids, tpl = model.renderer, model.token_ids, model.config.template
        bos = [ids.bos_id] if ids.bos_id is not None else []
        if system_prompt_ids is None and tpl.system_prompt:  # tokenized whole, as upstream (``.\n\n[``)
            start = bos + renderer.encode(tpl.system_prompt + tpl.system_close + tpl.stream_open)
        elif system_prompt_ids:
            start = bos + list(system_prompt_ids) + renderer.encode(tpl.system_close + tpl.stream_open)
        else:
            start = bos + list(ids.stream_open_ids)
        return cls(
            start=tuple(start),
            stream_open=ids.stream_open_ids,
            interval_id=ids.interval_id,
            silence_id=ids.silence_id,
            eos_id=ids.eos_id,
            frame_id=ids.frame_id,
            tokens_per_frame=model.config.tokens_per_frame,
            reply_open_after_stream=ids.reply_open_ids,
            reply_open_after_user=tuple(renderer.encode(tpl.assistant_open)),
            user_open_after_stream=ids.query_open_ids,
            user_open_after_reply=tuple(renderer.encode(tpl.user_open)),
            template=layout_token_ids(model),
        )


def layout_token_ids(model: StreamVLM) -> tuple[int, ...]:
    """The ids of the stream layout's pieces (``]\\nAssistant:``, ``]\\nUser:``, ``\\n[``) whose
    text holds a bracket, a newline or a role name; punctuation shared with replies (``:``) is kept."""
    tpl, renderer = model.config.template, model.renderer
    roles = [word.strip(" \n:") for word in (tpl.user_open, tpl.assistant_open)]
    marks = ["[", "]", "\n", *[r for r in roles if r]]
    found: set[int] = set()
    for piece in (tpl.stream_close + tpl.assistant_open, tpl.stream_close + tpl.user_open, tpl.stream_open):
        for token in renderer.encode(piece):
            text = model.tokenizer.decode([token])
            if any(mark in text for mark in marks):
                found.add(token)
    return tuple(sorted(found))
