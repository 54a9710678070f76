"""The streaming metrics of VideoLLM-online as pure functions of per-turn model outputs.

Nothing here runs a model: :mod:`streamvlm.evaluation.stream_eval` extracts, per evaluated turn,
the frame-decision scores (:class:`FrameScore`), the reply's token losses and greedy
correctness, and these functions turn them into the paper's numbers (see ``docs/evaluation.md``):

* ``frame diff`` (TimeDiff in frames): ``k > 0`` when the model responds ``k`` frames before the
  gold frame, ``0`` on time, ``-(i + 1)`` when it first responds at the ``i``-th frame fed after
  the turn (the gold reply removed), ``-n`` when it stays silent over all ``n`` frames fed;
* Fluency: the share of the turn's learned tokens (frame decisions + reply tokens) the model
  gets causally right;
* LM-PPL and LM-correctness of the reply under teacher forcing.

Aggregation follows the upstream evaluation: each metric is averaged over a conversation's turns,
then over conversations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..model.decision import FrameScore, responds


def first_response(scores: Sequence[FrameScore], threshold: float) -> int | None:
    """Index of the first frame after which the model speaks, or None if it never does."""
    for i, score in enumerate(scores):
        if responds(score, threshold):
            return i
    return None


def in_turn_diff(scores: Sequence[FrameScore], threshold: float) -> int | None:
    """Frame diff when the model responds within the turn: the gold frame is the turn's last
    learned decision, so responding at decision ``i`` gives ``len(scores) - 1 - i`` (0 = on
    time). None when it stays silent over the whole turn (see :func:`late_diff`)."""
    first = first_response(scores, threshold)
    return None if first is None else len(scores) - 1 - first


def frames_to_feed(turn_frames: int, next_turn_frames: int | None) -> int:
    """How many following frames to feed when the model stayed silent over its turn:
    ``min(next turn's frames, this turn's frames - 1)``; 0 on the last turn (``None``)."""
    if next_turn_frames is None:
        return 0
    return max(0, min(next_turn_frames, turn_frames - 1))


def late_diff(following: Sequence[FrameScore], threshold: float) -> int:
    """Frame diff of a turn the model stayed silent over, from its decisions on the frames fed
    after it (gold reply removed): ``-(i + 1)`` at the first response ``i``, else ``-len``
    (0 when nothing could be fed, e.g. on the last turn)."""
    first = first_response(following, threshold)
    return -len(following) if first is None else -(first + 1)


def correct_prefix(correct: Sequence[bool]) -> int:
    """Number of reply tokens predicted right (greedy, teacher-forced) before the first mistake."""
    for i, ok in enumerate(correct):
        if not ok:
            return i
    return len(correct)


def perplexity(token_losses: Sequence[float]) -> float:
    """``exp(mean cross-entropy)`` over a reply's tokens (natural log)."""
    if not token_losses:
        raise ValueError("perplexity of an empty reply")
    return math.exp(sum(token_losses) / len(token_losses))


def fluency_parts(num_decisions: int, num_reply_tokens: int, num_correct: int, frame_diff: int) -> tuple[int, int]:
    """Fluency numerator and denominator of one turn.

    Denominator: learned frame decisions + reply tokens. Numerator: on time (diff 0), all
    decisions + the reply tokens right before the first mistake; early by ``k``, the ``k`` last
    decisions are lost (``num_decisions - k``); late, only the gold frame's decision is wrong
    (``num_decisions - 1``) and the reply counts for nothing.
    """
    denominator = num_decisions + num_reply_tokens
    if frame_diff == 0:
        numerator = num_decisions + num_correct
    elif frame_diff > 0:
        numerator = num_decisions - frame_diff
    else:
        numerator = num_decisions - 1
    return numerator, denominator


@dataclass
class TurnRecord:
    """The measurements of one assistant turn of an evaluation conversation.

    LM fields are None when the reply is not learned; timing fields are None when the turn has no
    learned gold response frame (a reply prompted by a user query, or unlearned frames).
    """

    turn: int
    """Index of the assistant turn in the conversation."""
    fps: float
    reply_tokens: int = 0
    lm_loss: float | None = None
    """Mean cross-entropy over the reply tokens."""
    correct_tokens: int | None = None
    decisions: int = 0
    """Learned frame decisions scanned for this turn."""
    frame_diff: int | None = None
    frames_fed: int = 0
    """Following frames fed after the turn (the model stayed silent over it)."""

    @property
    def lm_ppl(self) -> float | None:
        return None if self.lm_loss is None else math.exp(self.lm_loss)

    @property
    def lm_correctness(self) -> float | None:
        return None if self.correct_tokens is None else self.correct_tokens / self.reply_tokens

    @property
    def time_diff(self) -> float | None:
        """``|frame diff| / fps``, in seconds."""
        return None if self.frame_diff is None else abs(self.frame_diff) / self.fps

    @property
    def fluency_parts(self) -> tuple[int, int] | None:
        if self.frame_diff is None or self.correct_tokens is None:
            return None
        return fluency_parts(self.decisions, self.reply_tokens, self.correct_tokens, self.frame_diff)

    @property
    def fluency(self) -> float | None:
        parts = self.fluency_parts
        return None if parts is None else parts[0] / parts[1]


METRICS = ("lm_ppl", "time_diff", "fluency", "lm_correctness")
TimedTurns = Literal["reply_frame", "learned_frames"]
MissingMetric = Literal["skip", "neutral"]
NEUTRAL = {"lm_ppl": 1.0, "time_diff": 0.0, "fluency": 1.0, "lm_correctness": 1.0}
"""What upstream's ``stream_evaluate`` returns for a conversation lacking a metric."""


def conversation_means(records: Sequence[TurnRecord]) -> dict[str, float | None]:
    """Each metric averaged over the turns that have it (None when no turn has it)."""
    out: dict[str, float | None] = {}
    for name in METRICS:
        values = [v for v in (getattr(r, name) for r in records) if v is not None]
        out[name] = sum(values) / len(values) if values else None
    return out


def aggregate(conversations: Sequence[Sequence[TurnRecord]],
              missing_metric: MissingMetric = "skip") -> dict[str, float | int | None]:
    """Dataset scores: the mean over conversations of each conversation's per-turn mean, plus
    counts. A conversation without any turn for a metric does not count for it (``skip``), or
    counts as :data:`NEUTRAL` (``neutral``: LM-PPL 1, TimeDiff 0, Fluency 1, LM-correctness 1, as
    upstream)."""
    means = [conversation_means(records) for records in conversations]
    out: dict[str, float | int | None] = {}
    for name in METRICS:
        if missing_metric == "neutral":
            values = [NEUTRAL[name] if m[name] is None else m[name] for m in means]
        else:
            values = [m[name] for m in means if m[name] is not None]
        out[name] = sum(values) / len(values) if values else None
    turns = [r for records in conversations for r in records]
    out["conversations"] = len(conversations)
    out["turns"] = len(turns)
    out["lm_turns"] = sum(r.lm_loss is not None for r in turns)
    out["timed_turns"] = sum(r.frame_diff is not None for r in turns)
    out["fluency_turns"] = sum(r.fluency_parts is not None for r in turns)
    return out
