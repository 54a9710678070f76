"""Readers and validators of the real annotation formats (Ego4D narration / GoalStep / LTA, COIN).

Every reader raises :class:`~streamvlm.errors.DataError` naming the file, the record and the
field at fault, and returns typed dataclasses.
"""

from .coin import CoinSegment, CoinVideo, read_coin
from .ego4d import (
    GoalStepSegment,
    GoalStepVideo,
    LtaAction,
    Narration,
    NarrationVideo,
    read_goalstep,
    read_lta,
    read_narration,
)

__all__ = [
    "CoinSegment", "CoinVideo", "read_coin", "GoalStepSegment", "GoalStepVideo", "LtaAction",
    "Narration", "NarrationVideo", "read_goalstep", "read_lta", "read_narration",
]
