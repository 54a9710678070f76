"""Judges: who decides whether free text says what was expected.

Two questions are asked of a judge:

* :meth:`Judge.rate` (ProactiveVideoQA PAUC): how well predicted text covers a gold answer, 1
  (wrong or unrelated), 2 (partly), 3 (covers its key points);
* :meth:`Judge.mentions` (online mode): whether a reply the model made by itself says the expected
  thing (the REC activity, the SSR step, the CRR answer, the proactive output).

Judges: ``rule`` (the synthetic world's grammar and step recipes: exact, for the synthetic
editions), ``text`` (normalised containment; crude, for a quick look at real data), and a chat
model through the generation backends (``transformers`` or ``openai``, as ``streamvlm data
refine`` uses them). Every report names the judge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

RATE_INSTRUCTION = (
    "You rate answers of a video question answering system. Compare the predicted answer with the ground "
    "truth answer and reply with one number: 3 if the prediction covers the key points of the ground truth "
    "(minor wording differences are fine), 2 if it is partly right but misses or gets wrong an important "
    "part, 1 if it is wrong, unrelated or says almost nothing of the ground truth. Reply with the number only.")
MENTION_INSTRUCTION = (
    "You check what a live video assistant said. Reply yes if the assistant's sentence reports the given "
    "event or fact, no otherwise. Reply with yes or no only.")


def normalize(text: str) -> str:
    """Lower case, words only, single spaces."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def read_rating(reply: str) -> int | None:
    """The last stand-alone 1, 2 or 3 of a judge's reply (None when there is none)."""
    found = re.findall(r"(?<![0-9])([123])(?![0-9])", reply)
    return int(found[-1]) if found else None


class Judge:
    """The interface (batched, so a chat model sees many prompts at once)."""

    name = "judge"

    def rate(self, items: Sequence[tuple[str, str, str]]) -> list[int | None]:
        """``[(question, gold answer, predicted text)] -> [1, 2, 3 or None]``."""
        raise NotImplementedError

    def mentions(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        """``[(reply, expected)] -> [whether the reply says it]``."""
        raise NotImplementedError


class TextJudge(Judge):
    """Normalised containment: a reply mentions what it contains; a prediction rates 3 when it
    contains the gold answer, 2 when it shares half its words, else 1."""

    name = "text"

    def rate(self, items: Sequence[tuple[str, str, str]]) -> list[int | None]:
        out: list[int | None] = []
        for _, gold, predicted in items:
            g, p = normalize(gold), normalize(predicted)
            words = set(g.split())
            shared = len(words & set(p.split())) / len(words) if words else 0.0
            out.append(3 if g and g in p else 2 if shared >= 0.5 else 1)
        return out

    def mentions(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        return [bool(normalize(expected)) and normalize(expected) in normalize(reply) for reply, expected in items]


class RuleJudge(TextJudge):
    """The synthetic world's judge: it reads replies with the world's narration grammar
    (:func:`streamvlm.evaluation.live_eval.parse_sentence`) and knows each step's actions.

    A reply mentions an expectation when it contains it (normalised), or when it is a narration of
    the same action: an activity ``"pick up something"`` (the verb), a step (one of the step's
    actions: verb and object kind), a narration (verb and object kind), an object ``"the red cup"``
    (colour and kind). A prediction rates 3 against a gold step when one of its sentences mentions
    it, 2 when one names a verb or an object kind of the step, else 1."""

    name = "rule"

    def mentions(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        return [any(_mentions(s, expected) for s in _sentences(reply)) or _contains(reply, expected)
                for reply, expected in items]

    def rate(self, items: Sequence[tuple[str, str, str]]) -> list[int | None]:
        out: list[int | None] = []
        for _, gold, predicted in items:
            if self.mentions([(predicted, gold)])[0]:
                out.append(3)
                continue
            actions = _step_actions().get(normalize(gold), set())
            verbs, kinds = {v for v, _ in actions}, {k for _, k in actions}
            parsed = [_parse(s) for s in _sentences(predicted)]
            partial = any(p.verb in verbs or (p.object is not None and p.object[1] in kinds) for p in parsed)
            out.append(2 if partial else 1)
        return out


class ChatJudge(Judge):
    """A chat model (:class:`~streamvlm.data.generate.backend.ChatBackend`) asked each question."""

    def __init__(self, backend, name: str) -> None:
        self.backend, self.name = backend, name

    def rate(self, items: Sequence[tuple[str, str, str]]) -> list[int | None]:
        prompts = [[{"role": "system", "content": RATE_INSTRUCTION},
                    {"role": "user", "content": f"Question: {q}\nGround Truth Answer: {g}\nPredicted Answer: {p}"}]
                   for q, g, p in items]
        return [read_rating(r) for r in self.backend.complete(prompts)] if prompts else []

    def mentions(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        prompts = [[{"role": "system", "content": MENTION_INSTRUCTION},
                    {"role": "user", "content": f"Event or fact: {expected}\nAssistant's sentence: {reply}"}]
                   for reply, expected in items]
        replies = self.backend.complete(prompts) if prompts else []
        return [r.strip().lower().startswith("yes") for r in replies]


# ---------------------------------------------------------------------------- the world's rules
def _contains(reply: str, expected: str) -> bool:
    return bool(normalize(expected)) and normalize(expected) in normalize(reply)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _parse(sentence: str):
    from ..evaluation.live_eval import parse_sentence

    return parse_sentence(sentence)


@lru_cache(maxsize=1)
def _step_actions() -> dict[str, frozenset[tuple[str, str]]]:
    """Normalised step description -> its actions ``(verb, object kind)``, over every task recipe."""
    from ..data.synth.vocabulary import TASKS

    out: dict[str, set[tuple[str, str]]] = {}
    for task in TASKS:
        for step in task.steps:
            actions = out.setdefault(normalize(step.description), set())
            for verb, obj, target, tool in step.actions:
                role = obj or tool or target
                actions.add((verb, task.roles[role] if role else "table"))
    return {k: frozenset(v) for k, v in out.items()}


@lru_cache(maxsize=1)
def _activity_verbs() -> dict[str, str]:
    """``"pick up something"`` -> ``"pick"``: the REC activities of the synthetic editions."""
    from ..data.synth.vocabulary import VERBS

    return {normalize(f"{v.label} something"): name for name, v in VERBS.items()}


def _mentions(sentence: str, expected: str) -> bool:
    parsed = _parse(sentence)
    if parsed.verb is None and not parsed.objects:
        return False
    key = normalize(expected)
    if key in _activity_verbs():
        return parsed.verb == _activity_verbs()[key]
    reply_kind = parsed.object[1] if parsed.object else None
    if key in _step_actions():
        return (parsed.verb, reply_kind or "table") in _step_actions()[key]
    wanted = _parse(expected if expected.lower().startswith("you ") else f"You {expected.rstrip('.')}.")
    if wanted.verb is not None:
        wanted_kind = wanted.object[1] if wanted.object else None
        return parsed.verb == wanted.verb and reply_kind == wanted_kind
    return bool(wanted.objects) and wanted.objects[0] in parsed.objects


def make_judge(kind: str, backend=None) -> Judge:
    """``rule``, ``text``, or a chat model (``backend`` built from the judge options)."""
    if kind == "rule":
        return RuleJudge()
    if kind == "text":
        return TextJudge()
    return ChatJudge(backend, f"{kind} ({backend.identity().get('model')})")
