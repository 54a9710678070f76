"""The paper's ablation tables at CPU scale, on the synthetic world.

:func:`run_tables` builds one training world and one held-out world (``streamvlm synth``, rule
refinement, narration + live-chat conversions), pretrains one vision tower on the training world
(``streamvlm pretrain-tower``) and extracts both worlds' features with it (``streamvlm encode``),
trains every ablation run over those features with the tower frozen, on the same data with the
same steps and seed (``streamvlm train tiny-synth* key=value ...``; as in the paper, where SigLIP is
frozen, the runs differ only in how the language model learns), evaluates the held-out narration
conversations (``streamvlm eval --json``; per-frame models through
:mod:`streamvlm.experiments.per_frame_eval`), sweeps theta for the streaming run, and writes the
report (:mod:`streamvlm.experiments.report`).

Every run has its own folder ``OUT/runs/NAME`` and a ``result.json`` written last: a run whose
result exists is skipped, and an interrupted training resumes from its latest checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

MICRO_MODEL = (
    "model.config.llm_config.hidden_size=64", "model.config.llm_config.intermediate_size=128",
    "model.config.llm_config.num_hidden_layers=1", "model.config.llm_config.num_attention_heads=2",
    "model.config.llm_config.num_key_value_heads=1", "tokenizer.vocab_size=512",
)
"""The ``--quick`` model: a 1-layer LM of width 64."""

SMALL_MODEL = (
    "model.config.llm_config.hidden_size=128", "model.config.llm_config.intermediate_size=384",
    "model.config.llm_config.num_hidden_layers=2", "model.config.llm_config.num_attention_heads=4",
    "model.config.llm_config.num_key_value_heads=2",
)
"""The full run's model: tiny-synth with a 2-layer LM of width 128 (tiny-synth's tower, pretrained
once and frozen)."""

THETAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.725, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the ablations."""

    name: str
    recipe: str
    """The shipped recipe it starts from (``tiny-synth`` or a variant)."""
    overrides: tuple[str, ...] = ()
    method: str = "streaming"
    loss: str = "ce"
    tau: float = 1.0


RUNS = (
    RunSpec("streaming", "tiny-synth"),
    RunSpec("interleaved", "tiny-synth-interleaved", method="interleaved"),
    RunSpec("per_frame", "tiny-synth-per-frame", method="per_frame"),
    RunSpec("ohem", "tiny-synth-ohem", loss="ohem"),
    RunSpec("focal", "tiny-synth-focal", loss="focal"),
    RunSpec("tau0.5", "tiny-synth", ("loss.tau=0.5",), tau=0.5),
    RunSpec("tau2", "tiny-synth", ("loss.tau=2",), tau=2.0),
    RunSpec("tau3", "tiny-synth", ("loss.tau=3",), tau=3.0),
)
"""Every distinct run; ``streaming`` (CE, tau = 1) is the reference row of all three tables."""


@dataclass
class TablesOptions:
    """Sizes of the experiment. The defaults are the full run (about 45 minutes on 2 CPU cores)."""

    videos: int = 160
    """Training videos (each gives one narration and one live-chat conversation)."""
    heldout_videos: int = 12
    """Held-out videos (a new world seed, ``--split test``); their narrations are evaluated."""
    steps: int = 300
    """Optimizer steps of every run (4 conversations each: batch 2 x accumulation 2)."""
    tower_epochs: int = 5
    """Passes of the shared tower's pretraining over the training world's frames."""
    duration: float = 60.0
    size: int = 64
    seed: int = 1
    """World seed of the training videos; the held-out world uses ``seed + 1``."""
    threshold: float = 0.725
    """theta of the tables (the upstream demo's)."""
    thetas: tuple[float, ...] = THETAS
    model: tuple[str, ...] = SMALL_MODEL
    """Training-config overrides that size the model (the same for every run)."""
    threads: int = 1
    """torch CPU threads. One is the fastest for these small models on a shared 2-core machine
    (measured: a micro-batch of the full run takes 0.44 s with one thread, 4.4 s with two while
    another process trains). Not part of the settings a work folder is checked against."""
    quick: bool = False

    @classmethod
    def make_quick(cls) -> TablesOptions:
        """Seconds-scale settings for checking the pipeline (not meaningful numbers)."""
        return cls(videos=4, heldout_videos=2, steps=3, duration=20.0, thetas=(0.3, 0.725, 0.95),
                   model=MICRO_MODEL, tower_epochs=1, quick=True)


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


def run_cli(*argv: object, capture: bool = False) -> str:
    """Run ``streamvlm ARGV`` in this process; return its stdout when ``capture`` (else it is shown)."""
    from ..cli import main

    args = [str(a) for a in argv]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer) if capture else contextlib.nullcontext():
        code = main(args)
    if code:
        raise UserError(f"`streamvlm {shlex.join(args)}` failed with exit code {code}")
    return buffer.getvalue()


def cli(ctx: Context, *argv: object) -> None:
    """Log and run ``streamvlm ARGV``."""
    run_cli(*command(ctx, *argv))


def check_settings(ctx: Context) -> None:
    """Record the options in ``OUT/options.json``; refuse to reuse a folder made with other ones
    (its worlds and runs would not match)."""
    from ..typed_json import to_dict

    file = ctx.out / "options.json"
    current = {k: v for k, v in json.loads(json.dumps(to_dict(ctx.options))).items() if k != "threads"}
    if file.is_file():
        before = json.loads(file.read_text(encoding="utf-8"))
        changed = sorted(k for k in (set(before) | set(current)) - {"threads"} if before.get(k) != current.get(k))
        if changed:
            raise UserError(f"{ctx.out}: made with other settings ({', '.join(changed)} differ); "
                            "use another --out or remove that folder")
    else:
        file.write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------- data
def _world(ctx: Context, folder: Path, videos: int, seed: int, split: str) -> None:
    """One synthetic world (made unless an earlier call made it) and its narration conversations."""
    opt = ctx.options
    args = ["synth", "--out", folder, "--videos", videos, "--seed", seed, "--split", split, "--size", opt.size,
            "--duration", opt.duration, "--overwrite"]
    if (folder / "world.json").is_file():
        command(ctx, *args)
    else:
        say(f"synthesising {videos} {split} videos of {opt.duration:g} s in {folder}")
        cli(ctx, *args)
    notes = folder / "annotations" / "narration.json"
    cli(ctx, "data", "refine", notes, "--out", folder / "refined.json", "--backend", "rule")
    cli(ctx, "data", "convert", "narration", notes, "--videos-root", folder / "videos",
        "--refined", folder / "refined.json", "--out", folder / "narration.jsonl", "--seed", seed)


def prepare_data(ctx: Context) -> None:
    """Both worlds and their conversations: ``train.jsonl`` (narration + live chat, shuffled) and
    the held-out narrations."""
    opt = ctx.options
    _world(ctx, ctx.train_world, opt.videos, opt.seed, "train")
    cli(ctx, "data", "convert", "livechat", ctx.train_world / "annotations" / "goalstep_train.json",
        "--videos-root", ctx.train_world / "videos", "--out", ctx.train_world / "livechat.jsonl", "--seed", opt.seed)
    lines = []
    for name in ("narration.jsonl", "livechat.jsonl"):
        lines += (ctx.train_world / name).read_text(encoding="utf-8").splitlines()
    random.Random(opt.seed).shuffle(lines)
    ctx.train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ctx.commands.append(f"# train.jsonl = narration.jsonl + livechat.jsonl, lines shuffled with seed {opt.seed}")
    _world(ctx, ctx.test_world, opt.heldout_videos, opt.seed + 1, "test")
    from ..frame_encoder import is_frame_encoder_dir

    pretrain = ["pretrain-tower", ctx.train_world, "--out", ctx.tower, "--heldout", ctx.test_world,
                "--epochs", opt.tower_epochs, "--no-progress"]
    if is_frame_encoder_dir(ctx.tower):
        command(ctx, *pretrain)
    else:
        say(f"pretraining the shared vision tower ({opt.tower_epochs} epochs)")
        cli(ctx, *pretrain)
    for world, features in ((ctx.train_world, ctx.train_features), (ctx.test_world, ctx.test_features)):
        cli(ctx, "encode", world / "videos", "--model", ctx.tower, "--out", features, "--batch-size", 128)
    say(f"data ready: {len(lines)} training conversations, "
        f"{len(ctx.test_file.read_text(encoding='utf-8').splitlines())} held-out narrations")


# ---------------------------------------------------------------------------- runs
def checkpoint(ctx: Context, spec: RunSpec) -> Path:
    from ..train.state import checkpoint_dir

    return checkpoint_dir(ctx.out / "runs" / spec.name, ctx.options.steps)


def train_args(ctx: Context, spec: RunSpec) -> list[str]:
    """``streamvlm train`` arguments of a run: its recipe, the shared model size, the shared tower's
    features, steps and seed."""
    from ..train.tower_pretrain import frozen_tower_overrides

    run = ctx.out / "runs" / spec.name
    return ["train", spec.recipe, *spec.overrides, *ctx.options.model, f"data.train={ctx.train_file}", "data.val=null",
            *frozen_tower_overrides(ctx.tower, ctx.train_features), f"output_dir={run}",
            f"optim.max_steps={ctx.options.steps}", "save_every=50", "log_every=10", "seed=0", "resume=true"]


def eval_args(ctx: Context, spec: RunSpec, threshold: float | str) -> list[str]:
    return ["eval", str(checkpoint(ctx, spec)), str(ctx.test_file), "--features", str(ctx.test_features),
            "--json", "--threshold", str(threshold), "--no-progress"]


def train_run(ctx: Context, spec: RunSpec) -> float:
    """Train ``spec`` (resuming a partial run); return the training wall time in seconds."""
    timing = ctx.out / "runs" / spec.name / "train_time.json"
    if (checkpoint(ctx, spec) / "trainer_state.pt").is_file() and timing.is_file():
        return float(json.loads(timing.read_text())["seconds"])
    start = time.monotonic()
    run_cli(*train_args(ctx, spec))
    seconds = time.monotonic() - start
    timing.write_text(json.dumps({"seconds": seconds, "load_average": os.getloadavg()}) + "\n")
    return seconds


def tokens_per_conversation(ctx: Context, spec: RunSpec, model) -> float:
    """Mean rendered length of the training conversations in the run's data layout."""
    from ..data.jsonl import read_jsonl
    from ..train.transforms import get_transform

    transform = get_transform(spec.method)
    records = read_jsonl(ctx.train_file)
    return sum(len(model.renderer.render(transform(list(r.conversation))).input_ids) for r in records) / len(records)


def evaluate(ctx: Context, spec: RunSpec, model, threshold: float) -> dict:
    """The streaming metrics of one run on the held-out narrations at ``threshold``: ``streamvlm
    eval --json`` for the streaming layout, :mod:`.per_frame_eval` for per-frame models."""
    if spec.method != "per_frame":
        return json.loads(run_cli(*eval_args(ctx, spec, threshold), capture=True).strip().splitlines()[-1])
    from ..evaluation.data import FeatureReader, read_eval_jsonl
    from .per_frame_eval import evaluate_per_frame_dataset

    items = [i for i in read_eval_jsonl(ctx.test_file) if i.task is None]
    reader = FeatureReader(ctx.test_features, model.config.tokens_per_frame,
                           model.config.vision_hidden_size)
    return {"threshold": threshold,
            **evaluate_per_frame_dataset(model, (reader.stream_sample(i) for i in items), threshold)}


def log_run_commands(ctx: Context, spec: RunSpec, sweep: bool) -> None:
    """The commands of one run, for the report."""
    command(ctx, *train_args(ctx, spec))
    if spec.method == "per_frame":
        ctx.commands.append(f"# {spec.name}: evaluated by streamvlm.experiments.per_frame_eval (P(empty reply) "
                            f"as the silence score) on the same data, features and --threshold {ctx.options.threshold}")
    else:
        command(ctx, *eval_args(ctx, spec, ctx.options.threshold))
    if sweep:
        thetas = " ".join(map(str, ctx.options.thetas))
        ctx.commands.append(f"for T in {thetas}; do " + shlex.join(["streamvlm", *eval_args(ctx, spec, "THETA")])
                            .replace("THETA", "$T") + "; done")


def separation(ctx: Context, spec: RunSpec, model) -> dict:
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
    from ..model import StreamVLM

    log_run_commands(ctx, spec, sweep)
    run = ctx.out / "runs" / spec.name
    done = run / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        if "separation" not in result:
            say(f"{spec.name}: adding the silence separation to {done}")
            model = StreamVLM.from_pretrained(str(checkpoint(ctx, spec)), with_vision=False).eval()
            result["separation"] = separation(ctx, spec, model)
            done.write_text(json.dumps(result, indent=1) + "\n")
        else:
            say(f"{spec.name}: results exist, skipped ({done})")
        return result
    say(f"{spec.name}: training {ctx.options.steps} steps ({spec.recipe} {' '.join(spec.overrides)})".rstrip())
    train_s = train_run(ctx, spec)
    say(f"{spec.name}: trained in {train_s:.0f} s; evaluating")
    model = StreamVLM.from_pretrained(str(checkpoint(ctx, spec)), with_vision=False).eval()
    start = time.monotonic()
    metrics = evaluate(ctx, spec, model, ctx.options.threshold)
    result = {"spec": {**spec.__dict__, "overrides": list(spec.overrides)}, "metrics": metrics, "train_s": train_s,
              "eval_s": time.monotonic() - start, "tokens_per_conversation": tokens_per_conversation(ctx, spec, model),
              "separation": separation(ctx, spec, model)}
    if sweep:
        say(f"{spec.name}: theta sweep over {', '.join(map(str, ctx.options.thetas))}")
        result["sweep"] = [evaluate(ctx, spec, model, theta) for theta in ctx.options.thetas]
    say(f"{spec.name}: " + ", ".join(f"{k}={metrics[k]:.3f}" for k in ("lm_ppl", "time_diff", "fluency", "lm_correctness")
                                     if metrics.get(k) is not None))
    done.write_text(json.dumps(result, indent=1) + "\n")
    return result


def run_tables(out: str | Path, options: TablesOptions | None = None, results_path: str | Path | None = None) -> Path:
    """Run every ablation (resuming finished parts) and write the report; return its path
    (``results_path``, default ``OUT/results.md``)."""
    from .report import write_report

    import torch

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
    calls = json.loads(timing.read_text()) if timing.is_file() else []
    calls.append(elapsed)
    timing.write_text(json.dumps(calls) + "\n")
    target = Path(results_path) if results_path is not None else ctx.out / "results.md"
    write_report(target, results, opt, ctx.commands, calls, str(out))
    say(f"done in {elapsed / 60:.1f} min: {target}")
    return target
