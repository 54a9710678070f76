"""``streamvlm eval-live WORLD_OR_VIDEOS ...``: the model streams synthetic clips as in use (its
own replies in the KV cache, the chosen KV policy) and is scored against the clips' narrations per
time window: narrations answered within 2 s, replies right (text, verb, object), well-formed, false
alarms. See ``docs/long-streams.md`` and :mod:`streamvlm.evaluation.live_eval`."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import DirectoryPath, Field

from ...engine.narration import NARRATE_INSTRUCTION
from ...engine.options import GenerationConfig, StreamOptions
from ...errors import UserError
from ...model.loading import ModelSource
from ...outputs import check_output
from ...settings import Arg, PositiveInt, settings

if TYPE_CHECKING:
    from ...engine.assistant import LiveAssistant
    from ...model.vlm import StreamVLM


@settings
class Options:
    """Options of ``streamvlm eval-live``."""

    sources: Annotated[list[str], Arg(positional=True, metavar="WORLD_OR_VIDEOS", nargs="+")]
    """Synthetic worlds (folders of `streamvlm synth`: every video) or videos of one (WORLD/videos/UID.mp4)."""
    model: ModelSource = field(default_factory=ModelSource)
    """The model."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decisions and replies."""
    stream: StreamOptions = field(default_factory=StreamOptions)
    """Streaming (--kv-budget sets the KV policy evaluated)."""
    window: Annotated[float, Field(gt=0, le=1e6)] = 300.0
    """Seconds of stream time per window of the table and the plot."""
    tolerance: Annotated[float, Field(ge=0, le=60)] = 2.0
    """A narration is answered by a reply at most this many seconds after it."""
    early: Annotated[float, Field(ge=0, le=60)] = 0.0
    """... or at most this many seconds before it (0: the reply is due at the first frame at or after it)."""
    split: Literal["train", "val", "test"] | None = None
    """Only the worlds' videos of this split (default: all)."""
    limit: PositiveInt | None = None
    """Only the first N videos."""
    chain: bool = False
    """Play the videos back to back as one stream (one session), instead of one stream each."""
    zip: bool = False
    """With --chain: one stream per video index instead, chaining the k-th video of every source in
    order (sources: worlds with as many videos each); `A B A --chain --zip` plays, for each k, A's
    k-th video, B's, then A's again, so each stream ends with the clip it began with."""
    features: DirectoryPath | None = None
    """Frame tokens from `streamvlm encode` of the videos (FEATURES/UID.mp4.safetensors, made with the
    model's own frame encoder) instead of decoding and encoding the videos."""
    compare_unbounded: bool = False
    """Also run with an unbounded KV cache and show both."""
    instruction: str = NARRATE_INSTRUCTION
    """Asked at 0 s of each stream ('' asks nothing); its answer is not scored."""
    out: Path | None = None
    """Write the report (per-window counts and rates, confusion, replies) as JSON to this file."""
    plot: Path | None = None
    """Draw the quality-over-time curves (one per KV policy) into this PNG file (needs matplotlib)."""
    confusion_plot: Path | None = None
    """Draw the colour and object confusion of the (first) policy into this PNG file (needs matplotlib)."""
    confusion: bool = False
    """Also print the colour and object confusion tables."""
    no_progress: bool = False
    """Hide the progress bar."""

    def __post_init__(self) -> None:
        from ...evaluation.plots import require_matplotlib

        if self.zip and not self.chain:
            raise UserError("--zip: add --chain (it sets which videos each chained stream plays)")
        if self.stream.realtime:
            raise UserError("--realtime: eval-live streams offline (every frame is scored); drop --realtime")
        for source in self.sources:
            _check_source(Path(source))
        for name, path in (("--out", self.out), ("--plot", self.plot), ("--confusion-plot", self.confusion_plot)):
            if path is not None:
                check_output(path, name=name, inputs=self.sources)
        for name, path in (("--plot", self.plot), ("--confusion-plot", self.confusion_plot)):
            if path is not None:
                if path.suffix.lower() != ".png":
                    raise UserError(f"{name} {path}: name a .png file")
                require_matplotlib(name)


def _world_root(path: Path) -> Path | None:
    if path.is_dir():
        return path if (path / "world.json").is_file() else None
    root = path.parent.parent
    return root if path.parent.name == "videos" and (root / "world.json").is_file() else None


def _check_source(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if _world_root(path) is None:
        raise UserError(f"{path}: not a synthetic world (a folder with world.json, made by `streamvlm synth`) "
                        "or a video of one (WORLD/videos/UID.mp4); live scores need its narrations")


def resolve_streams(options: Options) -> list:
    """What is streamed: a stream per clip of the sources (``--split``, then the first ``--limit``),
    one chained stream of them all (``--chain``), or with ``--zip`` a chained stream per video
    index across the sources (``--limit``: per source)."""
    from ...evaluation.live_eval import Stream

    per_source = _source_clips(options)
    if options.zip:
        per_source = [clips[: options.limit] for clips in per_source]
        if len({len(clips) for clips in per_source}) != 1:
            listed = ", ".join(f"{s} {len(c)}" for s, c in zip(options.sources, per_source))
            raise UserError(f"--zip: every source needs as many videos; they hold {listed}")
        streams = [Stream(tuple(clips)) for clips in zip(*per_source)]
    else:
        clips = [c for clips in per_source for c in clips][: options.limit]
        streams = [Stream(tuple(clips))] if options.chain and clips else [Stream((c,)) for c in clips]
    if not streams:
        raise UserError(f"no videos to evaluate{f' in split {options.split!r}' if options.split else ''}")
    return streams


def _source_clips(options: Options) -> list[list]:
    """Each source's clips (worlds loaded once), filtered by ``--split``."""
    from ...data.synth import SynthWorld
    from ...evaluation.live_eval import world_clips

    worlds: dict[Path, tuple[SynthWorld, dict]] = {}
    out = []
    for source in options.sources:
        path = Path(source)
        root = _world_root(path)
        if root not in worlds:
            world = SynthWorld.load(root)
            worlds[root] = (world, {c.uid: c for c in world_clips(world)})
        world, by_uid = worlds[root]
        if path.is_dir():
            uids = [v.uid for v in world.videos if options.split is None or v.split == options.split]
        else:
            if path.stem not in by_uid:
                raise UserError(f"{path}: no video {path.stem!r} in {root / 'world.json'}")
            uids = [path.stem] if options.split is None or world.video(path.stem).split == options.split else []
        out.append([by_uid[u] for u in uids])
    return out


def _feature_names(clips, features: Path) -> dict[str, str]:
    """uid -> the video's path under the features folder (as `encode` of WORLD/videos or of WORLD names it)."""
    from ...data.features import feature_path

    out = {}
    for clip in clips:
        names = [f"{clip.uid}.mp4", f"videos/{clip.uid}.mp4"]
        out[clip.uid] = next((n for n in names if feature_path(features, n).is_file()), names[0])
    return out


def evaluate(options: Options, model: StreamVLM, *, out=None) -> dict:
    """Every KV policy over every stream: prints a table per policy, returns the report (each run
    keeps its :class:`~streamvlm.evaluation.live_eval.StreamScore` under ``"_score"``)."""
    from ...engine.defaults import resolve_stream
    from ...evaluation import live_eval as live

    out = out if out is not None else sys.stdout
    streams = resolve_streams(options)
    first = resolve_stream(model, options.stream, options.generation)
    fps = first.fps
    report = {"model": options.model.model or "embedded default model", "window": options.window,
              "tolerance": options.tolerance, "early": options.early, "threshold": options.generation.threshold,
              "fps": fps, "chain": options.chain, "instruction": options.instruction.strip(),
              "streams": [{"name": s.name, "videos": [c.uid for c in s.clips], "duration": s.duration,
                           "narrations": len(s.narrations)} for s in streams],
              "runs": []}
    budgets = [options.stream.kv_budget] + ([0] if options.compare_unbounded else [])
    seen = set()
    for budget in budgets:
        setup = first if budget == options.stream.kv_budget else \
            resolve_stream(model, replace(options.stream, kv_budget=budget), options.generation)
        assistant = setup.assistant()
        policy = live.policy_name(assistant)
        if policy in seen:  # --compare-unbounded when the policy is unbounded already
            continue
        seen.add(policy)
        result = _run_policy(options, model, assistant, policy, streams, fps)
        result["kv_budget"] = budget
        flag = "default" if budget is None else budget
        print(f"{policy} (--kv-budget {flag}): {len(streams)} stream{'s' * (len(streams) != 1)}, "
              f"{sum(s.duration for s in streams) / 60:.1f} min, {result['frames']} frames in "
              f"{result['seconds']:.1f}s ({result['fps']:.1f} frames/s); KV cache at most {result['max_kv']} tokens, "
              f"{result['evicted']} evicted", file=out)
        combined = result["_score"]
        print(live.format_table(combined), file=out)
        if live.drift(combined):
            print(live.drift_line(combined), file=out)
        if options.confusion:
            print(live.confusion_table(combined.colours, "colour"), file=out)
            print(live.confusion_table(combined.kinds, "object"), file=out)
        print(file=out, flush=True)
        report["runs"].append(result)
    return report


def _run_policy(options: Options, model: StreamVLM, assistant: LiveAssistant, policy: str, streams: list,
                fps: float) -> dict:
    """One KV policy over every stream (a fresh session each), with a progress bar."""
    from tqdm import tqdm

    from ...engine.narration import frame_fit
    from ...engine.options import TimedQuery
    from ...evaluation import live_eval as live

    features = options.features
    names = _feature_names([c for s in streams for c in s.clips], features) if features is not None else {}
    fit = frame_fit(model) if features is None else None
    queries = [TimedQuery(0.0, options.instruction.strip())] if options.instruction.strip() else []
    consumer = live.FeatureConsumer(assistant) if features is not None else assistant
    total = sum(max(1, math.ceil(s.duration * fps - 1e-6)) for s in streams)
    bar = tqdm(total=total, unit="frame", desc=policy, disable=options.no_progress, file=sys.stderr,
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    scores, per_stream = [], []
    try:
        for stream in streams:
            assistant.reset()
            frames = (live.feature_frames(stream, features, fps, names, model.frame_record())
                      if features is not None
                      else live.stream_frames(stream, fps, fit))

            def on_step(step, run, stream=stream) -> None:
                bar.update(1)
                kv = f", KV {run.max_kv}" if run.max_kv is not None else ""
                bar.set_postfix_str(f"{run.fps:.1f} frames/s, {stream.name} {step.time / 60:.1f} min{kv}",
                                    refresh=False)

            run = live.run_live(consumer, frames, queries, on_step=on_step)
            score = live.score_stream(stream.narrations, run.replies, window=options.window,
                                      tolerance=options.tolerance, early=options.early, end=run.end,
                                      duration=stream.duration, answers=run.answers)
            scores.append(score)
            per_stream.append({"name": stream.name, "frames": run.frames, "seconds": round(run.seconds, 3),
                               "max_kv": run.max_kv, "evicted": run.evicted, "overall": score.overall.as_dict(),
                               "replies": [[r.time, r.text] for r in run.replies],
                               "answers": [[r.time, r.text] for r in run.answers]})
    finally:
        bar.close()
    combined = live.combine(scores)
    frames = sum(p["frames"] for p in per_stream)
    seconds = sum(p["seconds"] for p in per_stream)
    return {"policy": policy, "frames": frames, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 3) if seconds else 0.0,
            "max_kv": max((p["max_kv"] or 0) for p in per_stream),
            "evicted": sum((p["evicted"] or 0) for p in per_stream),
            **combined.as_dict(), "drift": live.drift(combined), "streams": per_stream, "_score": combined}


def run(options: Options) -> int:
    from ...model.loading import load_model
    from ...outputs import write_text_atomic

    model = load_model(options.model, with_vision=options.features is None)
    report = evaluate(options, model)
    scores = [(r["policy"], r.pop("_score")) for r in report["runs"]]
    if options.out is not None:
        write_text_atomic(options.out, json.dumps(report, indent=1, ensure_ascii=False) + "\n", name="--out")
        print(f"wrote {options.out}")
    if options.plot is not None:
        from ...evaluation.plots import plot_quality

        minutes = sum(s["duration"] for s in report["streams"]) / 60
        size = f"{options.window / 60:g}-minute" if options.window % 60 == 0 else f"{options.window:g}-second"
        count = len(report["streams"])
        title = (f"live quality per {size} window ({count} stream{'s' * (count != 1)}, {minutes:.0f} min, "
                 f"theta {options.generation.threshold:g})")
        plot_quality([(p, s.windows) for p, s in scores], options.plot, title=title, tolerance=options.tolerance)
        print(f"wrote {options.plot}")
    if options.confusion_plot is not None:
        from ...evaluation.plots import plot_confusion

        policy, score = scores[0]
        plot_confusion([("colour", score.colours), ("object kind", score.kinds)], options.confusion_plot,
                       title=f"live replies, {policy}")
        print(f"wrote {options.confusion_plot}")
    return 0
