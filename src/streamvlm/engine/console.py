"""Showing a live stream on a terminal: event lines printed above a progress bar, and optionally
the same events as JSON lines in a file (written beside it and renamed into place at the end)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..outputs import AtomicFile, stdout_error
from .narration import event_record
from .options import TimedQuery

if TYPE_CHECKING:
    from .assistant import LiveAssistant

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class EventPrinter:
    """Prints ``(12.5s) Assistant: ...`` lines (above the progress bar, control characters as
    spaces) and, with ``output``, writes each event as a JSON line (see :func:`event_record`);
    ``output`` ``-`` writes the JSON lines to stdout (the event lines then go to stderr).
    ``subtitles`` (``.vtt`` WebVTT, ``.srt`` SubRip) gets the assistant's replies as timed cues."""

    def __init__(self, output: Path | None = None, subtitles: Path | None = None) -> None:
        self.bar: Any = None
        self.events = 0
        self.stdout_json = output is not None and str(output) == "-"
        self.file = AtomicFile(output, name="--output") if output is not None and not self.stdout_json else None
        self.subtitles = subtitles
        self.replies: list[tuple[float, str]] = []

    def __call__(self, time: float, role: str, text: str) -> None:
        self.line(f"({time:.1f}s) {role.capitalize()}: {_CONTROL.sub(' ', text)}")
        self.events += 1
        record = json.dumps(event_record(time, role, text), ensure_ascii=False) + "\n"
        if self.file is not None:
            self.file.write(record)
            self.file.flush()
        if self.stdout_json:
            try:
                sys.stdout.write(record)
                sys.stdout.flush()
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise stdout_error(exc) from None
        if role == "assistant" and text.strip():
            self.replies.append((time, _CONTROL.sub(" ", text).strip()))

    def line(self, text: str) -> None:
        """Print a line on stdout (stderr with ``--output -``) without breaking the progress bar."""
        stream = sys.stderr if self.stdout_json else sys.stdout
        try:
            if self.bar is not None:
                self.bar.write(text, file=stream)
            else:
                print(text, flush=True, file=stream)
        except BrokenPipeError:
            raise
        except OSError as exc:
            if stream is sys.stdout:
                raise stdout_error(exc) from None
            raise

    def finish(self, *, keep: bool, interrupted: bool = False) -> list[Path]:
        """Move the JSON lines (and subtitles) into place (``keep``), or drop them: an existing file
        is replaced only by a run that produced its content. ``interrupted``: the run was stopped
        (Ctrl-C); what it wrote goes to ``FILE.partial`` beside each output, which stays as it was.
        Returns the files written."""
        from ..outputs import partial_of, write_text_atomic

        written = []
        keep = keep and not (interrupted and self.events == 0)  # nothing to keep
        if self.file is not None:
            if keep:
                written.append(self.file.commit(partial_of(self.path) if interrupted else None))
            else:
                self.file.discard()
        if self.subtitles is not None and keep:
            target = partial_of(self.subtitles) if interrupted else self.subtitles
            text = subtitles_text(self.replies, srt=self.subtitles.suffix.lower() == ".srt")
            written.append(write_text_atomic(target, text, name="--subtitles"))
        return written

    @property
    def path(self) -> Path | None:
        """The ``--output`` file (None without one, or for stdout)."""
        return None if self.file is None else self.file.path


def _stamp(seconds: float, srt: bool) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if srt else '.'}{ms:03d}"


def subtitles_text(replies: list[tuple[float, str]], *, srt: bool = False, longest: float = 4.0) -> str:
    """Timed replies -> WebVTT (or SRT) text: each shown from its time until the next one, at most
    ``longest`` seconds."""
    out = [] if srt else ["WEBVTT", ""]
    for i, (start, text) in enumerate(replies):
        end = start + longest
        if i + 1 < len(replies):
            end = min(end, max(replies[i + 1][0], start + 0.5))
        if srt:
            out.append(str(i + 1))
        out += [f"{_stamp(start, srt)} --> {_stamp(end, srt)}", text.replace("-->", "->"), ""]
    return "\n".join(out)


def play(assistant: LiveAssistant, frames: Iterable[Any], queries: Iterable[TimedQuery], printer: EventPrinter, *,
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
