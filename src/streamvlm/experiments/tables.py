"""The paper's ablation tables at CPU scale, on the synthetic world.

:func:`run_tables` builds one training world and one held-out world (synth, rule refinement,
narration + live-chat conversions), pretrains one vision tower on the training world and extracts
both worlds' features with it, trains every ablation run over those features with the tower
frozen, on the same data with the same steps and seed (the tiny-synth recipes with overrides; as in
the paper, where SigLIP is frozen, the runs differ only in how the language model learns),
evaluates the held-out narration conversations (per-frame models through
:mod:`streamvlm.experiments.per_frame_eval`), sweeps theta for the streaming run, and writes the
report (:mod:`streamvlm.experiments.report`). Each step is a library function
(:mod:`streamvlm.experiments.steps`); the report lists the equivalent ``streamvlm`` commands.

Every run has its own folder ``OUT/runs/NAME`` and a ``result.json`` written last: a run whose
result exists is skipped, and an interrupted training resumes from its latest checkpoint.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..jsonfiles import read_json
from ..outputs import write_text_atomic
from . import steps
from .runs import RUNS, RunSpec, TablesOptions

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM


@dataclass
class Context:
    """Paths and the command log of one :func:`run_tables` call."""

    out: Path
    options: TablesOptions
    commands: list[str] = field(default_factory=list)

    @property
    def train_world(self) -> Path:
        return self.out / "data" / "world-train"

    @property
    def test_world(self) -> Path:
        return self.out / "data" / "world-test"

    @property
    def train_file(self) -> Path:
        return self.out / "data" / "train.jsonl"

    @property
    def test_file(self) -> Path:
        return self.test_world / "narration.jsonl"

    @property
    def tower(self) -> Path:
        return self.out / "data" / "tower"

    @property
    def train_features(self) -> Path:
        return self.out / "data" / "features-train"

    @property
    def test_features(self) -> Path:
        return self.out / "data" / "features-test"


def say(message: str) -> None:
    print(f"[tables {time.strftime('%H:%M:%S')}] {message}", flush=True)


def command(ctx: Context, *argv: object) -> list[str]:
    """Log the command ``streamvlm ARGV`` for the report and return its arguments as strings."""
    args = [str(a) for a in argv]
    ctx.commands.append(shlex.join(["streamvlm", *args]))
    return args


def check_settings(ctx: Context) -> None:
    """Record the options in ``OUT/options.json``; refuse to reuse a folder made with other ones
    (its worlds and runs would not match)."""
    from ..settings import to_dict

    file = ctx.out / "options.json"
    current = {k: v for k, v in to_dict(ctx.options).items() if k != "threads"}
    if file.is_file():
        before = read_json(file, error=UserError)
        changed = sorted(k for k in (set(before) | set(current)) - {"threads"} if before.get(k) != current.get(k))
        if changed:
            raise UserError(f"{ctx.out}: made with other settings ({', '.join(changed)} differ); "
                            "use another --out or remove that folder")
    else:
        write_text_atomic(file, json.dumps(current, indent=1) + "\n")


# ---------------------------------------------------------------------------- data
def _world(ctx: Context, folder: Path, videos: int, seed: int, split: str, livechat: bool) -> list[Path]:
    """One synthetic world (made unless an earlier call made it) and its conversations."""
    opt = ctx.options
    command(ctx, "synth", "--out", folder, "--videos", videos, "--seed", seed, "--split", split, "--size", opt.size,
            "--duration", opt.duration, "--overwrite")
    if not (folder / "world.json").is_file():
        say(f"synthesising {videos} {split} videos of {opt.duration:g} s in {folder}")
    steps.make_world(folder, videos, seed, split, duration=opt.duration, size=opt.size)
    notes = folder / "annotations" / "narration.json"
    command(ctx, "data", "refine", notes, "--out", folder / "refined.json", "--backend", "rule")
    command(ctx, "data", "convert", "narration", notes, "--videos-root", folder / "videos",
            "--refined", folder / "refined.json", "--out", folder / "narration.jsonl", "--seed", seed)
    if livechat:
        command(ctx, "data", "convert", "livechat", folder / "annotations" / f"goalstep_{split}.json",
                "--videos-root", folder / "videos", "--out", folder / "livechat.jsonl", "--seed", seed)
    return steps.world_conversations(folder, seed, livechat_split=split if livechat else None, progress=False)


def prepare_data(ctx: Context) -> None:
    """Both worlds and their conversations: ``train.jsonl`` (narration + live chat, shuffled) and
    the held-out narrations; the shared tower and both worlds' features."""
    opt = ctx.options
    count = steps.mix_lines(_world(ctx, ctx.train_world, opt.videos, opt.seed, "train", livechat=True),
                            ctx.train_file, opt.seed)
    ctx.commands.append(f"# train.jsonl = narration.jsonl + livechat.jsonl, lines shuffled with seed {opt.seed}")
    _world(ctx, ctx.test_world, opt.heldout_videos, opt.seed + 1, "test", livechat=False)
    command(ctx, "pretrain-tower", ctx.train_world, "--out", ctx.tower, "--heldout", ctx.test_world,
            "--epochs", opt.tower_epochs, "--no-progress")
    say(f"pretraining the shared vision tower ({opt.tower_epochs} epochs) unless {ctx.tower} holds it")
    steps.frozen_tower(ctx.train_world, ctx.test_world, ctx.tower, epochs=opt.tower_epochs, progress=False)
    for world, features in ((ctx.train_world, ctx.train_features), (ctx.test_world, ctx.test_features)):
        command(ctx, "encode", world / "videos", "--model", ctx.tower, "--out", features, "--batch-size",
                steps.ENCODE_BATCH)
        steps.extract_features(ctx.tower, world, features, progress=False)
    say(f"data ready: {count} training conversations, "
        f"{len(ctx.test_file.read_text(encoding='utf-8').splitlines())} held-out narrations")


# ---------------------------------------------------------------------------- runs
def checkpoint(ctx: Context, spec: RunSpec) -> Path:
    from ..train.state import checkpoint_dir

    return checkpoint_dir(ctx.out / "runs" / spec.name, ctx.options.steps)


def train_overrides(ctx: Context, spec: RunSpec) -> list[str]:
    """The training-config overrides of a run: the shared model size, the shared tower's features,
    steps and seed."""
    run = ctx.out / "runs" / spec.name
    return [*spec.overrides, *ctx.options.model, f"data.train={ctx.train_file}", "data.val=null",
            *steps.frozen_tower_overrides(ctx.tower, ctx.train_features), f"output_dir={run}",
            f"optim.max_steps={ctx.options.steps}", "save_every=50", "log_every=10", "seed=0", "resume=true"]


def eval_args(ctx: Context, spec: RunSpec, threshold: float | str) -> list[str]:
    """The ``streamvlm eval`` command of a run (for the report)."""
    return ["eval", str(ctx.test_file), "--features", str(ctx.test_features), "--model", str(checkpoint(ctx, spec)),
            "--json", "--threshold", str(threshold), "--no-progress"]


def train_run(ctx: Context, spec: RunSpec) -> float:
    """Train ``spec`` (resuming a partial run); return the training wall time in seconds."""
    timing = ctx.out / "runs" / spec.name / "train_time.json"
    if (checkpoint(ctx, spec) / "trainer_state.pt").is_file() and timing.is_file():
        return float(read_json(timing, error=UserError)["seconds"])
    start = time.monotonic()
    steps.train_run(spec.recipe, train_overrides(ctx, spec))
    seconds = time.monotonic() - start
    write_text_atomic(timing, json.dumps({"seconds": seconds, "load_average": os.getloadavg()}) + "\n")
    return seconds


def tokens_per_conversation(ctx: Context, spec: RunSpec, model: StreamVLM) -> float:
    """Mean rendered length of the training conversations in the run's data layout."""
    from ..data.jsonl import read_jsonl
    from ..train.transforms import get_transform

    transform = get_transform(spec.method)
    records = read_jsonl(ctx.train_file)
    return sum(len(model.renderer.render(transform(list(r.conversation))).input_ids) for r in records) / len(records)


def evaluate(ctx: Context, spec: RunSpec, model: StreamVLM, threshold: float) -> dict:
    """The streaming metrics of one run on the held-out narrations at ``threshold``: what ``streamvlm
    eval`` prints for the streaming layout, :mod:`.per_frame_eval` for per-frame models."""
    if spec.method != "per_frame":
        from ..evaluation.files import EvalSettings, evaluate_file

        return evaluate_file(model, ctx.test_file, ctx.test_features, EvalSettings(threshold=threshold), progress=False)
    from ..evaluation.data import FeatureReader, read_eval_jsonl
    from .per_frame_eval import evaluate_per_frame_dataset

    items = [i for i in read_eval_jsonl(ctx.test_file) if i.task is None]
    reader = FeatureReader(ctx.test_features, model.config.tokens_per_frame,
                           model.config.vision_hidden_size)
    return {"threshold": threshold,
            **evaluate_per_frame_dataset(model, (reader.stream_sample(i) for i in items), threshold)}


def log_run_commands(ctx: Context, spec: RunSpec, sweep: bool) -> None:
    """The commands of one run, for the report."""
    command(ctx, "train", spec.recipe, *train_overrides(ctx, spec))
    if spec.method == "per_frame":
        ctx.commands.append(f"# {spec.name}: evaluated by streamvlm.experiments.per_frame_eval (P(empty reply) "
                            f"as the silence score) on the same data, features and --threshold {ctx.options.threshold}")
    else:
        command(ctx, *eval_args(ctx, spec, ctx.options.threshold))
    if sweep:
        thetas = " ".join(map(str, ctx.options.thetas))
        ctx.commands.append(f"for T in {thetas}; do " + shlex.join(["streamvlm", *eval_args(ctx, spec, "THETA")])
                            .replace("THETA", "$T") + "; done")


def separation(ctx: Context, spec: RunSpec, model: StreamVLM) -> dict:
    """Mean P(silence) at gold-speak vs gold-silent frames of the held-out narrations
    (:mod:`.diagnostics`): did the run learn when to speak, or only how often?"""
    from ..evaluation.data import FeatureReader, read_eval_jsonl
    from .diagnostics import silence_separation

    items = [i for i in read_eval_jsonl(ctx.test_file) if i.task is None]
    reader = FeatureReader(ctx.test_features, model.config.tokens_per_frame,
                           model.config.vision_hidden_size)
    return silence_separation(model, (reader.stream_sample(i) for i in items), spec.method == "per_frame")


def run_one(ctx: Context, spec: RunSpec, sweep: bool) -> dict:
    """Train, encode and evaluate one run (skipped when its ``result.json`` exists; a result from
    an earlier version without the silence separation gets it added, evaluation only)."""
    from ..model.checkpoint import load_pretrained

    log_run_commands(ctx, spec, sweep)
    run = ctx.out / "runs" / spec.name
    done = run / "result.json"
    if done.is_file():
        result = read_json(done, error=UserError)
        if "separation" not in result:
            say(f"{spec.name}: adding the silence separation to {done}")
            model = load_pretrained(checkpoint(ctx, spec), with_vision=False).eval()
            result["separation"] = separation(ctx, spec, model)
            write_text_atomic(done, json.dumps(result, indent=1) + "\n")
        else:
            say(f"{spec.name}: results exist, skipped ({done})")
        return result
    say(f"{spec.name}: training {ctx.options.steps} steps ({spec.recipe} {' '.join(spec.overrides)})".rstrip())
    train_s = train_run(ctx, spec)
    say(f"{spec.name}: trained in {train_s:.0f} s; evaluating")
    model = load_pretrained(checkpoint(ctx, spec), with_vision=False).eval()
    start = time.monotonic()
    metrics = evaluate(ctx, spec, model, ctx.options.threshold)
    result = {"spec": {**spec.__dict__, "overrides": list(spec.overrides)}, "metrics": metrics, "train_s": train_s,
              "eval_s": time.monotonic() - start, "tokens_per_conversation": tokens_per_conversation(ctx, spec, model),
              "separation": separation(ctx, spec, model)}
    if sweep:
        say(f"{spec.name}: theta sweep over {', '.join(map(str, ctx.options.thetas))}")
        result["sweep"] = [evaluate(ctx, spec, model, theta) for theta in ctx.options.thetas]
    say(f"{spec.name}: " + ", ".join(f"{k}={metrics[k]:.3f}"
                                     for k in ("lm_ppl", "time_diff", "fluency", "lm_correctness")
                                     if metrics.get(k) is not None))
    write_text_atomic(done, json.dumps(result, indent=1) + "\n")
    return result


def run_tables(out: str | Path, options: TablesOptions | None = None, results_path: str | Path | None = None) -> Path:
    """Run every ablation (resuming finished parts) and write the report; return its path
    (``results_path``, default ``OUT/results.md``)."""
    import torch

    from .report import write_report

    opt = options or TablesOptions()
    ctx = Context(Path(out), opt)
    ctx.out.mkdir(parents=True, exist_ok=True)
    check_settings(ctx)
    start = time.monotonic()
    threads = torch.get_num_threads()
    torch.set_num_threads(opt.threads)
    try:
        prepare_data(ctx)
        results = {}
        for i, spec in enumerate(RUNS, 1):
            say(f"run {i}/{len(RUNS)}: {spec.name}")
            results[spec.name] = run_one(ctx, spec, sweep=spec.name == "streaming")
    finally:
        torch.set_num_threads(threads)
    elapsed = time.monotonic() - start
    timing = ctx.out / "elapsed.json"
    calls = read_json(timing, error=UserError) if timing.is_file() else []
    calls.append(elapsed)
    write_text_atomic(timing, json.dumps(calls) + "\n")
    target = Path(results_path) if results_path is not None else ctx.out / "results.md"
    write_report(target, results, opt, ctx.commands, calls, str(out))
    say(f"done in {elapsed / 60:.1f} min: {target}")
    return target
