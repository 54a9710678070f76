"""``streamvlm narrate SOURCE``: stream a video, webcam, URL or image folder through a model and
print what it says as it happens."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated

from ..inference.config import GenerationConfig, QueryText, StreamOptions
from ..inference.narration import NARRATE_INSTRUCTION
from ..loading import ModelSource
from ..outputs import check_output
from ..settings import Arg, settings


@settings
class Options:
    """Options of ``streamvlm narrate``."""

    source: Annotated[str, Arg(positional=True, metavar="SOURCE")]
    """Video file, /dev/videoN or webcam:N, rtsp/http(s) URL, or a folder of images."""
    model: ModelSource = field(default_factory=ModelSource)
    """The model."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decisions and replies."""
    stream: StreamOptions = field(default_factory=StreamOptions)
    """Streaming."""
    query: list[QueryText] = field(default_factory=list)
    """Ask TEXT at video time SECONDS."""
    instruction: str = NARRATE_INSTRUCTION
    """Asked at 0 s to start the narration, as in training ('' asks nothing)."""
    output: Path | None = None
    """Write the events as JSON lines to this file (it replaces an existing file only when the run ends)."""
    no_progress: bool = False
    """Hide the progress bar."""

    def __post_init__(self) -> None:
        if self.output is not None:
            check_output(self.output, name="--output", inputs=[self.source])


def queries(options: Options) -> list:
    """The timed queries of a run: the instruction at 0 s, then ``--query`` ones."""
    from ..inference.config import TimedQuery

    asked = list(options.query)
    if options.instruction.strip():
        asked.insert(0, TimedQuery(0.0, options.instruction.strip()))
    return asked


def run(options: Options) -> int:
    from ..inference.console import EventPrinter, play, summary
    from ..inference.narration import build_assistant, expected_frames, open_for, preflight
    from ..loading import load_model

    preflight(options.source)  # a broken local source fails before the model loads
    model = load_model(options.model)
    assistant = build_assistant(model, options.generation, options.stream.kv_budget)
    printer = EventPrinter(options.output)
    keep = False
    try:
        source, fps = open_for(model, options.source, options.stream)
        with source:
            pipeline = play(assistant, source, queries(options), printer, realtime=options.stream.realtime,
                            progress=not options.no_progress, total=expected_frames(source, fps))
        keep = True
    except KeyboardInterrupt:
        keep = True  # the events so far are this run's own, whole lines: keep them
        raise
    finally:
        printer.finish(keep=keep)
    print(summary(pipeline, source.stats), flush=True)
    return 0
