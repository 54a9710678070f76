"""Ego4D narrations -> sentences the assistant says to the camera wearer.

``"#C C picks up the knife"`` becomes ``"You pick up the knife."``, by an LLM
(:func:`refine_narrations`, the paper's Llama-3-8B-Instruct step) with a deterministic rule-based
rewrite (:func:`rule_refine`) as the fallback when the LLM answers nothing usable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ...errors import DataError
from ..formats import Narration, NarrationVideo
from .backend import ChatBackend, Prompt
from .prompts import PromptTemplate, load_prompt

REFINE_PLACEHOLDERS = {"system": set(), "user": {"narration"}}
MAX_WORDS = 40


def narrations_by_uid(videos: Sequence[NarrationVideo], file: str) -> list[Narration]:
    """Every narration of every pass, in video and pass order; ``annotation_uid`` must be unique
    (the output is keyed by it), else :class:`DataError` naming the file, video/pass and field."""
    out: list[Narration] = []
    seen: dict[str, str] = {}
    for video in videos:
        for pass_name, narrations in video.passes.items():
            record = f"{video.video_uid}/{pass_name}"
            for n in narrations:
                if n.annotation_uid in seen:
                    raise DataError(f"duplicate annotation_uid {n.annotation_uid!r} "
                                    f"(also in {seen[n.annotation_uid]}); "
                                    "every narration needs its own annotation_uid", file=file, record=record,
                                    field="annotation_uid")
                seen[n.annotation_uid] = record
                out.append(n)
    return out


# ---- rule-based rewrite -------------------------------------------------------------------------

_IRREGULAR = {"is": "are", "was": "were", "has": "have", "does": "do", "goes": "go"}
_KEEP_IE = {"ties", "unties", "lies", "dies", "vies"}
_ES_ENDINGS = ("sses", "shes", "ches", "xes", "zzes", "oes")


def base_form(verb: str) -> str:
    """Third-person singular -> base form: picks->pick, washes->wash, carries->carry, goes->go, has->have."""
    low = verb.lower()
    if low in _IRREGULAR:
        base = _IRREGULAR[low]
    elif low.endswith("ss") or not low.endswith("s") or len(low) < 3:
        base = low
    elif low.endswith("ies") and low not in _KEEP_IE and len(low) > 4:
        base = low[:-3] + "y"
    elif low.endswith(_ES_ENDINGS):
        base = low[:-2]
    else:
        base = low[:-1]
    return base.capitalize() if verb[:1].isupper() else base


_TAG_C = re.compile(r"^\s*#c\b\s*(?:c\b\s*)?", re.IGNORECASE)
_UNSURE = re.compile(r"#unsure\b", re.IGNORECASE)
_TAG_O = re.compile(r"#o\b\s*", re.IGNORECASE)
_OTHER_TAGS = re.compile(r"#\w+\s*")
_C_POSSESSIVE = re.compile(r"\bC's\b")
_C_SUBJECT = re.compile(r"\b(and|while|as|then|when) C (\w+)")
_C_WORD = re.compile(r"\bC\b")


def rule_refine(text: str) -> str:
    """Deterministic rewrite of an Ego4D narration into a second-person sentence.

    ``#C C <verb>s ...`` -> ``You <verb> ...`` (also after a leading ``-ly`` adverb), ``C's`` ->
    ``your``, ``and/while C <verb>s`` -> ``and/while you <verb>``, other ``C`` -> ``you``,
    ``#unsure`` -> ``something``, ``#O`` and other tags dropped; capitalized, ends with a period.
    """
    s = _UNSURE.sub("something", text.strip())
    m = _TAG_C.match(s)
    if m:
        words = s[m.end():].split()
        k = 1 if len(words) > 1 and words[0].lower().endswith("ly") else 0
        if words:
            words[k] = base_form(words[k])
        s = " ".join(["You", *[w.lower() if i == 0 else w for i, w in enumerate(words)]])
    s = _TAG_O.sub("", s)
    s = _OTHER_TAGS.sub("", s)
    s = _C_POSSESSIVE.sub("your", s)
    s = _C_SUBJECT.sub(lambda mm: f"{mm[1]} you {base_form(mm[2])}", s)
    s = _C_WORD.sub("you", s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(" ,;:")
    if not s:
        return ""
    s = s[0].upper() + s[1:]
    return s if s[-1] in ".!?" else s + "."


# ---- LLM refinement -----------------------------------------------------------------------------

_LABEL = re.compile(r"^(?:refined|rewritten|output|answer|sentence)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def clean_refinement(reply: str) -> str | None:
    """The first sentence of an LLM reply, unquoted and unlabelled; None when it is unusable
    (empty, still tagged, or longer than ``MAX_WORDS`` words)."""
    line = next((ln.strip() for ln in reply.strip().splitlines() if ln.strip()), "")
    line = _LABEL.sub("", line).strip().strip(_QUOTES).strip()
    line = _SENTENCE_END.split(line, maxsplit=1)[0].strip().strip(_QUOTES).strip()
    if not line or "#" in line or re.match(r"^C\b", line) or len(line.split()) > MAX_WORDS:
        return None
    line = line[0].upper() + line[1:]
    return line if line[-1] in ".!?" else line + "."


def refine_prompt(template: PromptTemplate, narration: str) -> Prompt:
    """The chat prompt that asks for one refined narration."""
    return [{"role": "system", "content": template.render("system")},
            {"role": "user", "content": template.render("user", narration=narration.strip())}]


def refine_narrations(narrations: Sequence[Narration], backend: ChatBackend | None, *,
                      template: PromptTemplate | None = None, progress: bool = True) -> dict[str, str]:
    """``{annotation_uid: refined text}``; each distinct text is asked once. ``backend=None``
    uses :func:`rule_refine` only; otherwise unusable LLM replies fall back to it."""
    if backend is None:
        return {n.annotation_uid: rule_refine(n.text) for n in narrations}
    template = (template or load_prompt("refine_narration")).require(REFINE_PLACEHOLDERS)
    texts = list(dict.fromkeys(n.text for n in narrations))
    replies = backend.complete([refine_prompt(template, t) for t in texts], progress="refine" if progress else None)
    refined = {t: clean_refinement(r) or rule_refine(t) for t, r in zip(texts, replies)}
    return {n.annotation_uid: refined[n.text] for n in narrations}


def refine_file(narration_json: str | Path, out: str | Path, backend: ChatBackend | None, *,
                template: PromptTemplate | None = None, limit: int | None = None, progress: bool = True) -> int:
    """Refine the narrations of an Ego4D ``narration.json`` into ``out`` (``{annotation_uid: text}``,
    written atomically); ``limit`` takes the first N (videos in file order, each pass by time).
    Returns how many were written."""
    import json

    from ...outputs import write_text_atomic
    from ..formats import read_narration

    narrations = narrations_by_uid(read_narration(narration_json), str(narration_json))
    if limit is not None:
        narrations = narrations[:limit]
    refined = refine_narrations(narrations, backend, template=template, progress=progress)
    write_text_atomic(out, json.dumps(refined, ensure_ascii=False, indent=1) + "\n", name="--out")
    return len(refined)
