"""COIN ``COIN.json``: ``{"database": {youtube_id: {duration, class, subset, start, end, annotation}}}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...jsonfiles import read_json
from .fields import Record

SUBSETS = ("training", "testing")


@dataclass(frozen=True)
class CoinSegment:
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class CoinVideo:
    """One COIN video. ``task`` is the class in words (``"MakeFrenchFries"`` -> ``"make french fries"``)."""

    video_id: str
    duration: float
    task_class: str
    subset: str
    start: float
    end: float
    segments: tuple[CoinSegment, ...]

    @property
    def task(self) -> str:
        return class_to_words(self.task_class)


def class_to_words(name: str) -> str:
    """``"MakeFrenchFries"`` -> ``"make french fries"`` (already spaced names are lower-cased)."""
    if " " in name:
        return name.lower()
    return " ".join(re.findall(r"[A-Z]+(?=[A-Z][a-z]|$)|[A-Z]?[a-z0-9]+|[A-Z]+", name)).lower()


def read_coin(path: str | Path) -> list[CoinVideo]:
    file = str(path)
    root = Record(read_json(path), file, "<root>")
    videos = []
    for video_id, entry in root.get("database", dict).items():
        rec = Record(entry, file, video_id)
        subset = rec.text("subset")
        if subset not in SUBSETS:
            rec.fail(f"expected one of {', '.join(SUBSETS)}, got {subset!r}", "subset")
        duration = rec.seconds("duration")
        start = rec.seconds("start", optional=True, default=0.0)
        end = rec.seconds("end", optional=True, default=duration)
        if end < start:
            rec.fail(f"ends before it starts ({end} < start {start})", "end")
        segments = []
        for i, item in enumerate(rec.items("annotation")):
            seg = rec.child(item, f"annotation[{i}]")
            times = seg.get("segment", list)
            if len(times) != 2:
                seg.fail(f"expected [start, end], got {len(times)} values", "segment")
            pair = seg.child({"start": times[0], "end": times[1]}, "segment")
            s, e = pair.span("start", "end")
            segments.append(CoinSegment(s, e, seg.text("label")))
        videos.append(CoinVideo(video_id, duration, rec.text("class"), subset, start, end,
                                tuple(sorted(segments, key=lambda s: s.start))))
    return videos
