"""``streamvlm pretrain-tower WORLD --out DIR``: pretrain a small vision tower on a synthetic world.

The tower's architecture and frame-token recipe come from a training config's
``model.config.vision`` (default: the ``tiny-synth`` recipe), so the pretrained tower drops into
that recipe with ``model.config.vision.name_or_path=DIR model.config.vision.tower_config=null``.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, DirectoryPath

from ..outputs import check_output
from ..settings import Arg, settings
from ..train.config import TowerPretrainOptions


def _world(path: Path) -> Path:
    if not (path / "world.json").is_file():
        raise ValueError(f"{path} is not a synthetic world (no world.json); make one with `streamvlm synth`")
    return path


World = Annotated[DirectoryPath, AfterValidator(_world)]


@settings
class Options:
    """Options of ``streamvlm pretrain-tower``."""

    world: Annotated[World, Arg(positional=True, metavar="WORLD")]
    """A folder written by `streamvlm synth`."""
    out: Path
    """Frame-encoder folder to write."""
    heldout: World | None = None
    """Another synthetic world: report per-label accuracy on it."""
    recipe: str = "tiny-synth"
    """Training config (file or shipped recipe) whose model.config.vision is pretrained."""
    tower: TowerPretrainOptions = field(default_factory=TowerPretrainOptions)
    """Pretraining."""
    no_progress: bool = False
    """Hide the progress bars."""

    def __post_init__(self) -> None:
        check_output(self.out, name="--out", folder=True, inputs=[self.world, self.heldout])


def run(options: Options) -> int:
    from ..train.config import recipe_vision
    from ..train.tower_pretrain import pretrain_tower

    vision = recipe_vision(options.recipe)
    report = pretrain_tower(vision, options.world, options.out, heldout_world=options.heldout, options=options.tower,
                            progress=not options.no_progress)
    print(f"tower saved to {options.out} ({report['frames']} frames, {report['steps']} steps, "
          f"{report['minutes']:.1f} min, final loss {report['final_loss']:.3f})")
    for name, acc in report.get("heldout_accuracy", {}).items():
        print(f"  held-out {name:<14} {100 * acc:5.1f}%")
    return 0
