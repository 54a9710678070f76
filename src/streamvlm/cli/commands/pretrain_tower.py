"""``streamvlm pretrain-tower WORLD --out DIR``: pretrain a small vision tower on a synthetic world.

The tower's architecture and frame-token recipe come from a training config's
``model.config.vision`` (default: the ``tiny-synth`` recipe), so the pretrained tower drops into
that recipe with ``model.config.vision.name_or_path=DIR model.config.vision.tower_config=null``.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, DirectoryPath, Field

from ...outputs import check_output
from ...settings import Arg, settings
from ...train.config import TowerPretrainOptions

FRESH_LAYOUT_SEED = 1_000_000  # the default of streamvlm.train.tower_pretrain (not imported: keeps --help light)


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
    fresh_layouts: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    """Train on this many freshly planned and rendered videos (new layouts every step, no video
    encoding; WORLD only sets their size and duration) instead of WORLD's videos; 0: WORLD's videos.
    Steps: fresh_layouts * frames_per_layout / batch_size (--epochs unused; --fps only reads --heldout)."""
    frames_per_layout: Annotated[int, Field(ge=1, le=10_000)] = 16
    """Frames rendered per fresh video."""
    layout_seed: Annotated[int, Field(ge=0, lt=2**31)] = FRESH_LAYOUT_SEED
    """World seed of the fresh videos (keep it apart from the seeds of the worlds you evaluate on)."""
    busy_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    """Fraction of each fresh video's frames with something in the hand (default: as they come, about a third)."""
    render_workers: Annotated[int, Field(ge=0, le=64)] = 1
    """Processes rendering fresh frames while the tower trains (0: render between steps)."""
    heldout_every: Annotated[int, Field(ge=0)] = 0
    """Also report held-out accuracy every this many steps (0: only at the end)."""
    no_progress: bool = False
    """Hide the progress bars."""
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Torch CPU threads (default: the CPUs this process may use, from its affinity and CPU quota)."""

    def __post_init__(self) -> None:
        check_output(self.out, name="--out", folder=True, inputs=[self.world, self.heldout])


def run(options: Options) -> int:
    from ...threads import configure_threads
    from ...train.config import recipe_vision
    from ...train.tower_pretrain import FreshLayouts, pretrain_tower

    configure_threads(options.threads, device="cpu", decoding=False)  # the tower pretrains on the CPU
    vision = recipe_vision(options.recipe)
    fresh = None
    if options.fresh_layouts:
        fresh = FreshLayouts.like_world(options.world, options.fresh_layouts, seed=options.layout_seed,
                                        frames_per_video=options.frames_per_layout, busy=options.busy_fraction)
    report = pretrain_tower(vision, options.world, options.out, heldout_world=options.heldout, options=options.tower,
                            fresh=fresh, workers=options.render_workers, heldout_every=options.heldout_every,
                            progress=not options.no_progress)
    print(f"tower saved to {options.out} ({report['frames']} frames, {report['steps']} steps, "
          f"{report['minutes']:.1f} min, final loss {report['final_loss']:.3f})")
    present = report.get("heldout_accuracy_present", {})
    for name, acc in report.get("heldout_accuracy", {}).items():
        print(f"  held-out {name:<14} {100 * acc:5.1f}%  ({100 * present[name]:5.1f}% where not none)")
    return 0
