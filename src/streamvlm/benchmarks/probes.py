"""What the three benchmarks have in common: a :class:`Probe` is one question put to the model at
one time of one video, with what the benchmark expects; its score comes from the benchmark's own
rule (:mod:`.ovobench`, :mod:`.streamingbench`, :mod:`.proactivevideoqa`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["choice", "count", "yesno", "proactive", "replies"]
"""``choice``: multiple choice (the truth is a letter); ``count``: a number (OVO-Bench REC);
``yesno``: Yes or No (OVO-Bench SSR, CRR; the truth is 1 for Yes); ``proactive``: a reply due at a
time (StreamingBench); ``replies``: every reply over a span, judged (ProactiveVideoQA PAUC)."""

LETTERS = "ABCDEFGHIJ"
COUNTS = tuple(str(n) for n in range(11))
"""Counts a model may pick in ``--answer options`` (0 to 10, as StreamingVLM's OVO-Bench harness)."""
YES_NO = ("No", "Yes")


@dataclass(frozen=True)
class Probe:
    """One question at one time of one video, and what its benchmark expects."""

    key: str
    """Unique in its annotation file (what a resumed run skips)."""
    task: str
    """The benchmark's task name (``EPM``, ``Action Recognition``, the subset of ProactiveVideoQA)."""
    video: str
    """The video, as the annotation file names it (relative to ``--videos``)."""
    time: float
    """When the question is answered, in seconds of the video."""
    question: str
    """The question as a user asks it (``--prompt plain``)."""
    prompt: str
    """The question as the benchmark's own harness words it (``--prompt benchmark``)."""
    kind: Kind
    options: tuple[str, ...] = ()
    """The options' texts (``choice``), in letter order."""
    truth: Any = None
    """The expected answer: a letter (``choice``), a count, 1 / 0 for Yes / No, a proactive
    expectation (``{"time", "output"}``) or the judged answer turns (``replies``)."""
    start: float = 0.0
    """Offline: the first second of video shown with the question."""
    asked: float | None = None
    """Online: when the question is asked; None: never asked, scored from what the model says by
    itself (OVO-Bench REC and SSR)."""
    target: str | None = None
    """Online: what a spontaneous reply must say to count (the REC activity, the SSR step, the
    CRR answer, the proactive output)."""
    stream: str = ""
    """Online: the probes of one stream share it (a video; a ProactiveVideoQA conversation)."""
    extra: tuple[tuple[float, str], ...] = ()
    """Further user turns ``(time, text)`` of a ProactiveVideoQA conversation."""
    context: str = ""
    """Offline StreamingBench sequential QA: the earlier questions and answers, in the prompt."""

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(LETTERS[: len(self.options)])

    def candidates(self, form: str) -> tuple[str, ...]:
        """What ``--answer options`` chooses among: the options' ``text`` or ``letter`` (choice),
        the counts 0-10, No / Yes; () where nothing is chosen (proactive, replies)."""
        if self.kind == "choice":
            return self.letters if form == "letter" else self.options
        if self.kind == "count":
            return COUNTS
        if self.kind == "yesno":
            return YES_NO
        return ()

    def pick(self, index: int) -> str:
        """The response recorded when candidate ``index`` wins: a letter, a count, No / Yes."""
        if self.kind == "choice":
            return LETTERS[index]
        return self.candidates("text")[index]

    @property
    def chance(self) -> float | None:
        """The expected score of a uniform guess among the candidates (None: not defined)."""
        if self.kind == "choice":
            return 1.0 / len(self.options)
        if self.kind == "count":
            return 1.0 / len(COUNTS)
        if self.kind == "yesno":
            return 0.5
        return None
