"""Measuring the streaming engine's speed and memory (the harness of ``streamvlm bench``).

Every measure takes a loaded model and plain numbers and returns a JSON-ready report; the command
(:mod:`streamvlm.cli.commands.bench`) picks the measures and prints them.

* :func:`compare_methods`: streaming (the engine) against per-frame dialogue, interleaved and
  no-cache decoding on the same frames, and frame encoding alone;
* :func:`direct_overhead`: ``push_frame`` against the same forward called directly on the LM;
* :func:`sessions_speed`: the batched step over N sessions against the sequential loop;
* :func:`length_costs`: per-frame cost and KV append time against stream length;
* :func:`end_to_end`: videos through the real pipeline (decoding, encoding, the LM).

On CUDA every timing synchronises the device (:func:`syncer`) and memory is the allocator's peak
(:class:`Meter`); on a CPU memory is the process's peak RSS.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..engine.defaults import resolve_stream
from ..engine.options import GenerationConfig, StreamOptions

if TYPE_CHECKING:
    from transformers import Cache

    from ..engine.layout import LayoutIds
    from ..engine.session import StreamSession
    from ..model.vlm import StreamVLM

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@dataclass
class Result:
    """One method over one stream."""

    method: str
    frames_per_s: float
    peak_memory_mib: float
    kv_mib: float
    tokens_per_frame: float
    llm_calls_per_frame: float
    replies: int = 0
    peak_total_mib: float = 0.0
    """CUDA: the allocator's peak, weights included; CPU: the process's peak RSS."""


@dataclass
class VideoResult:
    """One video through the pipeline."""

    video: str
    seconds: float
    frames: int
    wall_s: float
    frames_per_s: float
    times_real_time: float
    replies: int
    damaged_skipped: int


# ---------------------------------------------------------------------------- tools
def syncer(device: str) -> Callable[[], None]:
    """Waits for the device's queued work (a no-op on a CPU), so a timer measures the work itself."""
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (the nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Meter:
    """Peak memory over one method: CUDA allocator peak, or CPU RSS sampled after every frame."""

    def __init__(self, device: str) -> None:
        import psutil

        self.cuda = device == "cuda"
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
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        return (self.peak - self.base) / 2**20

    def total_mib(self) -> float:
        return self.peak / 2**20


def cache_mib(cache: Cache) -> float:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers if layer.is_initialized) / 2**20


def random_frames(model: StreamVLM, count: int, generator: torch.Generator) -> Tensor:
    """``count`` random frames ``[count, T, D]`` on the model's device and dtype."""
    shape = (count, model.config.tokens_per_frame, model.config.llm_hidden_size)
    return torch.randn(shape, generator=generator).to(device=model.device, dtype=model.dtype)


class _IntervalBias(nn.Module):
    """The wrapped LM with a large bias on the interval logit."""

    def __init__(self, lm: nn.Module, interval_id: int) -> None:
        super().__init__()
        self.lm, self.interval_id = lm, interval_id

    def get_input_embeddings(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def __getattr__(self, name: str):  # config, set_attn_implementation, ...: the wrapped LM's
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "lm":
                raise
            return getattr(self.lm, name)

    def forward(self, **kwargs):
        out = self.lm(**kwargs)
        out.logits[..., self.interval_id] += 1e4
        return out


def silence(model: StreamVLM) -> None:
    """Bias the interval logit of ``model`` so that it stays silent (frame steps only: a random
    model would speak at every frame)."""
    model.language_model = _IntervalBias(model.language_model, model.token_ids.silence_id)


class Feeder:
    """Feeds ids and frame embeddings to one DynamicCache (the baselines), counting calls and tokens."""

    def __init__(self, model: StreamVLM) -> None:
        from transformers import DynamicCache

        self.model = model
        self.cache = DynamicCache()
        self.calls = self.tokens = 0

    def feed(self, ids: list[int], frame: Tensor | None = None) -> Tensor:
        """Append ``ids`` then ``frame [T, D]``; the logits ``[V]`` at the last position."""
        model = self.model
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


def timed(name: str, frames: Tensor, step: Callable[[int], None], finish: Callable[[], tuple]) -> Result:
    """``step(i)`` for every frame under a :class:`Meter`; ``finish()`` -> (tokens, calls, KV MiB, replies)."""
    meter = Meter(frames.device.type)
    start = time.perf_counter()
    for i in tqdm(range(len(frames)), desc=name, leave=False, unit="frame"):
        step(i)
        meter.sample()
    if meter.cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens, calls, kv_mib, replies = finish()
    n = len(frames)
    growth = meter.peak_mib()
    return Result(name, n / elapsed, growth, kv_mib, tokens / n, calls / n, replies, meter.total_mib())


# ---------------------------------------------------------------------------- methods on one stream
def encoded_frames(model: StreamVLM, count: int) -> tuple[Tensor, float]:
    """``count`` frames ``[count, T, D]`` (random uint8 images at the tower's resolution, encoded
    in batches of 8; random embeddings without a tower) and the encoding speed in frames/s."""
    from ..engine.assistant import encode_images

    side = model.frame_encoder.image_size if model.frame_encoder is not None else 32
    images = torch.randint(0, 256, (count, side, side, 3), dtype=torch.uint8)
    sync = syncer(model.device.type)
    start = time.perf_counter()
    if model.frame_encoder is not None:
        frames = torch.cat([encode_images(model, images[i: i + 8]) for i in range(0, count, 8)])
    else:
        frames = torch.randn(count, model.config.tokens_per_frame, model.config.llm_hidden_size)
    sync()
    speed = count / (time.perf_counter() - start)
    return frames.to(device=model.device, dtype=model.dtype), speed


def streaming(model: StreamVLM, frames: Tensor) -> Result:
    """The engine itself: one cache, a decision per frame, replies only when they fire."""
    engine = resolve_stream(model, StreamOptions(kv_budget=0)).engine()
    warm = engine.new_session()  # first calls allocate
    for i in range(min(len(frames), 2)):
        warm.push_frame(frames[i], float(i))
    del warm
    session = engine.new_session()
    replies = [0]

    def step(i: int) -> None:
        replies[0] += sum(e.role == "assistant" for e in session.push_frame(frames[i], i / 2))

    result = timed("streaming", frames, step,
                   lambda: (session.tokens_fed, session.llm_calls, cache_mib(session.cache), replies[0]))
    session.reset()  # free its cache before the next method
    return result


def dialogue(name: str, model: StreamVLM, layout: LayoutIds, frames: Tensor, text_tokens: int) -> Result:
    """An assistant turn after every frame: the frame, the reply prompt, ``text_tokens`` decoded
    tokens (the last one eos, fed with the next frame)."""
    feeder = Feeder(model)

    def step(i: int) -> None:
        prefix = list(layout.start) if i == 0 else [layout.eos_id] + list(layout.stream_open)
        feeder.feed(prefix, frames[i])
        logits = feeder.feed(list(layout.reply_open_after_stream))
        for _ in range(text_tokens - 1):  # the first token comes from the prompt's call
            logits[layout.eos_id] = -float("inf")
            feeder.feed([int(logits.argmax())])

    return timed(name, frames, step, lambda: (feeder.tokens, feeder.calls, cache_mib(feeder.cache), len(frames)))


def no_cache(model: StreamVLM, layout: LayoutIds, frames: Tensor) -> Result:
    """The streaming context re-run in full at every frame."""
    counts = {"tokens": 0, "calls": 0}

    def step(i: int) -> None:
        ids = list(layout.start)
        for f in range(i + 1):
            if f:
                ids.append(layout.interval_id)
            ids += [layout.frame_id] * layout.tokens_per_frame
        embeds = model.build_inputs_embeds(torch.tensor([ids], device=model.device), frames[: i + 1])
        model.language_model(inputs_embeds=embeds, use_cache=False, logits_to_keep=1)
        counts["tokens"] += len(ids)
        counts["calls"] += 1

    return timed("no-cache", frames, step, lambda: (counts["tokens"], counts["calls"], 0.0, 0))


@torch.inference_mode()
def compare_methods(model: StreamVLM, names: Sequence[str], count: int, *, text_tokens: int) -> dict[str, Any]:
    """``names`` (streaming, per-frame, interleaved, no-cache) over the same ``count`` frames, and
    the speed of frame encoding alone; ``text_tokens``: tokens per frame of interleaved."""
    from ..engine.layout import LayoutIds

    layout = LayoutIds.from_model(model)
    frames, encode_fps = encoded_frames(model, count)
    runs: dict[str, Callable[[], Result]] = {
        "streaming": lambda: streaming(model, frames),
        "per-frame": lambda: dialogue("per-frame", model, layout, frames, 1),
        "interleaved": lambda: dialogue("interleaved", model, layout, frames, text_tokens),
        "no-cache": lambda: no_cache(model, layout, frames),
    }
    results = {name: run() for name, run in runs.items() if name in names}
    ratios = {f"streaming/{other}": results["streaming"].frames_per_s / results[other].frames_per_s
              for other in ("per-frame", "interleaved", "no-cache") if "streaming" in results and other in results}
    return {"frames": count, "frame_encoding_fps": encode_fps, "methods": [asdict(r) for r in results.values()],
            "ratios": ratios}


# ---------------------------------------------------------------------------- the frame step
@torch.inference_mode()
def direct_overhead(model: StreamVLM, count: int) -> dict[str, Any]:
    """One silent stream: ``push_frame`` against the same forward called directly on the language
    model with a DynamicCache (the interval token and the frame, its positions; no session
    bookkeeping), frame by frame on the same frames and cache lengths, alternating which goes first."""
    from transformers import DynamicCache

    sync = syncer(model.device.type)
    engine = resolve_stream(model, StreamOptions(kv_budget=0)).engine()
    layout = engine.layout
    warm = 2
    frames = random_frames(model, count + warm + 1, torch.Generator().manual_seed(1))
    session = engine.new_session()
    session.push_frame(frames[0], 0.0)
    cache = DynamicCache()
    lm = model.language_model
    start_embeds = model.build_inputs_embeds(
        torch.tensor([list(layout.start) + [layout.frame_id] * layout.tokens_per_frame], device=model.device),
        frames[:1])
    lm(inputs_embeds=start_embeds, position_ids=torch.arange(start_embeds.shape[1], device=model.device)[None],
       cache=cache, use_cache=True, logits_to_keep=1)
    interval = None
    if layout.interval_id is not None:
        interval = model.embed_tokens(torch.tensor([[layout.interval_id]], device=model.device))

    def direct_step(frame: Tensor) -> None:
        embeds = torch.cat([interval, frame[None]], dim=1) if interval is not None else frame[None]
        begin = cache.get_seq_length()
        positions = torch.arange(begin, begin + embeds.shape[1], device=model.device)[None]
        lm(inputs_embeds=embeds, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)

    times: dict[str, list[float]] = {"push_frame": [], "direct": []}
    for i in range(1, count + warm + 1):
        for name in (("push_frame", "direct") if i % 2 else ("direct", "push_frame")):
            sync()
            t0 = time.perf_counter()
            if name == "push_frame":
                session.push_frame(frames[i], i / 2)
            else:
                direct_step(frames[i])
            sync()
            if i > warm:
                times[name].append(time.perf_counter() - t0)
    assert session.kv_length == cache.get_seq_length(), (session.kv_length, cache.get_seq_length())
    out: dict[str, Any] = {"frames": count, "kv_tokens": session.kv_length}
    for name, values in times.items():
        out[name] = {"ms_per_frame": 1e3 * sum(values) / len(values), "p50_ms": 1e3 * percentile(values, 0.5),
                     "frames_per_s": len(values) / sum(values)}
    out["overhead"] = out["push_frame"]["ms_per_frame"] / out["direct"]["ms_per_frame"]
    out["overhead_p50"] = out["push_frame"]["p50_ms"] / out["direct"]["p50_ms"]
    return out


@torch.inference_mode()
def sessions_speed(model: StreamVLM, counts: Sequence[int], frames: int) -> list[dict[str, Any]]:
    """For each N of ``counts``: N streams of ``frames`` random frames, advanced by the batched step
    and by the sequential loop: aggregate frames/s, p50/p99 per-frame latency, the speedup."""
    from ..engine.batch import push_frames

    engine = resolve_stream(model, StreamOptions(kv_budget=0)).engine()
    sync = syncer(model.device.type)
    generator = torch.Generator().manual_seed(0)
    warm = [engine.new_session() for _ in range(2)]  # first calls allocate
    frame = random_frames(model, 1, generator)[0]
    for i in range(2):
        push_frames(warm, [frame, frame], [float(i), float(i)])
    del warm
    rows = []
    for n in counts:
        if model.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        streams = [random_frames(model, frames, generator) for _ in range(n)]
        row: dict[str, Any] = {"sessions": n, "frames_per_session": frames}
        for mode in ("batched", "sequential"):
            sessions = [engine.new_session() for _ in range(n)]
            latencies: list[float] = []
            replies = 0
            sync()
            start = time.perf_counter()
            for i in range(frames):
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
            row[mode] = {"frames_per_s": n * frames / elapsed, "p50_ms": 1e3 * percentile(latencies, 0.5),
                         "p99_ms": 1e3 * percentile(latencies, 0.99), "replies": replies}
            del sessions
        row["speedup"] = row["batched"]["frames_per_s"] / row["sequential"]["frames_per_s"]
        if model.device.type == "cuda":
            row["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        rows.append(row)
    return rows


@torch.inference_mode()
def length_costs(model: StreamVLM, lengths: Sequence[int], count: int, kv_budget: int) -> dict[str, Any]:
    """Per-frame cost of one silent stream against the tokens fed so far (``count`` frames timed at
    each of ``lengths``), unbounded and bounded by ``kv_budget`` (0: unbounded only, the policy
    narrate and serve use); and the time spent in the KV cache's ``update`` (the append) alone."""
    sync = syncer(model.device.type)
    modes = [("unbounded", resolve_stream(model, StreamOptions(kv_budget=0)))]
    if kv_budget:
        modes.append((f"bounded {kv_budget}", resolve_stream(model, StreamOptions(kv_budget=kv_budget))))
    generator = torch.Generator().manual_seed(2)
    out: dict[str, Any] = {"frames_per_length": count, "kv_budget": kv_budget, "modes": {}}
    for label, setup in modes:
        policy = setup.kv_policy
        chunk = 512 if policy is None else min(512, policy.window_tokens)
        frames = random_frames(model, count + 1, generator)
        rows = grow_and_time(setup.engine().new_session(), frames, sorted(set(lengths)), chunk, generator, sync)
        first, first_p50 = rows[0]["ms_per_frame"], rows[0]["p50_ms"]
        for row in rows:
            row["ratio_to_first"] = row["ms_per_frame"] / first
            row["p50_ratio_to_first"] = row["p50_ms"] / first_p50
        out["modes"][label] = rows
    return out


def grow_and_time(session: StreamSession, frames: Tensor, lengths: list[int], chunk: int,
                  generator: torch.Generator, sync: Callable[[], None]) -> list[dict[str, Any]]:
    """Grow ``session`` to each length in turn (random embeddings fed in chunks through its own
    ``feed``) and time ``len(frames) - 1`` frames there, then as many again with the append timed."""
    model = session.model
    count = len(frames) - 1
    clock = [0.0]

    def push(frame: Tensor) -> float:
        sync()
        t0 = time.perf_counter()
        session.push_frame(frame, clock[0])
        sync()
        clock[0] += 0.5
        return time.perf_counter() - t0

    push(frames[0])  # the session start
    push(frames[1])  # warm-up
    rows = []
    for length in lengths:
        while session.tokens_fed < length:
            size = min(chunk, length - session.tokens_fed)
            noise = torch.randn(size, model.config.llm_hidden_size, generator=generator)
            session.feed([], noise.to(device=model.device, dtype=model.dtype))
        cached = session.kv_length
        times = [push(frames[1 + i]) for i in range(count)]
        append = append_ms(session, lambda: push(frames[1]), count, sync)
        rows.append({"length": length, "kv_tokens": cached,
                     "ms_per_frame": 1e3 * sum(times) / len(times), "p50_ms": 1e3 * percentile(times, 0.5),
                     "append_ms_per_frame": append})
    return rows


def append_ms(session: StreamSession, push: Callable[[], float], count: int,
              sync: Callable[[], None]) -> float | None:
    """Milliseconds per frame spent inside the session cache's ``update`` (every layer's append),
    over ``count`` more frames; None when the cache has no ``update`` the model calls."""
    cache = session.cache
    original = getattr(cache, "update", None)
    if original is None:
        return None
    spent = [0.0]

    def timed_update(*args, **kwargs):
        sync()
        t0 = time.perf_counter()
        result = original(*args, **kwargs)
        sync()
        spent[0] += time.perf_counter() - t0
        return result

    cache.update = timed_update
    try:
        for _ in range(count):
            push()
    finally:
        del cache.update
    return 1e3 * spent[0] / count if spent[0] else None


# ---------------------------------------------------------------------------- end to end
def video_paths(names: Sequence[str]) -> list[Path]:
    """The video files named (folders: their videos, sorted); UserError for a missing one."""
    from ..errors import UserError

    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise UserError(f"--videos {name}: no such file or folder")
    return paths


def end_to_end(model: StreamVLM, videos: Sequence[str]) -> list[VideoResult]:
    """Each video through the real pipeline at the model's fps, asked to narrate at 0 s (a damaged
    video is reported and skipped)."""
    from ..engine.narration import NARRATE_INSTRUCTION, open_for
    from ..engine.options import TimedQuery
    from ..engine.pipeline import StreamPipeline
    from ..errors import UserError

    setup = resolve_stream(model, StreamOptions(kv_budget=0), GenerationConfig(max_new_tokens=32))
    results = []
    for path in video_paths(videos):
        assistant = setup.assistant()
        try:
            source = open_for(setup, str(path))
        except UserError as exc:  # a damaged sample is reported, not fatal
            print(f"skipping {path.name}: {exc}")
            continue
        with source:
            pipeline = StreamPipeline(assistant, source, queries=[TimedQuery(0.0, NARRATE_INSTRUCTION)])
            replies = sum(e.role == "assistant" for step in pipeline for e in step.events)
            stats, skipped = pipeline.stats, source.stats.skipped_corrupt
        wall = stats.wall_seconds
        seconds = stats.video_time + 1 / setup.fps
        results.append(VideoResult(path.name, seconds, stats.frames, wall, stats.frames / wall,
                                   seconds / wall, replies, skipped))
    return results
