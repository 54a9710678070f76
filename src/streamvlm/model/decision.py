"""The decision after each frame: stay silent or speak. One rule, used by the streaming engine at
inference and by the metrics at evaluation (MISSION 1.3, 1.4).

The interval (silence) token's probability is zeroed when it is below theta; the model speaks when
the argmax is then any other token. ``theta = 0`` is the plain argmax decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class FrameScore:
    """The model's output after one frame: the probability of the interval (silence) token, and
    whether the interval token is the argmax of the full distribution."""

    p_interval: float
    interval_is_argmax: bool


def frame_scores(logits: Tensor, silence_id: int) -> list[FrameScore]:
    """``logits [K, V]`` at K frame-decision positions -> one :class:`FrameScore` per row."""
    if logits.shape[0] == 0:
        return []
    probs = logits.float().softmax(-1)
    p = probs[:, silence_id].tolist()
    is_max = (probs.argmax(-1) == silence_id).tolist()
    return [FrameScore(pi, m) for pi, m in zip(p, is_max)]


def responds(score: FrameScore, threshold: float) -> bool:
    """True when the model speaks after this frame: the interval token is zeroed when its
    probability is below ``threshold``, so the model speaks if that happens or if another token
    is the argmax anyway."""
    return score.p_interval < threshold or not score.interval_is_argmax
