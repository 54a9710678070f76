"""Building the embedded default model (:mod:`streamvlm.model.default`) from scratch.

:func:`build_default_model` runs the library's pipeline steps (synth -> refine -> convert ->
pretrain-tower -> encode -> align -> train tiny-synth over the frozen tower's features,
:mod:`streamvlm.experiments.steps`) and saves a ``save_pretrained`` folder; see
``docs/default-model.md``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

from pydantic import Field

from ..errors import UserError
from ..settings import PositiveInt, settings


@settings
class BuildOptions:
    """How the default model is built. The defaults are the shipped model's."""

    videos: Annotated[int, Field(ge=2, le=100_000)] = 480
    """Training videos of the synthetic world (60 s each, 64 px)."""
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 1
    """World seed of the training videos; held-out videos use seed + 1."""
    heldout_videos: Annotated[int, Field(ge=1, le=100_000)] = 16
    """Held-out videos (evaluated after training)."""
    max_steps: PositiveInt = 600
    """Optimizer steps of the tiny-synth recipe over features (about 1.9 s each on 2 CPU cores)."""
    tower_epochs: PositiveInt = 3
    """Passes of the vision-tower pretraining over the training world's frames (with --tower-layouts 0)."""
    tower_layouts: Annotated[int, Field(ge=0, le=10_000_000)] = 43_200
    """Pretrain the tower on this many freshly rendered videos (new table layouts every step;
    held-out colour of the object in hand: 75% for 3 epochs over the training world, 85% with
    21,600, more with 43,200, docs/default-model.md); 0: --tower-epochs over the training world."""
    duration: Annotated[float, Field(ge=4, le=3600)] = 60.0
    """Seconds per synthetic video."""
    size: Annotated[int, Field(ge=32, le=1024, multiple_of=2)] = 64
    """Frame side of the synthetic videos in pixels."""
    live_fraction: Annotated[float, Field(ge=0, le=1)] = 0.15
    """Share of the training videos that are live-like streams (several tasks with idle stretches
    of seconds to minutes, --live-duration long; see docs/synthetic-world.md); 0: one-task clips."""
    live_duration: Annotated[float, Field(ge=4, le=3600)] = 180.0
    """Seconds per live-like training video. Each becomes conversations as long as the video (up
    to 5 minutes of narration, the whole video for live chat): 10-minute ones (1,200 frames,
    about 13k tokens) made training steps take 30-80 s on one CPU thread."""
    idle_max: Annotated[float, Field(ge=3, le=3600)] = 120.0
    """Longest idle stretch of the live-like training videos, in seconds."""
    align_steps: Annotated[int, Field(ge=0, le=1_000_000)] = 300
    """Steps of the connector-alignment stage before the streaming one (batches of 64 frame ->
    narration samples of the training world, docs/default-model.md); 0: none."""
    idle_start: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Share of the training narration dialogues asked to narrate at their start, before the
    first narration (acknowledged, then silent until it), as a stream is asked at 0 s."""
    questions: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Share of the training narration dialogues also trained with their video's live-chat
    questions asked along the way (answered at once, the narration going on around them), as
    ``demo`` and the live service ask; 0: none."""


def build_default_model(work_dir: str | Path, out_dir: str | Path, options: BuildOptions | None = None,
                        *, progress: bool = True) -> Path:
    """Generate the synthetic world, train the tiny-synth recipe on it over a pretrained frozen
    tower, and save the model to ``out_dir`` (replaced only once the model is complete). Returns
    ``out_dir``. Every step prints its own progress and resumes what an earlier call finished."""
    from ..outputs import check_output
    from ..train.state import latest_checkpoint
    from . import steps

    opt = options or BuildOptions()
    work, out = Path(work_dir), Path(out_dir)
    check_output(out, name="--out", folder=True)
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    from ..data.synth.spec import LiveOptions

    live = LiveOptions(live_fraction=opt.live_fraction, live_duration=opt.live_duration, idle_max=opt.idle_max) \
        if opt.live_fraction else None
    train_world = steps.make_world(work / "world-train", opt.videos, opt.seed, "train", duration=opt.duration,
                                   size=opt.size, live=live)
    heldout_world = steps.make_world(work / "world-heldout", opt.heldout_videos, opt.seed + 1, "test",
                                     duration=opt.duration, size=opt.size)
    train_file = work / "train.jsonl"
    steps.mix_lines(steps.world_conversations(train_world, opt.seed, livechat_split="train", idle_start=opt.idle_start,
                                              questions=opt.questions, progress=progress), train_file, opt.seed)
    steps.world_conversations(heldout_world, opt.seed + 1, livechat_split="test", progress=progress)
    tower = steps.frozen_tower(train_world, heldout_world, work / "tower", epochs=opt.tower_epochs,
                               fresh_layouts=opt.tower_layouts, progress=progress)
    features = steps.extract_features(tower, train_world, work / "features-train", progress=progress)
    steps.extract_features(tower, heldout_world, work / "features-heldout", progress=progress)
    run = work / "run"
    model = steps.frozen_tower_overrides(tower, features)
    if opt.align_steps:
        aligned = steps.aligned_model(train_world, features, tower, train_file, work / "align", steps=opt.align_steps)
        model = steps.aligned_overrides(aligned, features)
    steps.train_run("tiny-synth", [f"data.train={train_file}", "data.val=null", *model, f"output_dir={run}",
                                   f"optim.max_steps={opt.max_steps}", "save_every=100", "resume=true"])
    final = latest_checkpoint(run)
    if final is None:
        raise UserError(f"{run}: training wrote no checkpoint")
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(final, staging, ignore=shutil.ignore_patterns("trainer_state.pt", "*.pt"))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    print(f"default model saved to {out} ({(time.monotonic() - start) / 60:.1f} min); evaluate it with: "
          f"streamvlm eval {heldout_world / 'narration.jsonl'} --features {work / 'features-heldout'} --model {out}")
    return out
