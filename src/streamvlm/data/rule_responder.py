"""A deterministic responder that answers from the annotated steps (no model).

* past: the steps finished by ``time`` (``end <= time``);
* now: the step under way (``start <= time < end``);
* next: the first step starting after ``time`` (after the current one), or "The task is complete.";
* update (at a step boundary): "You finished X. Next, Y." (or "... The task is complete.").
"""

from __future__ import annotations

from collections.abc import Sequence

from .responder import ResponseRequest, Step

TIME_EPS = 1e-6


def phrase(text: str) -> str:
    """A step description as a clause: trimmed, no final period, first letter lower-cased unless
    the first word is an acronym (``"Slice tomatoes."`` -> ``"slice tomatoes"``)."""
    text = " ".join(text.split()).rstrip(".")
    first = text.split(" ", 1)[0]
    if len(first) > 1 and first.isupper():
        return text
    return text[:1].lower() + text[1:]


def _finished(steps: Sequence[Step], time: float) -> list[Step]:
    return [s for s in steps if s.end <= time + TIME_EPS]


def _current(steps: Sequence[Step], time: float) -> Step | None:
    return next((s for s in steps if s.start <= time + TIME_EPS < s.end), None)


def _upcoming(steps: Sequence[Step], time: float) -> Step | None:
    current = _current(steps, time)
    after = current.start if current is not None else time
    return next((s for s in sorted(steps, key=lambda s: s.start) if s.start > after + TIME_EPS and s is not current),
                None)


def _next_sentence(step: Step | None) -> str:
    return f"Next, {phrase(step.text)}." if step is not None else "The task is complete."


class RuleResponder:
    """Writes correct, templated answers from ``request.steps``; ignores the history."""

    def respond(self, requests: Sequence[ResponseRequest]) -> list[str]:
        return [self.answer(r) for r in requests]

    def answer(self, request: ResponseRequest) -> str:
        steps, time = sorted(request.steps, key=lambda s: s.start), request.time
        if request.kind == "past":
            done = _finished(steps, time)
            if not done:
                return "You have not finished any step yet."
            return "So far you have done: " + "; ".join(phrase(s.text) for s in done) + "."
        if request.kind == "now":
            current = _current(steps, time)
            return f"You are doing: {phrase(current.text)}." if current else "No step is under way right now."
        if request.kind == "next":
            return _next_sentence(_upcoming(steps, time))
        if request.kind == "update":
            done = _finished(steps, time)
            if not done:
                return _next_sentence(_upcoming(steps, time))
            return f"You finished {phrase(done[-1].text)}. " + _next_sentence(_upcoming(steps, time))
        raise ValueError(f"unknown request kind {request.kind!r}")
