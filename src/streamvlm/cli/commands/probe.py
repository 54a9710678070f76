"""``streamvlm probe WORLD FEATURES --heldout-world W --heldout-features F``: how much of what the
narrations say (verb, object colour, object kind) a linear probe reads from the frame tokens at
their reply frames; see :mod:`streamvlm.experiments.probe`."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated

from pydantic import DirectoryPath, Field

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
    return 0
