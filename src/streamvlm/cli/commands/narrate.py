"""``streamvlm narrate SOURCE``: stream a video, webcam, URL or image folder through a model and
print what it says as it happens."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from ...engine.narration import NARRATE_INSTRUCTION
from ...engine.options import GenerationConfig, QueryText, StreamOptions
from ...errors import UserError
from ...model.loading import ModelSource
from ...outputs import check_output
from ...settings import Arg, settings

if TYPE_CHECKING:
    from ...engine.console import EventPrinter


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
    """Write the events as JSON lines to this file (it replaces an existing file only when the run
    ends); '-' writes them to stdout (the event lines then go to stderr)."""
    subtitles: Path | None = None
    """Write the replies as subtitles: WebVTT (.vtt) or SubRip (.srt), by the file's extension."""
    server: str | None = None
    """Stream SOURCE through a streamvlm serve at this URL (http://HOST:PORT) instead of a local model."""
    api_key_env: str | None = None
    """With --server: the environment variable holding its API key."""
    no_progress: bool = False
    """Hide the progress bar."""

    def __post_init__(self) -> None:
        if self.output is not None and str(self.output) != "-":
            check_output(self.output, name="--output", inputs=[self.source])
        if self.subtitles is not None:
            if self.subtitles.suffix.lower() not in (".vtt", ".srt"):
                raise UserError(f"--subtitles {self.subtitles}: name a .vtt (WebVTT) or .srt (SubRip) file")
            check_output(self.subtitles, name="--subtitles", inputs=[self.source])
        if self.server is None and self.api_key_env is not None:
            raise UserError(f"--api-key-env {self.api_key_env}: a key is sent only to a server (--server URL)")
        if self.server is not None:
            _check_server(self)


def _check_server(options: Options) -> None:
    """``--server``: a valid URL, the serve extra installed, no model flags, the key's variable set."""
    import os

    from ...client import stream_url

    stream_url(options.server)
    try:
        import websockets  # noqa: F401
    except ImportError as exc:
        raise UserError(f"narrate --server needs the serve extra ({exc.name} is missing): "
                        f"pip install 'streamvlm[serve]'") from None
    if options.model.model or options.model.llm or options.model.vision:
        raise UserError("--server: the server's model narrates; --model, --llm and --vision are its own flags")
    if options.api_key_env is not None and not os.environ.get(options.api_key_env):
        raise UserError(f"--api-key-env {options.api_key_env}: that environment variable is not set or empty")


def queries(options: Options) -> list:
    """The timed queries of a run: the instruction at 0 s, then ``--query`` ones."""
    from ...engine.options import TimedQuery

    asked = list(options.query)
    if options.instruction.strip():
        asked.insert(0, TimedQuery(0.0, options.instruction.strip()))
    return asked


@contextmanager
def outputs_of(printer: EventPrinter) -> Iterator[None]:
    """The run in this block writes ``printer``'s files: in place when it ends, nowhere when it
    fails, and beside them (``FILE.partial``) when it is interrupted, the files themselves left as
    they were; the interruption's message then names what was kept."""
    try:
        yield
    except KeyboardInterrupt:
        kept = printer.finish(keep=True, interrupted=True)
        if not kept:
            raise
        unchanged = [str(p) for p in (printer.path, printer.subtitles) if p is not None]
        raise KeyboardInterrupt(f"the events so far are in {', '.join(map(str, kept))} "
                                f"({', '.join(unchanged)} left as before)") from None
    except BaseException:
        printer.finish(keep=False)
        raise
    printer.finish(keep=True)


def run(options: Options) -> int:
    from ...engine.console import EventPrinter, play, summary
    from ...engine.defaults import resolve_stream
    from ...engine.narration import expected_frames, open_for, preflight
    from ...model.loading import load_model

    preflight(options.source)  # a broken local source fails before the model loads
    if options.server is not None:
        return _run_remote(options)
    model = load_model(options.model)
    if options.model.model is None:
        say_embedded_note(options.source)
    setup = resolve_stream(model, options.stream, options.generation)
    assistant = setup.assistant()
    printer = EventPrinter(options.output, options.subtitles)
    with outputs_of(printer):
        source = open_for(setup, options.source)
        with source:
            pipeline = play(assistant, source, queries(options), printer, realtime=setup.realtime,
                            progress=not options.no_progress, total=expected_frames(source, setup.fps))
    print(summary(pipeline, source.stats), flush=True, file=sys.stderr if printer.stdout_json else sys.stdout)
    return 0


def say_embedded_note(source: str) -> None:
    """One line on stderr when the embedded model watches what is not a synthetic-world video."""
    from ...data.synth.marker import embedded_model_note

    note = embedded_model_note(source)
    if note:
        print(f"streamvlm: {note}", file=sys.stderr, flush=True)


def _run_remote(options: Options) -> int:
    """``--server``: decode SOURCE here, stream its frames to the server (losslessly: it waits
    rather than drops), print its events as local narration does."""
    import os
    import threading
    import time

    from websockets.exceptions import ConnectionClosed

    from ...client import open_stream
    from ...engine.console import EventPrinter
    from ...engine.narration import folder_root
    from ...video import open_source
    from ...video.resize import FrameFit

    key = os.environ[options.api_key_env] if options.api_key_env else None
    printer = EventPrinter(options.output, options.subtitles)
    frames = 0
    start = time.monotonic()
    try:
        with outputs_of(printer), open_stream(options.server, api_key=key) as stream:
            session = stream.session
            if session.note:  # the server's model speaks about itself (the embedded one: what it knows)
                print(f"streamvlm: server: {session.note}", file=sys.stderr, flush=True)
            fps = options.stream.fps or session.fps
            if session.frame_resize is not None and session.frame_side:  # scaled once, as the server would
                size = dict(fit=FrameFit(session.frame_side, session.frame_resize))
            else:
                size = dict(max_side=session.frame_side or None)
            source = open_source(options.source, fps=fps, realtime=options.stream.realtime,
                                 allowed_root=folder_root(options.source), **size)
            stream.configure(threshold=options.generation.threshold, drop_frames=options.stream.realtime)
            for q in queries(options):
                stream.ask(q.text, q.time)
            failure: list[BaseException] = []

            def send() -> None:
                nonlocal frames
                try:
                    with source:
                        for frame in source:
                            stream.send_frame(frame.time, frame.image)
                            frames += 1
                    stream.end()
                except BaseException as exc:  # raised in the caller's thread
                    failure.append(exc)
                    stream.close()

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            for message in stream.events():
                if message.type in ("user", "assistant"):
                    printer(message.time, message.type, message.text)
                elif message.type == "error":
                    print(f"streamvlm: server: {message.message}", file=sys.stderr, flush=True)
            sender.join(timeout=5)
            if failure and not isinstance(failure[0], ConnectionClosed):
                raise failure[0]
            if stream.close_code != 1000:
                raise UserError(f"{options.server}: the stream closed early (close code "
                                f"{stream.close_code}{': ' + stream.close_reason if stream.close_reason else ''})")
    except ConnectionClosed as closed:  # while asking or configuring
        raise UserError(f"{options.server}: the connection closed ({closed})") from None
    wall = time.monotonic() - start
    print(f"{frames} frames in {wall:.1f}s ({frames / wall if wall else 0:.1f} frames/s) via {options.server}",
          flush=True, file=sys.stderr if printer.stdout_json else sys.stdout)
    return 0
