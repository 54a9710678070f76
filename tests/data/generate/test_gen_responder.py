"""LLMResponder: prompts carry steps, time, goal, question and history; replies are cleaned."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from streamvlm.data.generate import ChatBackend, LLMResponder, Prompt, PromptTemplate
from streamvlm.data.responder import ResponseRequest, Step
from streamvlm.data.rule_responder import RuleResponder
from streamvlm.errors import ConfigError

STEPS = (Step(0.0, 135.9, "Slice tomatoes"), Step(136.7, 149.4, "Add pepper"))


class Echo(ChatBackend):
    """Replies with a fixed list, in order; records the prompts it got."""

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.prompts = replies, []
        self.batch_size = 4

    def identity(self):
        return {"backend": "echo"}

    def iter_complete(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, str]]:
        self.prompts.extend(prompts)
        yield from enumerate(self.replies[: len(prompts)])


def test_prompts_hold_the_request_and_replies_are_cleaned():
    requests = [
        ResponseRequest("v", 6.3, "now", STEPS, "make a salad", "What am I doing right now?"),
        ResponseRequest("v", 135.9, "update", STEPS, None, None,
                        (("user", "What am I doing right now?"), ("assistant", "You slice tomatoes."))),
        ResponseRequest("v", 140.0, "next", STEPS, "make a salad", "What should I do next?"),
    ]
    backend = Echo(['Assistant: "You are slicing tomatoes."', "  You finished slicing.\nNow add pepper. ", "  "])
    replies = LLMResponder(backend, progress=False).respond(requests)
    assert replies[:2] == ["You are slicing tomatoes.", "You finished slicing. Now add pepper."]
    assert replies[2] == RuleResponder().answer(requests[2])  # empty LLM reply -> rule-based answer
    system, user = backend.prompts[0]
    assert system["role"] == "system" and user["role"] == "user"
    for text in ("Task goal: make a salad", "0.0s - 135.9s: Slice tomatoes", "136.7s - 149.4s: Add pepper",
                 "Current time: 6.3s", '"What am I doing right now?"', "doing right now", "Dialogue so far:\n(none)"):
        assert text in user["content"]
    update = backend.prompts[1][1]["content"]
    assert "User: What am I doing right now?\nAssistant: You slice tomatoes." in update
    assert "proactive update" in update and "Task goal: complete the task" in update
    assert "what to do next to make a salad" in backend.prompts[2][1]["content"]


def test_custom_template_placeholders_are_checked():
    bad = PromptTemplate.parse("### system\nhi\n### user\n{steps} {weather}\n"
                               "### past\n.\n### now\n.\n### next\n.\n### update\n.", "my.txt")
    with pytest.raises(ConfigError, match=r"my\.txt: section 'user' uses unknown placeholders \['weather'\]"):
        LLMResponder(Echo([]), bad)
    with pytest.raises(ConfigError, match="missing section '### past'"):
        LLMResponder(Echo([]), PromptTemplate.parse("### system\n\n### user\n{steps}", "x.txt"))
