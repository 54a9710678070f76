"""A local Hugging Face causal LM as a chat backend: batched greedy generation with left padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .backend import ChatBackend, Prompt

_DTYPES = ("auto", "float32", "bfloat16", "float16")
_PLAIN_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_plain(prompt: Prompt) -> str:
    """``System: ...\\nUser: ...\\nAssistant:`` for tokenizers without a chat template."""
    lines = [f"{_PLAIN_LABELS[m['role']]}: {m['content']}" for m in prompt]
    return "\n".join(lines) + "\nAssistant:"


class TransformersBackend(ChatBackend):
    """``AutoModelForCausalLM`` + ``AutoTokenizer`` loaded from a name or folder.

    Prompts are rendered with the tokenizer's chat template when it has one, else with
    :func:`render_plain`; batches of ``batch_size`` prompts (sorted by length to save padding) are
    left-padded and decoded greedily for at most ``max_new_tokens`` tokens.
    """

    def __init__(self, model_name_or_path: str, *, max_new_tokens: int = 64, batch_size: int = 8,
                 device: str | None = None, dtype: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ...device import resolve_device

        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        self.model_name_or_path = model_name_or_path
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.device = str(resolve_device(device or "auto"))
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=torch_dtype).to(self.device).eval()
        self.uses_chat_template = bool(getattr(self.tokenizer, "chat_template", None))

    def identity(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.model_name_or_path,
                "max_new_tokens": self.max_new_tokens, "decoding": "greedy"}

    def render(self, prompt: Prompt) -> str:
        """The text fed to the model for one prompt (ends where the assistant's reply begins)."""
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return render_plain(prompt)

    def generate_ids(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Greedy continuation token ids per prompt (one left-padded batch), without the EOS/pad tail."""
        import torch

        texts = [self.render(p) for p in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                             add_special_tokens=not self.uses_chat_template).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        stops = {self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, *self._config_eos_ids()}
        result = []
        for ids in new:
            cut = next((k for k, t in enumerate(ids) if t in stops), len(ids))
            result.append(ids[:cut])
        return result

    def _config_eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        return [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))

    def decode(self, ids: list[int]) -> str:
        """Reply text from generated ids; a plain-rendered reply ends where the next speaker label starts."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if not self.uses_chat_template:
            for label in _PLAIN_LABELS.values():
                text = text.split(f"\n{label}:")[0]
        return text.strip()

    def iter_complete(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, str]]:
        order = sorted(range(len(prompts)), key=lambda i: len(self.render(prompts[i])))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            for i, ids in zip(chunk, self.generate_ids([prompts[i] for i in chunk])):
                yield i, self.decode(ids)
