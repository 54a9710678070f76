"""``streamvlm narrate SOURCE``: stream a video, webcam, URL or image folder through a model and
print what it says as it happens."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..inference.pipeline import TimedQuery

NAME = "narrate"
HELP = "narrate a video file, webcam, network stream or image folder live"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def parse_query(text: str) -> TimedQuery:
    """``"SECONDS:text"`` -> TimedQuery; a clear UserError otherwise."""
    seconds, sep, question = text.partition(":")
    try:
        when = float(seconds)
    except ValueError:
        when = math.nan
    if not sep or not question.strip() or not math.isfinite(when) or when < 0:
        raise UserError(f"--query {text!r}: expected SECONDS:TEXT with SECONDS >= 0, e.g. --query '12.5:What am I doing?'")
    from ..inference.pipeline import TimedQuery  # imports torch: only for a valid query

    return TimedQuery(when, question.strip())


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="checkpoint folder, or a VideoLLM-online adapter folder (default: the embedded model)")
    p.add_argument("--llm", help="base LLM path or hub id, for a VideoLLM-online adapter")
    p.add_argument("--vision", help="vision tower path or hub id, for a VideoLLM-online adapter")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default="auto", help="float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU)")


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=float, default=0.725,
                   help="theta: the interval token is suppressed below this probability (default 0.725)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="cap on the length of one reply (default 64)")


def add_stream_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, default=None, help="frames per second to sample (default: the model's)")
    add_generation_arguments(p)
    p.add_argument("--kv-budget", type=int, default=0,
                   help="bound the KV cache to this many tokens (attention sink + recent window); 0 = unbounded")
    p.add_argument("--realtime", action="store_true", help="pace by the wall clock; drop frames when behind")
    p.add_argument("--query", action="append", default=[], metavar="SECONDS:TEXT",
                   help="ask TEXT at video time SECONDS (repeatable)")


NARRATE_INSTRUCTION = "Please concisely narrate the video in real time."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="video file, /dev/videoN or webcam:N, rtsp/http URL, or a folder of images")
    add_model_arguments(p)
    add_stream_arguments(p)
    p.add_argument("--instruction", default=NARRATE_INSTRUCTION,
                   help=f"asked at 0 s to start the narration, as in training (default: {NARRATE_INSTRUCTION!r}; "
                        "'' asks nothing)")
    p.add_argument("--output", type=Path, help="write events as JSON lines to this file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def check_stream_arguments(args: argparse.Namespace) -> None:
    """Refuse bad generation / stream flags before anything slow (model loading) happens."""
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold {args.threshold}: must be between 0 and 1")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens}: must be >= 1")
    budget = getattr(args, "kv_budget", 0)
    if budget and budget < 256:
        raise UserError(f"--kv-budget {budget}: must be 0 (unbounded) or >= 256 tokens")
    if getattr(args, "fps", None) is not None and not 0 < args.fps <= 60:
        raise UserError(f"--fps {args.fps}: must be in (0, 60]")


def build_assistant(model, args: argparse.Namespace):
    """A :class:`~streamvlm.inference.assistant.LiveAssistant` with the flags' generation settings
    (call :func:`check_stream_arguments` first)."""
    from ..inference.assistant import LiveAssistant
    from ..inference.engine import GenerationConfig
    from ..inference.kv_policy import SinkWindowPolicy

    policy = None
    budget = getattr(args, "kv_budget", 0)
    if budget:
        sink = budget // 8  # the system prompt and the first frames stay as the attention sink
        policy = SinkWindowPolicy(sink_tokens=sink, window_tokens=budget - sink)
    generation = GenerationConfig(threshold=args.threshold, max_new_tokens=args.max_new_tokens)
    return LiveAssistant(model, generation, kv_policy=policy)


def preflight(source: str) -> None:
    """Open a local file or image folder once and read its header, so that a broken or
    unsupported source fails in a second, before the model is loaded. Live sources (webcams,
    URLs, pipes) are left alone: they are opened once, by the stream itself."""
    from ..video import probe
    from ..video.locate import locate

    if not locate(source).live:
        probe(source)


class EventPrinter:
    """Prints ``(12.5s) Assistant: ...`` lines (above the progress bar) and writes JSON lines."""

    def __init__(self, output: Path | None, bar=None) -> None:
        self.bar = bar
        self.file = None
        if output is not None:
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                self.file = output.open("w", encoding="utf-8")
            except OSError as exc:
                raise UserError(f"--output {output}: cannot write ({exc.strerror})") from None

    def __call__(self, time: float, role: str, text: str) -> None:
        """Print one event (one line: control characters become spaces) and log it."""
        self.line(f"({time:.1f}s) {role.capitalize()}: {_CONTROL.sub(' ', text)}")
        if self.file is not None:
            self.file.write(json.dumps({"time": round(time, 3), "role": role, "text": text}, ensure_ascii=False) + "\n")
            self.file.flush()

    def line(self, text: str) -> None:
        """Print a line on stdout without breaking the progress bar."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def stream(assistant, source, queries, *, realtime: bool, printer: EventPrinter, progress: bool,
           total: int | None = None, on_step=None):
    """Run ``source`` (frames) through ``assistant``; print events; return the pipeline stats.
    ``on_step(step)`` is called before each step's events are printed."""
    from tqdm import tqdm

    from ..inference.pipeline import StreamPipeline

    bar = tqdm(total=total, unit="frame", disable=not progress, file=sys.stderr, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    printer.bar = bar if progress else None
    pipeline = StreamPipeline(assistant, source, queries=queries, realtime=realtime)
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
    return pipeline.stats


def frame_side(model) -> int:
    """Decode frames no larger than needed: twice the frame encoder's input side (at least 64)."""
    if model.frame_encoder is None:
        raise UserError("this model has no frame encoder (vision tower); it cannot watch videos")
    return max(64, 2 * model.frame_encoder.image_size)


def expected_frames(source, fps: float) -> int | None:
    """Frames the sampler will emit for a source of known duration (frame k at k / fps)."""
    if not source.duration:
        return None
    return max(1, math.ceil(source.duration * fps - 1e-6))


def run(args: argparse.Namespace) -> int:
    queries = [parse_query(q) for q in args.query]
    if args.instruction.strip():
        queries.insert(0, parse_query(f"0:{args.instruction}"))
    check_stream_arguments(args)
    preflight(args.source)
    from ..loading import load_model  # imports torch: only once the source looks usable
    from ..video import open_source

    printer = EventPrinter(args.output)
    try:
        model = load_model(args.model, llm=args.llm, vision=args.vision, device=args.device, dtype=args.dtype)
        fps = args.fps if args.fps is not None else model.config.frame_fps
        assistant = build_assistant(model, args)
        with open_source(args.source, fps=fps, max_side=frame_side(model), realtime=args.realtime) as source:
            stats = stream(assistant, source, queries, realtime=args.realtime, printer=printer,
                           progress=not args.no_progress, total=expected_frames(source, fps))
            decode = source.stats
    finally:
        printer.close()
    print(f"{stats.frames} frames in {stats.wall_seconds:.1f}s ({stats.fps:.1f} frames/s); "
          f"dropped {stats.dropped + decode.dropped}, damaged frames skipped {decode.skipped_corrupt}", flush=True)
    return 0
