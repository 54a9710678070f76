"""Readable text libraries: narration instructions and live-chat question templates.

``{goal}`` in a question is replaced by the task goal; templates with ``{goal}`` are only used
when the video has one.
"""

from __future__ import annotations

NARRATION_INSTRUCTIONS: tuple[str, ...] = (
    "Please concisely narrate the video in real time.",
    "Help me to illustrate my view in short.",
    "Please simply describe what do you see.",
    "Continuously answer what you observed with simple text.",
    "Do concise real-time narration.",
    "Hey assistant, do you know the current video content? Reply me concisely.",
    "Simply interpret the scene for me.",
    "What can you tell me about? Be concise.",
    "Use simple text to explain what is shown in front of me.",
    "What is the action now? Please response in short.",
)
"""User instructions opening a narration stream. The first one is the upstream evaluation prompt."""

QUESTIONS: dict[str, tuple[str, ...]] = {
    "past": (
        "What have I done?",
        "What just happened?",
        "Summarize my activities so far.",
        "What have I done so far to {goal}?",
        "Remind me what I have finished.",
    ),
    "now": (
        "What do you see now?",
        "Describe my action now.",
        "What am I doing right now?",
        "What is happening at the moment?",
        "Which step of {goal} am I on?",
    ),
    "next": (
        "What should I do next?",
        "What should I do next to {goal}?",
        "To {goal}, what are the next actions?",
        "Help me with {goal}.",
        "Can you instruct me what should be done next?",
    ),
}
"""Live-chat user questions by what they ask about (past, now, next)."""


def questions_for(kind: str, goal: str | None) -> list[str]:
    """The templates of ``kind`` usable for ``goal`` (filled in), in library order."""
    out = []
    for template in QUESTIONS[kind]:
        if "{goal}" in template:
            if goal:
                out.append(template.format(goal=goal))
        else:
            out.append(template)
    return out
