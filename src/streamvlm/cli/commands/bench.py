"""`streamvlm bench`: streaming vs per-frame dialogue vs interleaved vs no-cache, side by side.

All methods run on the same frame embeddings and the same model, one after the other (the
measures themselves: :mod:`streamvlm.experiments.speed`):

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

import json
from dataclasses import asdict, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ...engine.options import KVBudget
from ...model.loading import ModelSource
from ...settings import Arg, settings

if TYPE_CHECKING:
    from ...model.vlm import StreamVLM

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


def _build_model(options: Options) -> tuple[StreamVLM, bool]:
    """The model to measure, and whether its weights are random."""
    import torch

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


def run(options: Options) -> int:
    from ...device import resolve_device
    from ...experiments import speed
    from ...model.loading import apply_threads

    threads = apply_threads(options.model, resolve_device(options.model.device))
    model, random_weights = _build_model(options)
    if random_weights:
        speed.silence(model)
    report = {"model": options.preset or options.model.model or "default", "device": model.device.type,
              "dtype": str(model.dtype).removeprefix("torch."), "threads": threads.as_dict(),
              "random_weights": random_weights}
    if options.serve:
        return _serve_load(options, model, report)
    one_stream = [m for m in options.methods if m != "direct"]
    if one_stream:
        report.update(speed.compare_methods(model, one_stream, options.frames, text_tokens=options.text_tokens))
        report["end_to_end"] = [asdict(v) for v in speed.end_to_end(model, options.videos)] if options.videos else []
    if not random_weights and ("direct" in options.methods or options.sessions or options.lengths):
        speed.silence(model)  # kept silent from here on: frame steps only
    if "direct" in options.methods:
        report["direct"] = speed.direct_overhead(model, options.frames)
    if options.sessions:
        frames = options.session_frames or min(options.frames, 64)
        report["sessions"] = speed.sessions_speed(model, options.sessions, frames)
        report["batch_sessions"] = report["sessions"]  # its former name
    if options.lengths:
        report["lengths"] = speed.length_costs(model, options.lengths, options.length_frames, options.kv_budget)
    if options.json:
        print(json.dumps(report))
    else:
        _print_report(options, report)
    return 0


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


def _serve_load(options: Options, model: StreamVLM, header: dict) -> int:
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
