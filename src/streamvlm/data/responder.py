"""What a responder is: something that writes the assistant's words at annotation times.

The live-chat converter (GoalStep / COIN step annotations -> streaming dialogues) asks a
:class:`Responder` for every assistant turn it places; a deterministic rule-based responder
serves the synthetic world and tests, an LLM responder (local transformers model or an
OpenAI-compatible endpoint) serves real data. Requests come in batches so LLM backends can batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

ResponseKind = Literal["past", "now", "next", "update"]


@dataclass(frozen=True)
class Step:
    """One annotated step of a task: ``[start, end]`` seconds of video time and its description."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class ResponseRequest:
    """One assistant turn to write.

    ``time`` is when the assistant speaks; ``question`` is the user question being answered
    (``None`` for a proactive update at a step boundary); ``kind`` says what the question is
    about; ``history`` holds the dialogue so far as ``(role, text)`` pairs.
    """

    video_uid: str
    time: float
    kind: ResponseKind
    steps: tuple[Step, ...]
    goal: str | None = None
    question: str | None = None
    history: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class Responder(Protocol):
    """Writes one reply per request, in order."""

    def respond(self, requests: Sequence[ResponseRequest]) -> list[str]: ...
