"""``streamvlm build-default``: rebuild the embedded default model from scratch."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path

from ...experiments.default_model import BuildOptions
from ...settings import settings


@settings
class Options:
    """Options of ``streamvlm build-default``."""

    work_dir: Path = Path("runs/default-model")
    """Where the worlds, features and training run go (finished steps are reused)."""
    out: Path | None = None
    """Where the model goes (default: WORK_DIR/model)."""
    install: bool = False
    """Write the model into this installation, replacing the embedded default model (instead of --out)."""
    build: BuildOptions = field(default_factory=BuildOptions)
    """Sizes."""

    def __post_init__(self) -> None:
        if self.install and self.out is not None:
            raise ValueError("give --out or --install, not both")


def run(options: Options) -> int:
    from ...experiments.default_model import build_default_model
    from ...model.default import DEFAULT_MODEL_DIR

    out = DEFAULT_MODEL_DIR if options.install else (options.out or options.work_dir / "model")
    build_default_model(options.work_dir, out, options.build)
    return 0
