"""``streamvlm encode VIDEOS_DIR --model MODEL_DIR --out FEATURES_DIR``: pre-extract frame tokens.

``MODEL_DIR`` is a StreamVLM checkpoint or a frame-encoder folder (``streamvlm pretrain-tower``).

Shard across processes with ``torchrun --nproc_per_node K -m streamvlm.cli encode ...`` or by setting
``RANK``/``WORLD_SIZE``: rank r takes every WORLD_SIZE-th video. Finished outputs are skipped.
"""

from __future__ import annotations

import argparse
import os

NAME = "encode"
HELP = "Pre-extract frame tokens for every video under a folder (one safetensors file per video)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos_dir", metavar="VIDEOS_DIR", help="data root; every video under it is encoded")
    parser.add_argument("--model", required=True,
                        help="model folder saved by StreamVLM.save_pretrained, or a frame-encoder folder "
                             "written by `streamvlm pretrain-tower`")
    parser.add_argument("--out", required=True, help="features folder (mirrors the video paths, + .safetensors)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second sampled [2]")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per encoder call [32]")
    parser.add_argument("--device", default=None, help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.encode import encode_folder
    from ..errors import ConfigError, UserError
    from ..frame_encoder import is_frame_encoder_dir, load_frame_encoder
    from ..model import StreamVLM

    if args.fps <= 0 or args.batch_size < 1:
        raise UserError("--fps must be > 0 and --batch-size >= 1")
    if not os.path.isdir(args.videos_dir):
        raise UserError(f"{args.videos_dir}: no such folder")
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserError("RANK and WORLD_SIZE must be integers") from None
    device = args.device
    if device is None:
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    if is_frame_encoder_dir(args.model):
        encoder = load_frame_encoder(args.model)
    else:
        encoder = StreamVLM.from_pretrained(args.model).frame_encoder
        if encoder is None:
            raise ConfigError(f"{args.model}: this checkpoint has no frame encoder")
    encoder = encoder.to(device).eval()
    report = encode_folder(encoder, args.videos_dir, args.out, fps=args.fps, rank=rank, world_size=world,
                           batch_size=args.batch_size)
    for video, reason in report.failed:
        print(f"failed: {video}: {reason}")
    print(f"rank {rank}/{world}: encoded {len(report.encoded)}, already done {len(report.skipped)}, "
          f"failed {len(report.failed)}")
    return 0
