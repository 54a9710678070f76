"""``streamvlm synth``: generate the synthetic streaming world (videos + annotations)."""

from __future__ import annotations

import time
from pathlib import Path

from ...data.synth.spec import WorldOptions
from ...outputs import check_output
from ...settings import PositiveInt, settings


@settings
class Options:
    """Options of ``streamvlm synth``."""

    out: Path
    """Output folder (must be empty unless --overwrite)."""
    world: WorldOptions
    """The world."""
    workers: PositiveInt | None = None
    """Processes (default: the number of CPUs)."""
    overwrite: bool = False
    """Replace a world already in --out: the files its world.json names, nothing else (a folder
    without a world is refused)."""

    def __post_init__(self) -> None:
        check_output(self.out, name="--out", folder=True)


def run(options: Options) -> int:
    from ...data.synth import generate_world

    start = time.perf_counter()
    w = options.world
    world = generate_world(options.out, w.num_videos, w.seed, duration=w.duration, size=w.size, fps=w.fps,
                           split=w.split, workers=options.workers, overwrite=options.overwrite, live=w.live)
    counts = ", ".join(f"{s} {len(world.split(s))}" for s in ("train", "val", "test"))
    streams = [v for v in world.videos if v.parts is not None]
    if streams:
        tasks = sum(len(v.parts) for v in streams)
        idle = sum(b - a for v in streams for a, b in v.idle or [])
        counts += (f"; {len(streams)} live-like: {tasks} tasks, {sum(v.duration for v in streams) / 60:.1f} min, "
                   f"{idle / 60:.1f} min in idle stretches")
    print(f"wrote {len(world.videos)} videos ({counts}) to {options.out} in {time.perf_counter() - start:.1f} s")
    return 0
