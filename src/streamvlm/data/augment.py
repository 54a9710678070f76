"""Robustness augmentation (MISSION 1.2): a wrong assistant reply slipped into the history.

A learned reply R preceded by a stream of at least 2 frames is picked; the stream is split at a
random frame, where a wrong reply (another reply of the same dialogue, not learned, and the
decision to speak there not learned either) is inserted. Then either the model learns to
correct it (R becomes ``"(Sorry, the last response is wrong) " + R``) or to ignore it (R as is).
Off by default (``probability=0``); seeded per record.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Annotated

from pydantic import Field

from ..model.conversation import Turn
from ..settings import Probability, settings
from .jsonl import ConversationRecord

CORRECTION_PREFIX = "(Sorry, the last response is wrong) "


@settings
class AugmentOptions:
    """Robustness augmentation: wrong assistant replies inserted into the history."""

    probability: Probability = 0.0
    """Share of dialogues that get a wrong reply."""
    correct_ratio: Probability = 0.5
    """Among those, share that learn a correction (the rest learn to ignore it)."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Seed of the choices."""


def _learn(count: int, num_frames: int) -> bool | int:
    """A stream ``learn`` value for its first ``count`` frames learned."""
    return True if count >= num_frames else (count if count > 0 else False)


def insert_wrong_reply(record: ConversationRecord, options: AugmentOptions) -> ConversationRecord:
    """Return ``record`` unchanged or with one wrong reply inserted (see the module doc)."""
    rng = random.Random(f"{options.seed}/augment/{record.id}")
    if rng.random() >= options.probability:
        return record
    turns = record.conversation
    sites = [i for i in range(1, len(turns))
             if turns[i].role == "assistant" and turns[i].learn
             and turns[i - 1].role == "stream" and turns[i - 1].num_frames >= 2]
    if not sites:
        return record
    j = rng.choice(sites)
    wrong_texts = sorted({t.content for t in turns if t.role == "assistant" and t.content != turns[j].content})
    if not wrong_texts:
        return record
    stream, reply = turns[j - 1], turns[j]
    k = rng.randint(1, stream.num_frames - 1)
    learned = stream.learned_frames()
    time_k = round(stream.time + (k - 1) / record.fps, 6) if stream.time is not None else None
    time_next = round(stream.time + k / record.fps, 6) if stream.time is not None else None
    correct = rng.random() < options.correct_ratio
    new = [
        Turn("stream", time=stream.time, num_frames=k, learn=_learn(min(learned, k - 1), k)),
        Turn("assistant", rng.choice(wrong_texts), time_k, learn=False),
        Turn("stream", time=time_next, num_frames=stream.num_frames - k,
             learn=_learn(max(0, learned - k), stream.num_frames - k)),
        replace(reply, content=CORRECTION_PREFIX + reply.content) if correct else reply,
    ]
    meta = {**record.meta, "augment": "wrong_reply_corrected" if correct else "wrong_reply_ignored"}
    return replace(record, conversation=turns[:j - 1] + new + turns[j + 1:], meta=meta)
