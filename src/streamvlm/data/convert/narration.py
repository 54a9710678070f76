"""Ego4D narrations -> streaming narration dialogues (MISSION 1.2, data method 1).

Each narration pass of a video is cut into windows (5 minutes by default). In a window, every
narration is placed at the first frame at or after its timestamp; the same text at the same frame
is kept once, different texts at the same frame are joined. A window becomes::

    system, stream(1 frame, not learned), user(instruction), assistant(narration 1),
    stream(frames up to narration 2, learned), assistant(narration 2), ...

Refined texts ("You pick up the knife.") replace the raw ones when a refined file is given (see
:func:`load_refined`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field

from ...jsonfiles import read_json
from ...model.config import UPSTREAM_SYSTEM_PROMPT
from ...model.conversation import Turn
from ...settings import Probability, settings
from ..formats.ego4d import Narration, NarrationVideo
from ..formats.fields import Record
from ..jsonl import ConversationRecord
from .templates import NARRATION_INSTRUCTIONS
from .timeline import CONVERSATION_FPS, ConversationFps, VideoPattern, fill_streams, frame_at, frame_time

ACKNOWLEDGEMENT = "Sure, I will narrate what you do."
"""The answer to a narration instruction asked before anything is narrated (``idle_start``)."""

_TAGS = re.compile(r"#\s*(?:unsure|c|o)\b|@c\b|#", re.IGNORECASE)


@settings
class NarrationOptions:
    """How Ego4D narrations become streaming narration dialogues."""

    fps: ConversationFps = CONVERSATION_FPS
    """Frame rate of the conversation's frames."""
    window: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    """Length of one dialogue in seconds of video."""
    system_prompt: str = UPSTREAM_SYSTEM_PROMPT
    """System prompt of every dialogue."""
    instruction: str | None = None
    """The user instruction; None picks one of ``NARRATION_INSTRUCTIONS`` per dialogue (seeded)."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Seed of every random choice."""
    video_pattern: VideoPattern = "{video_uid}.mp4"
    """Video path relative to the data root."""
    min_words: Annotated[int, Field(ge=0)] = 2
    """Narrations with fewer words after cleaning (e.g. a bare ``#unsure``) are dropped."""
    idle_start: Probability = 0.0
    """Share of dialogues (seeded) asked at their window's first frame instead of at their first
    narration, when that comes later: the instruction is answered there with ``acknowledgement``
    and the frames up to the first narration learn to stay silent, as a stream asked to narrate
    before anything happens needs."""
    acknowledgement: str = ACKNOWLEDGEMENT
    """The answer to an instruction asked before the first narration (``idle_start``)."""


def clean_narration(text: str, min_words: int = 2) -> str | None:
    """``"#C C picks up the knife"`` -> ``"C picks up the knife."``; ``#O``, ``#unsure`` and stray
    ``#`` are removed. Returns None when fewer than ``min_words`` words remain."""
    words = _TAGS.sub(" ", text).split()
    if len(words) < min_words:
        return None
    cleaned = " ".join(words).strip(".,; ")
    if not cleaned:
        return None
    return cleaned[0].upper() + cleaned[1:] + "."


def load_refined(path: str | Path) -> dict[str, str]:
    """Read a refined-narration file ``{annotation_uid: "You pick up the knife."}`` (as written by
    ``streamvlm data refine``); a narration whose ``annotation_uid`` is a key is said with that text."""
    file = str(path)
    root = Record(read_json(path), file, "<root>")
    out = {}
    for uid in root.data:
        text = " ".join(root.text(uid).split())
        if not text:
            root.fail("must not be empty", uid)
        out[uid] = text
    return out


def _texts(narrations: Sequence[Narration], refined: Mapping[str, str], min_words: int) -> list[Narration]:
    """Refined text where there is one, else the cleaned narration (dropped when too short)."""
    out = []
    for n in narrations:
        text = refined.get(n.annotation_uid) or clean_narration(n.text, min_words)
        if text is not None:
            out.append(Narration(n.time, text, n.annotation_uid))
    return out


def _by_frame(narrations: Sequence[Narration], fps: float) -> list[tuple[int, str]]:
    """Group narrations by frame: same text once, different texts joined with a space."""
    grouped: dict[int, list[str]] = {}
    for n in narrations:
        texts = grouped.setdefault(frame_at(n.time, fps), [])
        if n.text not in texts:
            texts.append(n.text)
    return [(frame, " ".join(texts)) for frame, texts in grouped.items()]


def convert_narration(videos: Sequence[NarrationVideo], options: NarrationOptions | None = None,
                      refined: Mapping[str, str] | None = None) -> Iterator[ConversationRecord]:
    """Yield one dialogue per (video, narration pass, window) holding at least one narration."""
    opt = options or NarrationOptions()
    for video in videos:
        for pass_name, narrations in video.passes.items():
            cleaned = _texts(narrations, refined or {}, opt.min_words)
            windows: dict[int, list[Narration]] = {}
            for n in cleaned:
                windows.setdefault(int(n.time // opt.window), []).append(n)
            for index, items in sorted(windows.items()):
                key = f"{video.video_uid}/{pass_name}/{index}"
                rng = random.Random(f"{opt.seed}/{key}")
                instruction = opt.instruction or rng.choice(NARRATION_INSTRUCTIONS)
                groups = _by_frame(items, opt.fps)
                first = groups[0][0]
                events = []
                asked = frame_at(index * opt.window, opt.fps)
                if opt.idle_start and asked < first and rng.random() < opt.idle_start:
                    first = asked
                    events.append((asked, [Turn("user", instruction, frame_time(asked, opt.fps)),
                                           Turn("assistant", opt.acknowledgement, frame_time(asked, opt.fps),
                                                learn=True)]))
                for frame, text in groups:
                    said = [Turn("assistant", text, frame_time(frame, opt.fps), learn=True)]
                    if not events:
                        said.insert(0, Turn("user", instruction, frame_time(frame, opt.fps)))
                    events.append((frame, said))
                turns = [Turn("system", opt.system_prompt)] + fill_streams(events, first, opt.fps, learn_first=False)
                yield ConversationRecord(
                    id=key, video=opt.video_pattern.format(video_uid=video.video_uid), fps=opt.fps,
                    start=frame_time(first, opt.fps), conversation=turns,
                    meta={"source": "ego4d_narration", "video_uid": video.video_uid, "pass": pass_name,
                          "window": [index * opt.window, (index + 1) * opt.window]},
                )
