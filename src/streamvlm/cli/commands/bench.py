"""`streamvlm bench`: streaming vs per-frame dialogue vs interleaved vs no-cache, side by side.

All methods run on the same frame embeddings and the same model, one after the other:

* streaming: the :class:`~streamvlm.engine.StreamEngine` (one cache, a decision per frame,
  replies only when they fire);
* per-frame dialogue: an assistant turn after every frame: the frame is fed, then the turn is
  generated (``]\\nAssistant:`` prompt, one decoded token that is eos), i.e. two LLM calls and the
  template tokens on every frame;
* interleaved: a narration-length text (``--text-tokens``, default 10 with its eos) is generated
  after every frame;
* no cache: the whole streaming context is re-run at every frame;
* direct: the streaming frame step called directly on the language model (no session
  bookkeeping), interleaved with ``push_frame``: the per-frame overhead.

Also, in the same run: ``--sessions`` (the batched step over N sessions against the sequential
loop), ``--lengths`` (per-frame cost and KV append time against stream length, unbounded and
bounded). Every report carries the thread settings used (:mod:`streamvlm.threads`). On CUDA every
timing synchronises the device and memory is the allocator's peak.

Random-weight presets would speak at every frame; their interval logit is biased so they stay
silent, as a trained model does on most frames (the replies fired are reported).
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from ...engine.options import KVBudget
from ...model.loading import ModelSource
from ...settings import Arg, settings

MethodName = Literal["streaming", "per-frame", "interleaved", "no-cache", "direct"]
METHODS: tuple[str, ...] = ("streaming", "per-frame", "interleaved", "no-cache", "direct")


@settings
class Options:
    """Options of ``streamvlm bench``."""

    model: ModelSource = field(default_factory=ModelSource)
    """The model (default: the embedded one), unless --preset names random weights."""
    preset: Literal["tiny", "8b"] | None = None
    """Random weights instead of --model: tiny (a 4-layer LM of width 256) or 8b (VideoLLM-online-8B
    shapes, for a GPU)."""
    frames: Annotated[int, Field(ge=1, le=1_000_000)] = 64
    """Frames per method (one stream: e.g. 1200 for 10 minutes at 2 frames/s)."""
    methods: Annotated[list[MethodName], Arg(nargs="*", metavar="METHOD")] = \
        field(default_factory=lambda: list(METHODS))
    """One-stream methods compared, side by side: streaming, per-frame, interleaved, no-cache, and
    direct (the streaming frame step called directly on the language model, without the session's
    bookkeeping, interleaved frame by frame with push_frame: the per-frame overhead); --methods
    with no name runs none of them (only --sessions / --lengths)."""
    text_tokens: Annotated[int, Field(ge=1, le=4096)] = 10
    """Tokens generated per frame by interleaved, eos included (10: a narration; the embedded model's
    narration replies average 9.6)."""
    force: bool = False
    """Run the 8b preset on a CPU anyway."""
    json: bool = False
    """Print one JSON object instead of tables."""
    videos: Annotated[list[str], Arg(nargs="+", metavar="PATH")] = field(default_factory=list)
    """Also run end to end (decoding, encoding and the LLM in the pipeline) on these video files or
    folders, e.g. ../shared/data/videos."""
    sessions: Annotated[list[Annotated[int, Field(ge=1, le=1024)]], Arg(nargs="+", metavar="N")] = \
        field(default_factory=list)
    """Also: for each N (e.g. 1 4 16 64), N streams of --session-frames frames each, advanced by the
    batched step (one forward for all N) and then by the sequential loop (one push_frame each);
    prints the aggregate frames/s of both, the speedup and the p50/p99 per-frame latency (a frame's
    latency is its step's). The frames are random embeddings and the model is kept silent (its
    interval logit biased), so what is measured is the frame step itself, not reply decoding.
    With --serve: the concurrent streams of each load run (default 4)."""
    batch_sessions: Annotated[list[Annotated[int, Field(ge=1, le=1024)]], Arg(nargs="+", metavar="N")] = \
        field(default_factory=list)
    """Same as --sessions (its former name)."""
    session_frames: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Frames per session in --sessions (default: --frames, at most 64)."""
    lengths: Annotated[list[Annotated[int, Field(ge=1, le=10_000_000)]], Arg(nargs="+", metavar="TOKENS")] = \
        field(default_factory=list)
    """Also: per-frame cost against stream length, e.g. 1000 2000 4000 8000 16000 tokens fed: one
    silent stream is grown to each length (random embeddings prefilled in chunks), then
    --length-frames frames are pushed and timed; unbounded, and bounded by --kv-budget. Prints
    ms/frame, its ratio to the first length, and the time of the KV-cache append alone."""
    length_frames: Annotated[int, Field(ge=1, le=100_000)] = 16
    """Frames timed at each --lengths length."""
    kv_budget: KVBudget = 2048
    """With --lengths: the KV budget of the bounded runs, in tokens (the session start kept as the
    attention sink + the recent window, as narrate --kv-budget); 0: unbounded only."""
    serve: bool = False
    """Instead: a bounded load run of streamvlm serve on 127.0.0.1 (an ephemeral port) for each
    --sessions N: N WebSocket clients stream frames in real time for --seconds; prints sessions held,
    aggregate frames/s, p50/p99 per-frame latency and memory per session."""
    seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """With --serve: how long each stream sends frames."""

    def __post_init__(self) -> None:
        if self.batch_sessions:  # the former name: one list
            self.sessions = list(self.sessions) + [n for n in self.batch_sessions if n not in self.sessions]
            self.batch_sessions = []


@dataclass
class Result:
    method: str
    frames_per_s: float
    peak_memory_mib: float
    kv_mib: float
    tokens_per_frame: float
    llm_calls_per_frame: float
    replies: int = 0
    peak_total_mib: float = 0.0
    """CUDA: the allocator's peak, weights included; CPU: the process's peak RSS."""


def _build_model(options: Options, torch):
    """The model to measure, and whether its weights are random."""
    from ...device import resolve_device, resolve_dtype
    from ...errors import UserError
    from ...model.loading import load_model
    from ...model.presets import tiny_config, train_tokenizer, videollm_online_8b_config
    from ...model.vlm import StreamVLM

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
    # Built in its dtype on its device. The 8B shapes' values do not matter (the model is kept
    # silent): a cheap fill instead of a random draw per weight (minutes on a CPU).
    model = StreamVLM.from_config(config, tokenizer, dtype=dtype, device=device,
                                  init="cheap" if options.preset == "8b" else "full")
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

    def total_mib(self) -> float:
        return self.peak / 2**20


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
    growth = meter.peak_mib()
    return Result(name, n / elapsed, growth, kv_mib, tokens / n, calls / n, replies, meter.total_mib())


def _syncer(torch, device: str) -> Callable[[], None]:
    """Waits for the device's queued work (a no-op on a CPU), so a timer measures the work itself."""
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(options: Options) -> int:
    import torch

    from ...device import resolve_device
    from ...model.loading import apply_threads

    threads = apply_threads(options.model, resolve_device(options.model.device))
    model, random_weights = _build_model(options, torch)
    if random_weights:
        _silence(model, torch)
    report = {"model": options.preset or options.model.model or "default", "device": model.device.type,
              "dtype": str(model.dtype).removeprefix("torch."), "threads": threads.as_dict(),
              "random_weights": random_weights}
    if options.serve:
        return _serve_load(options, model, report)
    one_stream = [m for m in options.methods if m != "direct"]
    if one_stream:
        report.update(_methods(options, model, one_stream))
    if not random_weights and ("direct" in options.methods or options.sessions or options.lengths):
        _silence(model, torch)  # kept silent from here on: frame steps only
    if "direct" in options.methods:
        report["direct"] = _direct(options, model)
    if options.sessions:
        report["sessions"] = _sessions_bench(options, model)
        report["batch_sessions"] = report["sessions"]  # its former name
    if options.lengths:
        report["lengths"] = _lengths_bench(options, model)
    if options.json:
        print(json.dumps(report))
    else:
        _print_report(options, report)
    return 0


def _methods(options: Options, model, names: list[str]) -> dict:
    """Streaming vs per-frame dialogue vs interleaved vs no cache on the same frames, and frame
    encoding alone; end to end on --videos."""
    import torch

    from ...engine.assistant import encode_images
    from ...engine.layout import LayoutIds
    from ...engine.options import GenerationConfig
    from ...engine.session import StreamEngine

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
        del images

        if "streaming" in names:
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
                                  lambda: (session.tokens_fed, session.llm_calls, _cache_mib(session.cache),
                                           replies[0])))
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

        if "per-frame" in names:
            results.append(dialogue("per-frame", text_tokens=1))
        if "interleaved" in names:
            results.append(dialogue("interleaved", text_tokens=options.text_tokens))

        if "no-cache" in names:
            # the streaming context re-run in full at every frame
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
    by_name = {r.method: r for r in results}
    ratios = {}
    for other in ("per-frame", "interleaved", "no-cache"):
        if "streaming" in by_name and other in by_name:
            ratios[f"streaming/{other}"] = by_name["streaming"].frames_per_s / by_name[other].frames_per_s
    return {"frames": n, "frame_encoding_fps": encode_fps, "methods": [asdict(r) for r in results],
            "ratios": ratios, "end_to_end": [asdict(v) for v in end_to_end]}


def _random_frames(model, count: int, generator) -> Any:
    """``count`` random frames ``[count, T, D]`` on the model's device and dtype."""
    import torch

    shape = (count, model.config.tokens_per_frame, model.config.llm_hidden_size)
    return torch.randn(shape, generator=generator).to(device=model.device, dtype=model.dtype)


def _direct(options: Options, model) -> dict:
    """One silent stream: ``push_frame`` against the same forward called directly on the language
    model with a DynamicCache (the interval token and the frame, its positions; no session
    bookkeeping), frame by frame on the same frames and cache lengths, alternating which goes first."""
    import torch
    from transformers import DynamicCache

    from ...engine.options import GenerationConfig
    from ...engine.session import StreamEngine

    sync = _syncer(torch, model.device.type)
    engine = StreamEngine(model, GenerationConfig())
    layout = engine.layout
    n = options.frames
    warm = 2
    with torch.inference_mode():
        frames = _random_frames(model, n + warm + 1, torch.Generator().manual_seed(1))
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

        def direct_step(frame) -> None:
            embeds = torch.cat([interval, frame[None]], dim=1) if interval is not None else frame[None]
            begin = cache.get_seq_length()
            positions = torch.arange(begin, begin + embeds.shape[1], device=model.device)[None]
            lm(inputs_embeds=embeds, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)

        times: dict[str, list[float]] = {"push_frame": [], "direct": []}
        for i in range(1, n + warm + 1):
            order = ("push_frame", "direct") if i % 2 else ("direct", "push_frame")
            for name in order:
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
    out = {"frames": n, "kv_tokens": session.kv_length}
    for name, values in times.items():
        out[name] = {"ms_per_frame": 1e3 * sum(values) / len(values), "p50_ms": 1e3 * _percentile(values, 0.5),
                     "frames_per_s": len(values) / sum(values)}
    out["overhead"] = out["push_frame"]["ms_per_frame"] / out["direct"]["ms_per_frame"]
    out["overhead_p50"] = out["push_frame"]["p50_ms"] / out["direct"]["p50_ms"]
    return out


def _sessions_bench(options: Options, model) -> list[dict]:
    """``--sessions``: the batched step against the sequential loop, per session count."""
    import torch

    from ...engine.batch import push_frames
    from ...engine.options import GenerationConfig
    from ...engine.session import StreamEngine

    engine = StreamEngine(model, GenerationConfig())
    sync = _syncer(torch, model.device.type)
    frames = options.session_frames or min(options.frames, 64)
    generator = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        warm = [engine.new_session() for _ in range(2)]  # first calls allocate
        frame = _random_frames(model, 1, generator)[0]
        for i in range(2):
            push_frames(warm, [frame, frame], [float(i), float(i)])
        del warm
        for n in options.sessions:
            if model.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            streams = [_random_frames(model, frames, generator) for _ in range(n)]
            row = {"sessions": n, "frames_per_session": frames}
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
                row[mode] = {"frames_per_s": n * frames / elapsed,
                             "p50_ms": 1e3 * _percentile(latencies, 0.5),
                             "p99_ms": 1e3 * _percentile(latencies, 0.99), "replies": replies}
                del sessions
            row["speedup"] = row["batched"]["frames_per_s"] / row["sequential"]["frames_per_s"]
            if model.device.type == "cuda":
                row["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
            rows.append(row)
    return rows


def _lengths_bench(options: Options, model) -> dict:
    """``--lengths``: per-frame cost of one silent stream against the tokens fed so far, unbounded
    and bounded; and the time spent in the KV cache's ``update`` (the append) alone."""
    import torch

    from ...engine.kv_policy import SinkWindowPolicy
    from ...engine.layout import LayoutIds
    from ...engine.options import GenerationConfig
    from ...engine.session import StreamEngine

    sync = _syncer(torch, model.device.type)
    modes: list[tuple[str, Any]] = [("unbounded", None)]
    if options.kv_budget:
        try:  # the policy narrate and serve use
            from ...engine.kv_policy import stream_policy
        except ImportError:
            sink = options.kv_budget // 8
            policy = SinkWindowPolicy(sink_tokens=sink, window_tokens=options.kv_budget - sink)
        else:
            policy = stream_policy(model, options.kv_budget, len(LayoutIds.from_model(model).start))
        modes.append((f"bounded {options.kv_budget}", policy))
    lengths = sorted(set(options.lengths))
    count = options.length_frames
    generator = torch.Generator().manual_seed(2)
    out: dict = {"frames_per_length": count, "kv_budget": options.kv_budget, "modes": {}}
    with torch.inference_mode():
        for label, policy in modes:
            engine = StreamEngine(model, GenerationConfig(), kv_policy=policy)
            chunk = 512 if policy is None else min(512, policy.window_tokens)
            frames = _random_frames(model, count + 1, generator)
            rows = _grow_and_time(engine.new_session(), frames, lengths, chunk, generator, sync)
            first = rows[0]["ms_per_frame"]
            first_p50 = rows[0]["p50_ms"]
            for row in rows:
                row["ratio_to_first"] = row["ms_per_frame"] / first
                row["p50_ratio_to_first"] = row["p50_ms"] / first_p50
            out["modes"][label] = rows
    return out


def _grow_and_time(session, frames, lengths: list[int], chunk: int, generator, sync: Callable[[], None]) -> list[dict]:
    """Grow ``session`` to each length in turn (random embeddings fed in chunks through its own
    forward) and time ``len(frames) - 1`` frames there, then as many again with the append timed."""
    import torch

    model = session.model
    count = len(frames) - 1
    clock = [0.0]

    def push(frame) -> float:
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
        append = _append_ms(session, lambda: push(frames[1]), count, sync)
        rows.append({"length": length, "kv_tokens": cached,
                     "ms_per_frame": 1e3 * sum(times) / len(times), "p50_ms": 1e3 * _percentile(times, 0.5),
                     "append_ms_per_frame": append})
    return rows


def _append_ms(session, push: Callable[[], float], count: int, sync: Callable[[], None]) -> float | None:
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

    from ...engine.assistant import LiveAssistant
    from ...engine.narration import NARRATE_INSTRUCTION
    from ...engine.options import GenerationConfig, TimedQuery
    from ...engine.pipeline import StreamPipeline
    from ...errors import UserError
    from ...video import open_source

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
    for path in paths:
        assistant = LiveAssistant(model, GenerationConfig(max_new_tokens=32))
        try:
            source = open_source(path, fps=fps, fit=model.frame_encoder.fit)
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


def _print_report(options: Options, report: dict) -> None:
    threads = report["threads"]
    print(f"model {report['model']} on {report['device']} ({report['dtype']}); threads: torch "
          f"{threads['torch_threads']} (interop {threads['interop_threads']}), decoder {threads['decoder_threads']}, "
          f"{threads['cpus']} CPUs usable ({threads['origin']})")
    if "methods" in report:
        _print_methods(report)
    if "direct" in report:
        d = report["direct"]
        print(f"\none stream, silent frames ({d['frames']} frames, {d['kv_tokens']} tokens cached at the end): "
              f"push_frame {d['push_frame']['ms_per_frame']:.2f} ms/frame, the same forward called directly "
              f"{d['direct']['ms_per_frame']:.2f} ms/frame: overhead {d['overhead']:.2f}x "
              f"(p50 {d['overhead_p50']:.2f}x)")
    if "sessions" in report:
        rows = report["sessions"]
        print(f"\nsessions: batched step vs sequential push_frame, {rows[0]['frames_per_session']} frames per session")
        header = (f"{'sessions':>8} {'mode':<11} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'replies':>8}")
        print(header)
        print("-" * len(header))
        for row in rows:
            for mode in ("batched", "sequential"):
                r = row[mode]
                print(f"{row['sessions']:>8} {mode:<11} {r['frames_per_s']:>9.1f} {r['p50_ms']:>8.2f} "
                      f"{r['p99_ms']:>8.2f} {r['replies']:>8}")
            peak = f", peak GPU memory {row['peak_memory_mib'] / 1024:.2f} GiB" if "peak_memory_mib" in row else ""
            print(f"{'':>8} batched/sequential: {row['speedup']:.2f}x{peak}")
    if "lengths" in report:
        lengths = report["lengths"]
        print(f"\nper-frame cost against stream length ({lengths['frames_per_length']} frames timed at each):")
        header = (f"{'mode':<16} {'tokens fed':>10} {'cached':>8} {'ms/frame':>9} {'x first':>8} {'p50 ms':>8} "
                  f"{'x first':>8} {'append ms':>10}")
        print(header)
        print("-" * len(header))
        for mode, rows in lengths["modes"].items():
            for r in rows:
                append = "-" if r["append_ms_per_frame"] is None else f"{r['append_ms_per_frame']:.3f}"
                print(f"{mode:<16} {r['length']:>10} {r['kv_tokens']:>8} {r['ms_per_frame']:>9.2f} "
                      f"{r['ratio_to_first']:>8.2f} {r['p50_ms']:>8.2f} {r['p50_ratio_to_first']:>8.2f} {append:>10}")


def _print_methods(report: dict) -> None:
    print(f"{report['frames']} frames; frame encoding alone: {report['frame_encoding_fps']:.1f} frames/s")
    header = (f"{'method':<12} {'frames/s':>9} {'peak MiB':>9} {'KV MiB':>8} "
              f"{'tokens/frame':>13} {'LLM calls/frame':>16} {'replies':>8}")
    print(header)
    print("-" * len(header))
    for r in report["methods"]:
        print(f"{r['method']:<12} {r['frames_per_s']:>9.1f} {r['peak_memory_mib']:>9.1f} {r['kv_mib']:>8.2f} "
              f"{r['tokens_per_frame']:>13.1f} {r['llm_calls_per_frame']:>16.1f} {r['replies']:>8}")
    if report["device"] == "cuda":
        for r in report["methods"]:
            print(f"{r['method']}: peak GPU memory {r['peak_total_mib'] / 1024:.2f} GiB (weights included)")
    for name, value in report["ratios"].items():
        print(f"{name}: {value:.2f}x")
    end_to_end = report["end_to_end"]
    if end_to_end:
        print(f"\nend to end (decode + encode + LLM, {report['model']} model, narrating from 0 s):")
        header = (f"{'video':<28} {'seconds':>8} {'frames':>7} {'wall s':>7} "
                  f"{'frames/s':>9} {'x real time':>12} {'replies':>8}")
        print(header)
        print("-" * len(header))
        for v in end_to_end:
            print(f"{v['video']:<28} {v['seconds']:>8.1f} {v['frames']:>7} {v['wall_s']:>7.2f} "
                  f"{v['frames_per_s']:>9.1f} {v['times_real_time']:>12.1f} {v['replies']:>8}")


def _serve_load(options: Options, model, header: dict) -> int:
    from ...errors import UserError

    try:
        from ...serve.loadtest import format_report, load_run
    except ImportError as exc:
        raise UserError(f"bench --serve needs the serve extra ({exc.name} is missing)") from None
    if not options.json:
        threads = header["threads"]
        print(f"model {header['model']} on {header['device']} (torch {threads['torch_threads']} threads, "
              f"decoder {threads['decoder_threads']}, {threads['cpus']} CPUs usable)")
    for sessions in options.sessions or [4]:
        report = load_run(model, sessions=sessions, seconds=options.seconds)
        report.update({k: header[k] for k in ("model", "device", "threads")})
        if options.json:
            print(json.dumps(report))
        else:
            print(format_report(report))
    return 0
