"""``streamvlm probe WORLD FEATURES --heldout-world W --heldout-features F``: how much of what the
narrations say (verb, object colour, object kind) a linear probe reads from the frame tokens at
their reply frames; see :mod:`streamvlm.experiments.probe`."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated

from pydantic import DirectoryPath, Field

from ...model.loading import ModelSource
from ...settings import Arg, settings


@settings
class Options:
    """Options of ``streamvlm probe``."""

    world: Annotated[DirectoryPath, Arg(positional=True, metavar="WORLD")]
    """A synthetic world (`streamvlm synth`) whose narrations the probe is fitted on."""
    features: Annotated[DirectoryPath, Arg(positional=True, metavar="FEATURES")]
    """Its frame tokens (`streamvlm encode WORLD/videos --out FEATURES`, the model's own frame encoder)."""
    heldout_world: DirectoryPath
    """Another synthetic world, scored."""
    heldout_features: DirectoryPath
    """Its frame tokens, from the same frame encoder."""
    frames: Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1), Arg(nargs="+", metavar="N")] = \
        field(default_factory=lambda: [1, 3])
    """Frames per narration: the reply frame and the ones before it (one probe per value)."""
    steps: Annotated[int, Field(ge=1, le=100_000)] = 300
    """Full-batch optimizer steps of each probe."""
    score_model: bool = False
    """Also score the model (--model, default the embedded one) at the held-out narrations' colour
    word, teacher-forced: how often it names the right colour, and whether it reads it from the
    reply frame (its choice when that frame is swapped for another narration's)."""
    model: ModelSource = field(default_factory=ModelSource)
    """The model scored with --score-model (its frame encoder must be the one of the features)."""


def run(options: Options) -> int:
    from ...experiments.probe import TARGETS, narrated_tokens, probe_report

    head = f"{'frames':<7} {'narrated':<8} {'train':>7} {'held-out':>9} {'majority':>9}"
    lines = []
    for frames in options.frames:
        train = narrated_tokens(options.world, options.features, frames)
        heldout = narrated_tokens(options.heldout_world, options.heldout_features, frames)
        report = probe_report(train, heldout, steps=options.steps)
        for target in TARGETS:
            r = report[target]
            lines.append(f"{frames:<7} {target:<8} {r['train']:>7.1%} {r['heldout']:>9.1%} {r['majority']:>9.1%}")
    print(f"linear probe on the frame tokens at the reply frame of {train.tokens.shape[0]} narrations "
          f"(held-out: {heldout.tokens.shape[0]})")
    print("\n".join([head, *lines]))
    if options.score_model:
        from ...experiments.probe import model_colours
        from ...model.loading import load_model

        said = model_colours(load_model(options.model, with_vision=False), options.heldout_world,
                             options.heldout_features)
        print(f"the model at the colour word of {said.replies} held-out narrations (teacher-forced): right colour "
              f"{said.right:.1%} (first mention {said.first_mention:.1%}, said before {said.said_before:.1%}); "
              f"with the reply frame swapped for another colour's, it names that colour {said.follows_swap:.1%}")
    return 0
