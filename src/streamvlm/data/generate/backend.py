"""The chat-backend interface: a batch of chat prompts in, one reply per prompt out.

A prompt is a list of :data:`Message` dicts ``{"role": "system"|"user"|"assistant", "content": str}``.
Backends yield ``(index, reply)`` pairs as replies arrive (in any order) so that a cache can save
each reply the moment it exists; :meth:`ChatBackend.complete` collects them in order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, TypedDict

from tqdm.auto import tqdm

from ...errors import UserError

ROLES = ("system", "user", "assistant")


class Message(TypedDict):
    """One chat message."""

    role: str
    content: str


Prompt = list[Message]


class BackendError(UserError):
    """A generation backend cannot be reached, refuses the request, or answers nonsense."""


def check_prompt(prompt: Sequence[Message], index: int) -> None:
    """Raise ``ValueError`` unless ``prompt`` is a non-empty list of well-formed messages."""
    if not prompt:
        raise ValueError(f"prompt {index} has no messages")
    for j, msg in enumerate(prompt):
        if msg.get("role") not in ROLES or not isinstance(msg.get("content"), str):
            raise ValueError(f"prompt {index} message {j} must be {{'role': one of {ROLES}, 'content': str}}, "
                             f"got {msg!r}")


class ChatBackend(ABC):
    """Something that writes one assistant reply per chat prompt (greedy / temperature 0)."""

    #: how many prompts the backend wants at once (a GPU batch, or in-flight HTTP requests)
    batch_size: int = 1

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything besides the messages that determines a reply (backend kind, model, generation
        parameters); the cache key is built from it."""

    @abstractmethod
    def iter_complete(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, str]]:
        """Yield ``(index into prompts, reply)`` once per prompt, in any order, as replies arrive."""

    def complete(self, prompts: Sequence[Prompt], *, progress: str | None = None) -> list[str]:
        """One reply per prompt, in order; ``progress`` names a tqdm bar over prompts (None: no bar)."""
        for i, prompt in enumerate(prompts):
            check_prompt(prompt, i)
        replies: list[str | None] = [None] * len(prompts)
        with tqdm(total=len(prompts), desc=progress, unit="prompt", disable=progress is None) as bar:
            for i, text in self.iter_complete(prompts):
                replies[i] = text
                bar.update(1)
        missing = [i for i, r in enumerate(replies) if r is None]
        if missing:
            raise BackendError(f"backend {self.identity().get('backend')} returned no reply for prompts {missing[:5]}")
        return replies  # type: ignore[return-value]
