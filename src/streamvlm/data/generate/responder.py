"""An LLM that writes the assistant's live-chat turns from timed step annotations
(the paper's "prompt an LLM to simulate the assistant's responses at the annotation timestamps")."""

from __future__ import annotations

from collections.abc import Sequence

from ..responder import ResponseRequest
from ..rule_responder import RuleResponder
from .backend import ChatBackend, Prompt
from .prompts import PromptTemplate, load_prompt

_KIND_FIELDS = {"goal", "time", "question"}
RESPONSE_PLACEHOLDERS = {"system": set(), "user": {"goal", "steps", "history", "time", "instruction"},
                         "past": _KIND_FIELDS, "now": _KIND_FIELDS, "next": _KIND_FIELDS, "update": _KIND_FIELDS}
DEFAULT_GOAL = "complete the task"
_QUOTES = "\"'`“”‘’"


def response_prompt(template: PromptTemplate, request: ResponseRequest) -> Prompt:
    """The chat prompt for one request. A request without a question uses the ``update`` section."""
    goal = request.goal or DEFAULT_GOAL
    fields = {"goal": goal, "time": f"{request.time:.1f}", "question": request.question or ""}
    instruction = template.render(request.kind if request.question is not None else "update", **fields)
    steps = "\n".join(f"{s.start:.1f}s - {s.end:.1f}s: {s.text}" for s in request.steps) or "(none)"
    history = "\n".join(f"{role.capitalize()}: {text}" for role, text in request.history) or "(none)"
    user = template.render("user", goal=goal, steps=steps, history=history, time=fields["time"],
                           instruction=instruction)
    return [{"role": "system", "content": template.render("system")}, {"role": "user", "content": user}]


def clean_reply(reply: str) -> str:
    """The reply without a leading ``Assistant:`` label or surrounding quotes, on one line."""
    text = " ".join(reply.split())
    if text.lower().startswith("assistant:"):
        text = text[len("assistant:"):].strip()
    return text.strip(_QUOTES).strip()


class LLMResponder:
    """A :class:`~streamvlm.data.responder.Responder` backed by a :class:`ChatBackend`; an empty
    LLM reply is replaced by the :class:`~streamvlm.data.rule_responder.RuleResponder`'s."""

    def __init__(self, backend: ChatBackend, prompt: PromptTemplate | None = None, *, progress: bool = True) -> None:
        self.backend = backend
        self.template = (prompt or load_prompt("livechat_response")).require(RESPONSE_PLACEHOLDERS)
        self.progress = progress

    def respond(self, requests: Sequence[ResponseRequest]) -> list[str]:
        prompts = [response_prompt(self.template, r) for r in requests]
        replies = self.backend.complete(prompts, progress="respond" if self.progress else None)
        rule = RuleResponder()
        return [clean_reply(text) or rule.answer(r) for text, r in zip(replies, requests)]
