"""``streamvlm train CONFIG [key=value ...]``: run the training recipe (see docs/training.md)."""

from __future__ import annotations

import sys
from dataclasses import field
from typing import Annotated

from pydantic import Field

from ...settings import Arg, settings

CONFIG_FILE = False
"""CONFIG is the training config itself: no generic ``--config``."""


@settings
class Options:
    """Options of ``streamvlm train``."""

    config: Annotated[str, Arg(positional=True, metavar="CONFIG")]
    """A training config JSON file, or a shipped recipe name (e.g. tiny-synth)."""
    overrides: Annotated[list[str], Arg(positional=True, metavar="key=value", nargs="*")] = field(default_factory=list)
    """Dotted overrides, values parsed as JSON when possible: optim.lr=1e-4 data.train=x.jsonl."""
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Torch CPU threads (default: the CPUs this process may use, its affinity and CPU quota, shared
    among the processes of a torchrun job; at most 4 with a GPU)."""


def resolve(options: Options):
    """The training config named by the options (validated; files not checked)."""
    from ...train.config import load_train_config

    return load_train_config(options.config, options.overrides)


def print_config(options: Options) -> None:
    """``--print-config``: the resolved training config as JSON."""
    from ...settings import dumps

    sys.stdout.write(dumps(resolve(options)))


def run(options: Options) -> int:
    config = resolve(options)
    config.check_paths()  # data files exist, before any model loads

    import torch

    from ...threads import configure_threads
    from ...train.recipe import train

    configure_threads(options.threads, device="cuda" if torch.cuda.is_available() else "cpu", decoding=False)
    train(config)
    return 0
