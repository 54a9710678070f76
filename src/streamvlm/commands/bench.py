"""`streamvlm bench`: streaming vs per-frame dialogue vs interleaved vs no-cache, side by side.

All methods run on the same frame embeddings and the same model, one after the other:

* streaming: the :class:`~streamvlm.inference.StreamEngine` (one cache, a decision per frame,
  replies only when they fire);
* per-frame dialogue: an assistant turn after every frame: the frame is fed, then the turn is
  generated (``]\\nAssistant:`` prompt, one decoded token that is eos), i.e. two LLM calls and the
  template tokens on every frame;
* interleaved: a narration-length text (``--text-tokens``, default 10 with its eos) is generated
  after every frame;
* no cache: the whole streaming context is re-run at every frame.

Random-weight presets would speak at every frame; their interval logit is biased so they stay
silent, as a trained model does on most frames (the replies fired are reported).
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Literal

from pydantic import Field

from ..loading import ModelSource
from ..settings import Arg, settings


@settings
class Options:
    """Options of ``streamvlm bench``."""

    model: ModelSource = field(default_factory=ModelSource)
    """The model (default: the embedded one), unless --preset names random weights."""
    preset: Literal["tiny", "8b"] | None = None
    """Random weights instead of --model: tiny (a 4-layer LM of width 256) or 8b (VideoLLM-online-8B
    shapes, for a GPU)."""
    frames: Annotated[int, Field(ge=1, le=1_000_000)] = 64
    """Frames per method."""
    text_tokens: Annotated[int, Field(ge=1, le=4096)] = 10
    """Tokens generated per frame by interleaved, eos included (10: a narration; the embedded model's
    narration replies average 9.6)."""
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Torch CPU threads (default: torch's)."""
    force: bool = False
    """Run the 8b preset on a CPU anyway."""
    json: bool = False
    """Print one JSON object instead of a table."""
    videos: Annotated[list[str], Arg(nargs="+", metavar="PATH")] = field(default_factory=list)
    """Also run end to end (decoding, encoding and the LLM in the pipeline) on these video files or
    folders, e.g. ../shared/data/videos."""
    serve: bool = False
    """Instead: a bounded load run of streamvlm serve on 127.0.0.1 (an ephemeral port): --sessions
    WebSocket clients stream frames in real time for --seconds; prints sessions held, aggregate
    frames/s, p50/p99 per-frame latency and memory per session."""
    sessions: Annotated[int, Field(ge=1, le=1024)] = 4
    """With --serve: concurrent streams."""
    seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """With --serve: how long each stream sends frames."""
    batch_sessions: Annotated[list[Annotated[int, Field(ge=1, le=1024)]], Arg(nargs="+", metavar="N")] = \
        field(default_factory=list)
    """Instead: for each N (e.g. 1 4 16), N streams of --frames frames each, advanced by the batched
    step (one forward for all N) and then by the sequential loop (one push_frame each); prints the
    aggregate frames/s of both and the p50/p99 per-frame latency (a frame's latency is its step's).
    The frames are random embeddings and the model is kept silent (its interval logit biased), so
    what is measured is the frame step itself, not reply decoding."""


@dataclass
class Result:
    method: str
    frames_per_s: float
    peak_memory_mib: float
    kv_mib: float
    tokens_per_frame: float
    llm_calls_per_frame: float
    replies: int = 0


def _build_model(options: Options, torch):
    """The model to measure, and whether its weights are random."""
    from ..errors import UserError
    from ..loading import load_model, resolve_device, resolve_dtype
    from ..model import StreamVLM
    from ..presets import tiny_config, train_tokenizer, videollm_online_8b_config

    if options.preset is None:
        return load_model(options.model), False
    device = resolve_device(options.model.device)
    dtype = resolve_dtype(options.model.dtype, device)
    if options.preset == "8b":
        if device.type == "cpu" and not options.force:
            raise UserError("preset '8b' needs a GPU (about 17 GB of weights in bf16); use --device cuda, "
                            "or --force to run it on a CPU anyway")
        config = videollm_online_8b_config()
        tokenizer = train_tokenizer(vocab_size=512)
    else:
        config = tiny_config("llama", hidden=256, layers=4, heads=4, kv_heads=2)
        tokenizer = train_tokenizer()
    torch.manual_seed(0)
    with device:
        model = StreamVLM.from_config(config, tokenizer, dtype=dtype)
    return model.eval(), True


def _silence(model, torch) -> None:
    """Bias the interval logit of a random model so that it stays silent."""
    from torch import nn

    class IntervalBias(nn.Module):
        def __init__(self, lm: nn.Module, interval_id: int) -> None:
            super().__init__()
            self.lm, self.interval_id = lm, interval_id

        def get_input_embeddings(self) -> nn.Module:
            return self.lm.get_input_embeddings()

        def forward(self, **kwargs):
            out = self.lm(**kwargs)
            out.logits[..., self.interval_id] += 1e4
            return out

    model.language_model = IntervalBias(model.language_model, model.token_ids.silence_id)


class _Meter:
    """Peak memory over one method: CUDA allocator peak, or CPU RSS sampled after every frame."""

    def __init__(self, torch, device: str) -> None:
        import psutil

        self.torch, self.cuda = torch, device == "cuda"
        self.process = psutil.Process()
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.process.memory_info().rss
        self.peak = self.base

    def sample(self) -> None:
        if not self.cuda:
            self.peak = max(self.peak, self.process.memory_info().rss)

    def peak_mib(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.peak = self.torch.cuda.max_memory_allocated()
        return (self.peak - self.base) / 2**20


def _cache_mib(cache) -> float:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers if layer.is_initialized) / 2**20


class _Runner:
    """Feeds ids and frame embeddings to one cache (the baselines), counting calls and tokens."""

    def __init__(self, model, torch) -> None:
        from transformers import DynamicCache

        self.model, self.torch = model, torch
        self.cache = DynamicCache()
        self.calls = self.tokens = 0

    def feed(self, ids: list[int], frame=None):
        torch, model = self.torch, self.model
        parts = [model.embed_tokens(torch.tensor([ids], device=model.device))] if ids else []
        if frame is not None:
            parts.append(frame[None])
        embeds = torch.cat(parts, dim=1)
        start = self.cache.get_seq_length()
        positions = torch.arange(start, start + embeds.shape[1], device=model.device)[None]
        out = model.language_model(inputs_embeds=embeds, position_ids=positions, cache=self.cache,
                                    use_cache=True, logits_to_keep=1)
        self.calls += 1
        self.tokens += embeds.shape[1]
        return out.logits[0, -1]


def _timed(name: str, frames, meter_factory, step: Callable[[int], None], finish: Callable[[], tuple]) -> Result:
    from tqdm import tqdm

    meter = meter_factory()
    start = time.perf_counter()
    for i in tqdm(range(len(frames)), desc=name, leave=False, unit="frame"):
        step(i)
        meter.sample()
    if meter.cuda:
        meter.torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens, calls, kv_mib, replies = finish()
    n = len(frames)
    return Result(name, n / elapsed, meter.peak_mib(), kv_mib, tokens / n, calls / n, replies)


def run(options: Options) -> int:
    import torch

    from ..inference.assistant import encode_images
    from ..inference.config import GenerationConfig
    from ..inference.engine import StreamEngine
    from ..inference.layout import LayoutIds

    if options.threads:
        torch.set_num_threads(options.threads)
    model, random_weights = _build_model(options, torch)
    if random_weights:
        _silence(model, torch)
    if options.serve:
        return _serve_load(options, model)
    if options.batch_sessions:
        return _batch_bench(options, model, random_weights)
    device = model.device.type
    meter = lambda: _Meter(torch, device)  # noqa: E731
    layout = LayoutIds.from_model(model)
    n = options.frames
    results: list[Result] = []

    with torch.inference_mode():
        # frame encoding, timed on its own (batches of 8 uint8 frames at the tower's resolution)
        side = model.frame_encoder.image_size if model.frame_encoder is not None else 32
        images = torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8)
        start = time.perf_counter()
        if model.frame_encoder is not None:
            frames = torch.cat([encode_images(model, images[i : i + 8]) for i in range(0, n, 8)])
        else:
            frames = torch.randn(n, model.config.tokens_per_frame, model.config.llm_hidden_size)
        if device == "cuda":
            torch.cuda.synchronize()
        encode_fps = n / (time.perf_counter() - start)
        frames = frames.to(device=model.device, dtype=model.dtype)

        # warm-up (first calls allocate), then streaming: the engine itself
        warm = StreamEngine(model, GenerationConfig()).new_session()
        for i in range(min(n, 2)):
            warm.push_frame(frames[i], float(i))
        del warm
        session = StreamEngine(model, GenerationConfig()).new_session()
        replies = [0]

        def stream_step(i: int) -> None:
            replies[0] += sum(e.role == "assistant" for e in session.push_frame(frames[i], i / 2))

        results.append(_timed("streaming", frames, meter, stream_step,
                              lambda: (session.tokens_fed, session.llm_calls, _cache_mib(session.cache), replies[0])))
        session.reset()  # free its cache before the next method

        def dialogue(name: str, text_tokens: int) -> Result:
            runner = _Runner(model, torch)

            def step(i: int) -> None:
                prefix = list(layout.start) if i == 0 else [layout.eos_id] + list(layout.stream_open)
                runner.feed(prefix, frames[i])
                logits = runner.feed(list(layout.reply_open_after_stream))
                for _ in range(text_tokens - 1):  # the first token comes from the prompt's call
                    logits[layout.eos_id] = -float("inf")
                    runner.feed([int(logits.argmax())])
                # the turn's last decoded token is eos (forced): fed with the next frame

            return _timed(name, frames, meter, step,
                          lambda: (runner.tokens, runner.calls, _cache_mib(runner.cache), n))

        results.append(dialogue("per-frame", text_tokens=1))
        results.append(dialogue("interleaved", text_tokens=options.text_tokens))

        # no cache: the streaming context re-run in full at every frame
        no_cache = {"tokens": 0, "calls": 0}

        def full_step(i: int) -> None:
            ids = list(layout.start)
            for f in range(i + 1):
                if f:
                    ids.append(layout.interval_id)
                ids += [layout.frame_id] * layout.tokens_per_frame
            embeds = model.build_inputs_embeds(torch.tensor([ids], device=model.device), frames[: i + 1])
            model.language_model(inputs_embeds=embeds, use_cache=False, logits_to_keep=1)
            no_cache["tokens"] += len(ids)
            no_cache["calls"] += 1

        results.append(_timed("no-cache", frames, meter, full_step,
                              lambda: (no_cache["tokens"], no_cache["calls"], 0.0, 0)))

    end_to_end = _end_to_end(options, model) if options.videos else []
    _report(options, results, encode_fps, random_weights, end_to_end, device, str(model.dtype).removeprefix("torch."))
    return 0


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@dataclass
class VideoResult:
    video: str
    seconds: float
    frames: int
    wall_s: float
    frames_per_s: float
    times_real_time: float
    replies: int
    damaged_skipped: int


def _end_to_end(options: Options, model) -> list[VideoResult]:
    """Each video through the real pipeline at the model's fps, asked to narrate at 0 s."""
    from pathlib import Path

    from ..errors import UserError
    from ..inference.assistant import LiveAssistant
    from ..inference.config import GenerationConfig, TimedQuery
    from ..inference.narration import NARRATE_INSTRUCTION
    from ..inference.pipeline import StreamPipeline
    from ..video import open_source

    paths: list[Path] = []
    for name in options.videos:
        path = Path(name)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise UserError(f"--videos {name}: no such file or folder")
    results = []
    fps = model.config.frame_fps
    side = max(64, 2 * model.frame_encoder.image_size)
    for path in paths:
        assistant = LiveAssistant(model, GenerationConfig(max_new_tokens=32))
        try:
            source = open_source(path, fps=fps, max_side=side)
        except UserError as exc:  # a damaged sample is reported, not fatal
            print(f"skipping {path.name}: {exc}")
            continue
        with source:
            pipeline = StreamPipeline(assistant, source, queries=[TimedQuery(0.0, NARRATE_INSTRUCTION)])
            replies = sum(e.role == "assistant" for step in pipeline for e in step.events)
            stats, skipped = pipeline.stats, source.stats.skipped_corrupt
        wall = stats.wall_seconds
        seconds = stats.video_time + 1 / fps
        results.append(VideoResult(path.name, seconds, stats.frames, wall, stats.frames / wall,
                                   seconds / wall, replies, skipped))
    return results


def _report(options: Options, results: list[Result], encode_fps: float, random_weights: bool,
            end_to_end: list[VideoResult], device: str, dtype: str) -> None:
    by_name = {r.method: r for r in results}
    ratios = {
        "streaming/per-frame": by_name["streaming"].frames_per_s / by_name["per-frame"].frames_per_s,
        "streaming/interleaved": by_name["streaming"].frames_per_s / by_name["interleaved"].frames_per_s,
    }
    report = {
        "model": options.preset or options.model.model or "default", "device": device, "dtype": dtype,
        "frames": options.frames, "threads": _threads(),
        "random_weights": random_weights, "frame_encoding_fps": encode_fps,
        "methods": [asdict(r) for r in results], "ratios": ratios,
        "end_to_end": [asdict(v) for v in end_to_end],
    }
    if options.json:
        print(json.dumps(report))
        return
    print(f"model {report['model']} on {device} ({dtype}, {report['threads']} torch threads), {options.frames} frames; "
          f"frame encoding alone: {encode_fps:.1f} frames/s")
    header = (f"{'method':<12} {'frames/s':>9} {'peak MiB':>9} {'KV MiB':>8} "
              f"{'tokens/frame':>13} {'LLM calls/frame':>16} {'replies':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.method:<12} {r.frames_per_s:>9.1f} {r.peak_memory_mib:>9.1f} {r.kv_mib:>8.2f} "
              f"{r.tokens_per_frame:>13.1f} {r.llm_calls_per_frame:>16.1f} {r.replies:>8}")
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    if end_to_end:
        print(f"\nend to end (decode + encode + LLM, {report['model']} model, narrating from 0 s):")
        header = (f"{'video':<28} {'seconds':>8} {'frames':>7} {'wall s':>7} "
                  f"{'frames/s':>9} {'x real time':>12} {'replies':>8}")
        print(header)
        print("-" * len(header))
        for v in end_to_end:
            print(f"{v.video:<28} {v.seconds:>8.1f} {v.frames:>7} {v.wall_s:>7.2f} {v.frames_per_s:>9.1f} "
                  f"{v.times_real_time:>12.1f} {v.replies:>8}")


def _serve_load(options: Options, model) -> int:
    from ..errors import UserError

    try:
        from ..serve.loadtest import format_report, load_run
    except ImportError as exc:
        raise UserError(f"bench --serve needs the serve extra ({exc.name} is missing)") from None
    report = load_run(model, sessions=options.sessions, seconds=options.seconds)
    report["model"] = options.preset or options.model.model or "default"
    report["device"] = model.device.type
    report["threads"] = _threads()
    if options.json:
        print(json.dumps(report))
    else:
        print(f"model {report['model']} on {report['device']} ({report['threads']} torch threads)")
        print(format_report(report))
    return 0


def _batch_bench(options: Options, model, random_weights: bool) -> int:
    """``--batch-sessions``: the batched step against the sequential loop, per session count."""
    import torch

    from ..inference.batch import push_frames
    from ..inference.config import GenerationConfig
    from ..inference.engine import StreamEngine

    if not random_weights:  # random weights are silenced already
        _silence(model, torch)
    engine = StreamEngine(model, GenerationConfig())
    device = model.device.type
    shape = (options.frames, model.config.tokens_per_frame, model.config.llm_hidden_size)
    generator = torch.Generator().manual_seed(0)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def percentile(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    rows = []
    with torch.inference_mode():
        warm = [engine.new_session() for _ in range(2)]  # first calls allocate
        frame = torch.randn(shape[1:], generator=generator).to(device=model.device, dtype=model.dtype)
        for i in range(2):
            push_frames(warm, [frame, frame], [float(i), float(i)])
        del warm
        for n in options.batch_sessions:
            streams = [torch.randn(shape, generator=generator).to(device=model.device, dtype=model.dtype)
                       for _ in range(n)]
            row = {"sessions": n, "frames_per_session": options.frames}
            for mode in ("batched", "sequential"):
                sessions = [engine.new_session() for _ in range(n)]
                latencies: list[float] = []
                replies = 0
                sync()
                start = time.perf_counter()
                for i in range(options.frames):
                    if mode == "batched":
                        t0 = time.perf_counter()
                        out = push_frames(sessions, [s[i] for s in streams], [i / 2] * n)
                        sync()
                        latencies += [time.perf_counter() - t0] * n
                    else:
                        out = []
                        for session, stream in zip(sessions, streams):
                            t0 = time.perf_counter()
                            out.append(session.push_frame(stream[i], i / 2))
                            sync()
                            latencies.append(time.perf_counter() - t0)
                    replies += sum(e.role == "assistant" for events in out for e in events)
                elapsed = time.perf_counter() - start
                row[mode] = {"frames_per_s": n * options.frames / elapsed,
                             "p50_ms": 1e3 * percentile(latencies, 0.5),
                             "p99_ms": 1e3 * percentile(latencies, 0.99), "replies": replies}
            row["speedup"] = row["batched"]["frames_per_s"] / row["sequential"]["frames_per_s"]
            rows.append(row)
    report = {"model": options.preset or options.model.model or "default", "device": device,
              "dtype": str(model.dtype).removeprefix("torch."), "threads": _threads(),
              "random_weights": random_weights, "batch_sessions": rows}
    if options.json:
        print(json.dumps(report))
        return 0
    print(f"model {report['model']} on {device} ({report['dtype']}, {report['threads']} torch threads), "
          f"{options.frames} frames per session")
    header = (f"{'sessions':>8} {'mode':<11} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'replies':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        for mode in ("batched", "sequential"):
            r = row[mode]
            print(f"{row['sessions']:>8} {mode:<11} {r['frames_per_s']:>9.1f} {r['p50_ms']:>8.2f} "
                  f"{r['p99_ms']:>8.2f} {r['replies']:>8}")
        print(f"{'':>8} batched/sequential: {row['speedup']:.2f}x")
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()
