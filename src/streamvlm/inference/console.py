"""Showing a live stream on a terminal: event lines printed above a progress bar, and optionally
the same events as JSON lines in a file (written beside it and renamed into place at the end)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..outputs import AtomicFile
from .config import TimedQuery
from .narration import event_record

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class EventPrinter:
    """Prints ``(12.5s) Assistant: ...`` lines (above the progress bar, control characters as
    spaces) and, with ``output``, writes each event as a JSON line (see :func:`event_record`)."""

    def __init__(self, output: Path | None = None) -> None:
        self.bar: Any = None
        self.events = 0
        self.file = AtomicFile(output, name="--output") if output is not None else None

    def __call__(self, time: float, role: str, text: str) -> None:
        self.line(f"({time:.1f}s) {role.capitalize()}: {_CONTROL.sub(' ', text)}")
        self.events += 1
        if self.file is not None:
            self.file.write(json.dumps(event_record(time, role, text), ensure_ascii=False) + "\n")
            self.file.flush()

    def line(self, text: str) -> None:
        """Print a line on stdout without breaking the progress bar."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def finish(self, *, keep: bool) -> None:
        """Move the JSON lines into place (``keep``), or drop them: an existing file is replaced
        only by a run that produced its content."""
        if self.file is not None:
            if keep:
                self.file.commit()
            else:
                self.file.discard()


def play(assistant, frames: Iterable[Any], queries: Iterable[TimedQuery], printer: EventPrinter, *,
         realtime: bool = False, progress: bool = True, total: int | None = None,
         on_step: Callable[[Any], None] | None = None):
    """Run ``frames`` through ``assistant`` in the parallel pipeline, printing events as they
    come; ``on_step(step)`` runs before each step's events are printed. Returns the pipeline."""
    from tqdm import tqdm

    from .pipeline import StreamPipeline

    bar = tqdm(total=total, unit="frame", disable=not progress, file=sys.stderr, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    printer.bar = bar if progress else None
    pipeline = StreamPipeline(assistant, frames, queries=queries, realtime=realtime)
    try:
        for step in pipeline:
            if on_step is not None:
                on_step(step)
            for event in step.events:
                printer(event.time, event.role, event.text)
            bar.update(1)
            bar.set_postfix_str(f"{pipeline.stats.fps:.1f} frames/s, video {step.time:.1f}s", refresh=False)
    finally:
        bar.close()
        printer.bar = None
        pipeline.close()
    for q in pipeline.pending_queries:
        print(f"streamvlm: query at {q.time:.1f}s came after the last frame; not asked: {q.text}", file=sys.stderr)
    return pipeline


def summary(pipeline, decode_stats) -> str:
    """The closing line of a run: frames, time, speed, drops, damaged frames."""
    stats = pipeline.stats
    return (f"{stats.frames} frames in {stats.wall_seconds:.1f}s ({stats.fps:.1f} frames/s); "
            f"dropped {stats.dropped + decode_stats.dropped}, damaged frames skipped {decode_stats.skipped_corrupt}")
