"""``streamvlm build-default``: rebuild the embedded default model from scratch."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "build-default"
HELP = "rebuild the embedded default model (synthetic world -> conversations -> tower pretraining -> tiny-synth training)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..default_model import DEFAULT_MODEL_DIR, BuildOptions

    d = BuildOptions()
    p.add_argument("--work-dir", type=Path, default=Path("runs/default-model"), help="where the world and runs go")
    p.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help=f"where the model goes (default: {DEFAULT_MODEL_DIR})")
    p.add_argument("--videos", type=int, default=d.videos, help=f"training videos [{d.videos}]")
    p.add_argument("--seed", type=int, default=d.seed, help=f"world seed [{d.seed}]")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help=f"training steps [{d.max_steps}]")
    p.add_argument("--tower-epochs", type=int, default=d.tower_epochs,
                   help=f"vision-tower pretraining epochs [{d.tower_epochs}]")


def run(args: argparse.Namespace) -> int:
    from ..default_model import BuildOptions, build_default_model
    from ..errors import UserError

    if args.videos < 1 or args.max_steps < 1 or args.tower_epochs < 1:
        raise UserError("--videos, --max-steps and --tower-epochs must be >= 1")
    build_default_model(args.work_dir, args.out, BuildOptions(videos=args.videos, seed=args.seed, max_steps=args.max_steps,
                                                              tower_epochs=args.tower_epochs))
    return 0
