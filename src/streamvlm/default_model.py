"""The embedded default model: a tiny StreamVLM trained by this project's own recipe on the
synthetic world, shipped inside the package so that ``streamvlm demo`` works without any download.

It lives in ``streamvlm/assets/default_model`` (a ``save_pretrained`` folder, a few MB).
:func:`build_default_model` rebuilds it from scratch with the same commands a user would run
(``streamvlm synth`` -> ``data refine`` -> ``data convert`` -> ``pretrain-tower`` -> ``encode`` ->
``train tiny-synth`` over the frozen tower's features); see ``docs/default-model.md``.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default_model"


def load_default_model():
    """Load the embedded default model (CPU, float32, eval mode)."""
    from .checkpoint import load_pretrained

    if not (DEFAULT_MODEL_DIR / "checkpoint.json").is_file():
        raise UserError(
            f"the embedded default model is missing from this installation ({DEFAULT_MODEL_DIR}); "
            "rebuild it with `streamvlm build-default` (about 25 minutes on 2 CPU cores)"
        )
    return load_pretrained(DEFAULT_MODEL_DIR)


@dataclass
class BuildOptions:
    """How the default model is built. The defaults are the shipped model's."""

    videos: int = 480
    """Training videos of the synthetic world (60 s each, 64 px)."""
    seed: int = 1
    """World seed of the training videos; held-out videos use ``seed + 1``."""
    heldout_videos: int = 16
    max_steps: int = 600
    """Optimizer steps of the tiny-synth recipe over features (about 1.4 s each on 2 CPU cores)."""
    tower_epochs: int = 3
    """Passes of the vision-tower pretraining over the training world's frames."""
    duration: float = 60.0
    size: int = 64


def _cli(*argv: str) -> None:
    from .cli import main

    code = main([str(a) for a in argv])
    if code:
        raise UserError(f"`streamvlm {' '.join(map(str, argv))}` failed with exit code {code}")


def _conversations(world: Path, split: str, out: Path, seed: int) -> Path:
    """Narration + live-chat conversations of one synthetic world, shuffled into ``out``."""
    _cli("data", "refine", world / "annotations" / "narration.json", "--out", world / "refined.json", "--backend", "rule")
    _cli("data", "convert", "narration", world / "annotations" / "narration.json", "--videos-root", world / "videos",
         "--refined", world / "refined.json", "--out", world / "narration.jsonl", "--seed", seed)
    _cli("data", "convert", "livechat", world / "annotations" / f"goalstep_{split}.json", "--videos-root",
         world / "videos", "--out", world / "livechat.jsonl", "--seed", seed)
    lines = []
    for name in ("narration.jsonl", "livechat.jsonl"):
        lines += (world / name).read_text(encoding="utf-8").splitlines()
    random.Random(seed).shuffle(lines)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def build_default_model(work_dir: str | Path, out_dir: str | Path = DEFAULT_MODEL_DIR,
                        options: BuildOptions | None = None) -> Path:
    """Generate the synthetic world, train the tiny-synth recipe on it and save the model to
    ``out_dir``. Returns ``out_dir``. Every step prints its own progress."""
    from .frame_encoder import is_frame_encoder_dir
    from .train.tower_pretrain import frozen_tower_overrides

    opt = options or BuildOptions()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    train_world, heldout_world = work / "world-train", work / "world-heldout"
    for folder, n, seed, split in ((train_world, opt.videos, opt.seed, "train"),
                                   (heldout_world, opt.heldout_videos, opt.seed + 1, "test")):
        if not (folder / "world.json").is_file():
            _cli("synth", "--out", folder, "--videos", n, "--seed", seed, "--split", split, "--size", opt.size,
                 "--duration", opt.duration, "--overwrite")
    train_file = _conversations(train_world, "train", work / "train.jsonl", opt.seed)
    _conversations(heldout_world, "test", work / "heldout.jsonl", opt.seed + 1)
    tower, features = work / "tower", work / "features-train"
    if not is_frame_encoder_dir(tower):
        _cli("pretrain-tower", train_world, "--out", tower, "--heldout", heldout_world, "--epochs", opt.tower_epochs)
    _cli("encode", train_world / "videos", "--model", tower, "--out", features, "--batch-size", 128)
    _cli("encode", heldout_world / "videos", "--model", tower, "--out", work / "features-heldout", "--batch-size", 128)
    run = work / "run"
    _cli("train", "tiny-synth", f"data.train={train_file}", "data.val=null", *frozen_tower_overrides(tower, features),
         f"output_dir={run}", f"optim.max_steps={opt.max_steps}", "save_every=100", "resume=true")
    from .train.state import latest_checkpoint

    final = latest_checkpoint(run)
    if final is None:
        raise UserError(f"{run}: training wrote no checkpoint")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(final, out, ignore=shutil.ignore_patterns("trainer_state.pt", "*.pt"))
    print(f"default model saved to {out} ({(time.monotonic() - start) / 60:.1f} min); evaluate it with: "
          f"streamvlm eval {out} {heldout_world / 'narration.jsonl'} --features {work / 'features-heldout'}")
    return out
