"""``streamvlm encode VIDEOS_DIR --out FEATURES_DIR [--model MODEL]``: pre-extract frame tokens.

``MODEL`` is a StreamVLM checkpoint, a frame-encoder folder (``streamvlm pretrain-tower``) or a hub
id of either; default: the embedded model's tower.

Shard across processes with ``torchrun --nproc_per_node K -m streamvlm.cli encode ...`` or by setting
``RANK``/``WORLD_SIZE``: rank r takes every WORLD_SIZE-th video. Finished outputs are skipped.
"""

from __future__ import annotations

import os
from dataclasses import field, replace
from pathlib import Path
from typing import Annotated

from pydantic import DirectoryPath, Field

from ...data.convert.timeline import CONVERSATION_FPS
from ...model.loading import ModelSource
from ...outputs import check_output
from ...settings import Arg, Fps, settings


@settings
class Options:
    """Options of ``streamvlm encode``."""

    videos_dir: Annotated[DirectoryPath, Arg(positional=True, metavar="VIDEOS_DIR")]
    """Data root; every video under it is encoded."""
    out: Path
    """Features folder (mirrors the video paths, + .safetensors); finished files made by this frame
    encoder are kept, those made another way are encoded again."""
    model: ModelSource = field(default_factory=ModelSource)
    """The frame encoder: a model, or a frame-encoder folder from `streamvlm pretrain-tower`."""
    fps: Fps = CONVERSATION_FPS
    """Frames per second sampled (the conversations' frame rate)."""
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 32
    """Frames per encoder call."""

    def __post_init__(self) -> None:
        check_output(self.out, name="--out", folder=True, inputs=[self.videos_dir])


def _rank() -> tuple[int, int]:
    from ...errors import UserError

    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"RANK={rank} and WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def run(options: Options) -> int:
    import torch

    from ...data.encode import encode_folder
    from ...model.loading import load_frame_encoder_of

    rank, world = _rank()
    source = options.model
    if source.device == "auto" and torch.cuda.is_available():  # one GPU per torchrun process
        source = replace(source, device=f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
    encoder = load_frame_encoder_of(source)
    report = encode_folder(encoder, options.videos_dir, options.out, fps=options.fps, rank=rank, world_size=world,
                           batch_size=options.batch_size)
    for video, reason in report.failed:
        print(f"failed: {video}: {reason}")
    redone = f" (of which {len(report.redone)} made another way before)" if report.redone else ""
    print(f"rank {rank}/{world}: encoded {len(report.encoded)}{redone}, already done {len(report.skipped)}, "
          f"failed {len(report.failed)}")
    return 0
