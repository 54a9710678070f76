"""Has a model learned *when* to speak? The mean silence probability at the frames where the gold
conversation speaks versus the frames where it stays silent.

A model that only learned the base rate of speaking gives the same probability at both (its
TimeDiff and Fluency then depend on theta alone: silent everywhere above that probability,
speaking at once below it); a model that learned the timing gives a lower one where it should
speak. The silence probability is P(interval) after a frame in the streaming layout and
P(empty reply) after a frame in the per-frame layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from ..evaluation.stream_eval import EvalSample
from ..train.transforms import per_frame
from .per_frame_eval import decision_positions, forward_logits, silence_token

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM


def silence_probabilities(model: StreamVLM, sample: EvalSample, per_frame_layout: bool) -> list[tuple[float, bool]]:
    """``(P(silence), gold speaks)`` at every learned frame decision of one gold conversation."""
    gold = model.renderer.render(sample.turns)
    learned = [d for d in gold.decisions if d.learned]
    if per_frame_layout:
        rendered = model.renderer.render(per_frame(sample.turns))
        positions = [decision_positions(rendered)[d.frame] for d in learned]
        silent = silence_token(model)
    else:
        rendered, positions, silent = gold, [d.position for d in learned], model.token_ids.silence_id
    if not positions:
        return []
    with torch.inference_mode():
        probs = forward_logits(model, rendered, sample.frames)[positions].float().softmax(-1)[:, silent]
    return list(zip(probs.tolist(), (d.speaks for d in learned)))


def silence_separation(model: StreamVLM, samples: Iterable[EvalSample],
                       per_frame_layout: bool) -> dict[str, float | None]:
    """Mean P(silence) at gold-speak frames (``p_silence_speak``) and at gold-silent frames
    (``p_silence_silent``) over all conversations."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        pairs = [p for s in samples for p in silence_probabilities(model, s, per_frame_layout)]
    finally:
        model.train(was_training)
    speak = [p for p, speaks in pairs if speaks]
    silent = [p for p, speaks in pairs if not speaks]
    return {"p_silence_speak": sum(speak) / len(speak) if speak else None,
            "p_silence_silent": sum(silent) / len(silent) if silent else None}
