"""``streamvlm tables --out DIR``: train and evaluate the paper's ablations on the synthetic world
and write the results report (``docs/results.md`` by default). See
:mod:`streamvlm.experiments.tables`."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "tables"
HELP = "reproduce the paper's ablation tables (method, loss, tau, theta) at CPU scale on the synthetic world"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="work folder (worlds, runs); finished runs are reused")
    p.add_argument("--results", type=Path, default=Path("docs/results.md"),
                   help="report to write (default docs/results.md)")
    p.add_argument("--videos", type=int, help="training videos (default 160; --quick 4)")
    p.add_argument("--heldout-videos", type=int, help="held-out videos (default 12; --quick 2)")
    p.add_argument("--steps", type=int, help="optimizer steps per run (default 300; --quick 3)")
    p.add_argument("--duration", type=float, help="seconds per video (default 60; --quick 20)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1: fastest for these small models on a shared machine)")
    p.add_argument("--quick", action="store_true",
                   help="seconds-scale pipeline check: 4 videos of 20 s, 3 steps, a micro model (numbers meaningless)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..errors import UserError
    from ..experiments.tables import TablesOptions, run_tables

    options = TablesOptions.make_quick() if args.quick else TablesOptions()
    given = {"videos": args.videos, "heldout_videos": args.heldout_videos, "steps": args.steps,
             "duration": args.duration, "threads": args.threads}
    for name, value in given.items():
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} {value}: must be > 0")
    options = replace(options, **{k: v for k, v in given.items() if v is not None})
    run_tables(args.out, options, args.results)
    return 0
