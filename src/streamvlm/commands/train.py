"""``streamvlm train CONFIG [key=value ...]``: run the training recipe (see docs/training.md)."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train a model from a recipe config (a JSON file or a shipped recipe name), with key=value overrides"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a config JSON file, or a shipped recipe name (e.g. tiny-synth)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, values parsed as JSON when possible: optim.lr=1e-4 data.train=x.jsonl")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from ..train.config import load_train_config

    config = load_train_config(args.config, args.overrides)
    if args.print_config:
        from ..train.recipe import config_summary

        config.validate(check_paths=False)
        print(config_summary(config))
        return 0
    config.validate()  # data paths and values, before any model loads

    from ..train.recipe import train

    train(config)
    return 0
