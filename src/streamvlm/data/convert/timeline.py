"""Placing timed turns on the frame grid and filling the gaps with stream turns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, Field

from ...model.conversation import Turn

CONVERSATION_FPS = 2.0
"""Frame rate of the conversations the converters write (the paper's training rate)."""

ConversationFps = Annotated[float, Field(gt=0, le=60)]


def check_video_pattern(pattern: str) -> str:
    """A video path pattern must format with ``{video_uid}`` alone into a relative path."""
    from ..jsonl import check_video_path

    try:
        example = pattern.format(video_uid="VIDEO")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a pattern with {{video_uid}} ({type(exc).__name__}: {exc})") from None
    if "VIDEO" not in example:
        raise ValueError("must contain {video_uid}")
    check_video_path(example)
    return pattern


VideoPattern = Annotated[str, AfterValidator(check_video_pattern)]
"""A video path relative to the data root, from the video uid (``{video_uid}.mp4``)."""


def frame_at(time: float, fps: float) -> int:
    """The first frame at or after ``time`` (frame n is at n / fps): the frame a reply is due at."""
    return max(0, math.ceil(time * fps - 1e-6))


def frame_time(frame: int, fps: float) -> float:
    return round(frame / fps, 6)


def fill_streams(events: Sequence[tuple[int, Sequence[Turn]]], start_frame: int, fps: float, *,
                 end_frame: int | None = None, learn_first: bool = True) -> list[Turn]:
    """Interleave stream turns with ``events`` ``(frame, turns said after that frame)``.

    Events must be sorted by frame and start at ``start_frame`` or later. The stream before an
    event ends with the event's frame (so a reply there is spoken at that frame); an event on the
    same frame as the previous one follows it directly. ``end_frame`` (inclusive) adds trailing
    frames after the last event. Every stream decision is learned except, when ``learn_first`` is
    false, those of the first stream.
    """
    turns: list[Turn] = []
    last = start_frame - 1
    for frame, said in events:
        if frame < last:
            raise ValueError(f"events out of order: frame {frame} after frame {last}")
        if frame > last:
            learn = learn_first or bool(turns)
            turns.append(Turn("stream", time=frame_time(last + 1, fps), num_frames=frame - last, learn=learn))
            last = frame
        turns.extend(said)
    if end_frame is not None and end_frame > last:
        turns.append(Turn("stream", time=frame_time(last + 1, fps), num_frames=end_frame - last, learn=True))
    return turns
