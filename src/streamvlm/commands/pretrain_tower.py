"""``streamvlm pretrain-tower WORLD --out DIR``: pretrain a small vision tower on a synthetic world.

The tower's architecture and frame-token recipe come from a training config's
``model.config.vision`` (default: the ``tiny-synth`` recipe), so the pretrained tower drops into
that recipe with ``model.config.vision.name_or_path=DIR model.config.vision.tower_config=null``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "pretrain-tower"
HELP = "pretrain a small vision tower on a synthetic world's frames (per-frame object/action labels)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..train.tower_pretrain import TowerPretrainOptions

    d = TowerPretrainOptions()
    p.add_argument("world", type=Path, metavar="WORLD", help="a folder written by `streamvlm synth`")
    p.add_argument("--out", type=Path, required=True, help="frame-encoder folder to write")
    p.add_argument("--heldout", type=Path, default=None, help="another synthetic world: report per-label accuracy on it")
    p.add_argument("--config", default="tiny-synth", help="training config whose model.config.vision is used [tiny-synth]")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the frames [{d.epochs}]")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"frames per step [{d.batch_size}]")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate [{d.lr}]")
    p.add_argument("--fps", type=float, default=d.fps, help=f"frames per second sampled [{d.fps}]")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed [{d.seed}]")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, UserError
    from ..train.config import load_train_config
    from ..train.tower_pretrain import TowerPretrainOptions, pretrain_tower

    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0 or args.fps <= 0:
        raise UserError("--epochs and --batch-size must be >= 1, --lr and --fps > 0")
    for world in (args.world, args.heldout):
        if world is not None and not (world / "world.json").is_file():
            raise UserError(f"{world}: not a synthetic world (no world.json); make one with `streamvlm synth`")
    cfg = load_train_config(args.config)
    model = cfg.model.config
    if model is None or model.vision.tower_config is None:
        raise ConfigError(f"{args.config}: model.config.vision.tower_config is needed (the tower to build)")
    options = TowerPretrainOptions(fps=args.fps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   seed=args.seed)
    report = pretrain_tower(model.vision, args.world, args.out, heldout_world=args.heldout, options=options,
                            progress=not args.no_progress)
    print(f"tower saved to {args.out} ({report['frames']} frames, {report['steps']} steps, "
          f"{report['minutes']:.1f} min, final loss {report['final_loss']:.3f})")
    for name, acc in report.get("heldout_accuracy", {}).items():
        print(f"  held-out {name:<14} {100 * acc:5.1f}%")
    return 0
