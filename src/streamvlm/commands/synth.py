"""``streamvlm synth``: generate the synthetic streaming world (videos + annotations)."""

from __future__ import annotations

import argparse
import time

NAME = "synth"
HELP = "Generate a synthetic egocentric activity world: h264 videos with Ego4D/COIN-format annotations."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    parser.add_argument("--videos", type=int, required=True, help="number of videos")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per video (default 60)")
    parser.add_argument("--size", type=int, default=96, help="frame side in pixels, even (default 96)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second of the videos (default 8)")
    parser.add_argument("--split", choices=["auto", "train", "val", "test"], default="auto",
                        help="'auto': 80/10/10 by (seed, index); otherwise put every video in this split")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: number of CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace a world already in --out")


def run(args: argparse.Namespace) -> int:
    from ..data.synth import generate_world
    from ..errors import UserError

    if args.workers is not None and args.workers <= 0:
        raise UserError(f"--workers must be positive, got {args.workers}")
    t0 = time.perf_counter()
    world = generate_world(args.out, args.videos, args.seed, duration=args.duration, size=args.size, fps=args.fps,
                           split=args.split, workers=args.workers, overwrite=args.overwrite)
    counts = ", ".join(f"{s} {len(world.split(s))}" for s in ("train", "val", "test"))
    print(f"wrote {len(world.videos)} videos ({counts}) to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
