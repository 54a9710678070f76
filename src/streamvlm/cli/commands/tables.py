"""``streamvlm tables --out DIR``: train and evaluate the paper's ablations on the synthetic world
and write the results report (``DIR/results.md`` unless ``--results`` names another file). See
:mod:`streamvlm.experiments.tables`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

from pydantic import Field

from ...outputs import check_output
from ...settings import PositiveInt, settings


@settings
class Options:
    """Options of ``streamvlm tables``."""

    out: Path
    """Work folder (worlds, runs); finished runs are reused."""
    results: Path | None = None
    """Report to write (default: OUT/results.md; the published one is docs/results.md)."""
    quick: bool = False
    """Seconds-scale pipeline check: 4 videos of 20 s, 3 steps, a micro model (numbers meaningless)."""
    videos: Annotated[int, Field(ge=2, le=100_000)] | None = None
    """Training videos (default 160; --quick 4)."""
    heldout_videos: Annotated[int, Field(ge=1, le=100_000)] | None = None
    """Held-out videos (default 12; --quick 2)."""
    steps: PositiveInt | None = None
    """Optimizer steps per run (default 300; --quick 3)."""
    duration: Annotated[float, Field(ge=4, le=3600)] | None = None
    """Seconds per video (default 60; --quick 20)."""
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Torch CPU threads (default 1: fastest for these small models on a shared machine)."""

    def __post_init__(self) -> None:
        check_output(self.out, name="--out", folder=True)
        if self.results is not None:
            check_output(self.results, name="--results")


def run(options: Options) -> int:
    from ...experiments.runs import TablesOptions
    from ...experiments.tables import run_tables

    sizes = TablesOptions.make_quick() if options.quick else TablesOptions()
    given = {"videos": options.videos, "heldout_videos": options.heldout_videos, "steps": options.steps,
             "duration": options.duration, "threads": options.threads}
    sizes = replace(sizes, **{k: v for k, v in given.items() if v is not None})
    run_tables(options.out, sizes, options.results)
    return 0
