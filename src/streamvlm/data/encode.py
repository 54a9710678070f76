"""Pre-extracting frame tokens for every video under a folder (``streamvlm encode``).

Videos are sharded across processes (rank r of world w takes every w-th video in sorted order),
frames are decoded at the encoder's fit (one resize: :mod:`streamvlm.video.resize`), each file
records how its frames were made (:class:`~streamvlm.model.frame_record.FrameRecord`), outputs that already exist,
are complete and were made by this encoder are skipped (others are encoded again), and a video
that cannot be decoded is counted and reported without stopping the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from ..model.frame_encoder import FrameEncoder
from ..video import open_source
from .features import FeatureInfo, feature_path, read_info, write_features

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


@dataclass
class EncodeReport:
    encoded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Outputs that already existed, complete and made by this encoder."""
    redone: list[str] = field(default_factory=list)
    """Outputs that existed but were made another way (or do not say): encoded again (also in ``encoded``)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """``(video, reason)`` of videos that could not be decoded or held no frame."""


def list_videos(root: str | Path, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[str]:
    """Video files under ``root`` (recursively, symlinks leaving it ignored), as sorted relative paths."""
    root = Path(root).resolve()
    out = []
    for path in root.rglob("*"):
        if path.suffix.lower() in extensions and path.is_file() and path.resolve().is_relative_to(root):
            out.append(path.relative_to(root).as_posix())
    return sorted(out)


def shard(items: Sequence[str], rank: int, world_size: int) -> list[str]:
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"bad shard: rank {rank} of world size {world_size}")
    return list(items[rank::world_size])


@torch.no_grad()
def encode_video(encoder: FrameEncoder, path: Path, fps: float, batch_size: int) -> torch.Tensor:
    """Decode ``path`` at ``fps`` and encode it in chunks -> ``[N, T, D_vision]`` (float32)."""
    outs, chunk = [], []
    with open_source(path, fps=fps, fit=encoder.fit, allow_urls=False) as source:
        for frame in source:
            chunk.append(frame.image)
            if len(chunk) == batch_size:
                outs.append(_encode_chunk(encoder, chunk))
                chunk = []
    if chunk:
        outs.append(_encode_chunk(encoder, chunk))
    if not outs:
        raise ValueError("no decodable frame")
    return torch.cat(outs)


def _encode_chunk(encoder: FrameEncoder, images: list[np.ndarray]) -> torch.Tensor:
    """Same-size uint8 frames ``[H, W, 3]`` -> ``[n, T, D]``; sizes may differ between chunks."""
    groups: list[list[np.ndarray]] = []
    for image in images:
        if groups and groups[-1][0].shape == image.shape:
            groups[-1].append(image)
        else:
            groups.append([image])
    device = encoder.mean.device
    return torch.cat([encoder(encoder.preprocess(torch.from_numpy(np.stack(g)).to(device))).float().cpu()
                      for g in groups])


def encode_folder(encoder: FrameEncoder, videos_root: str | Path, out_dir: str | Path, *, fps: float,
                  rank: int = 0, world_size: int = 1, batch_size: int = 32, progress: bool = True) -> EncodeReport:
    """Encode this rank's share of the videos under ``videos_root`` into ``out_dir``."""
    report = EncodeReport()
    frames = encoder.frame_record()
    videos = shard(list_videos(videos_root), rank, world_size)
    with tqdm(videos, desc=f"encode [rank {rank}/{world_size}]", unit="video", disable=not progress) as bar:
        for video in bar:  # the bar is closed on errors too, before the error line
            target = feature_path(out_dir, video)
            done = _existing(target)
            if done is not None and done.frames is not None and not done.frames.differs(frames):
                report.skipped.append(video)
                continue
            try:
                tokens = encode_video(encoder, Path(videos_root) / video, fps, batch_size)
            except (UserError, ValueError, OSError) as exc:
                report.failed.append((video, str(exc)))
                bar.set_postfix(failed=len(report.failed))
                continue
            write_features(target, tokens, fps, video, frames)
            report.encoded.append(video)
            if done is not None:
                report.redone.append(video)
    return report


def _existing(path: Path) -> FeatureInfo | None:
    """The header of a complete feature file at ``path``, or None."""
    try:
        return read_info(path)
    except UserError:
        return None
