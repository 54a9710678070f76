"""Frame-feature files: one safetensors file per video (written by ``streamvlm encode``).

``FEATURES_DIR/<video path relative to the data root>.safetensors`` holds the tensor
``frame_tokens [N, T, D_vision]`` (frame n at time n / fps) and string metadata ``fps``,
``num_frames``, ``video``, ``tokens_per_frame`` and ``frames``: how the frames were made (a
:class:`~streamvlm.model.frame_record.FrameRecord` as JSON: resize rule, image size, pixel
normalisation, frame encoder), so that ``eval`` and ``train`` refuse features made another way
than their model takes frames. Files written before that record existed have no ``frames``: they
are accepted with one warning. Files are written to a temporary name and renamed, so a file with
the final name is complete.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..errors import DataError, StreamvlmWarning
from ..model.frame_record import FrameRecord
from ..outputs import follow_umask, os_error

if TYPE_CHECKING:
    from .jsonl import ConversationRecord

TENSOR = "frame_tokens"
SUFFIX = ".safetensors"
FPS_TOLERANCE = 1e-6
@dataclass(frozen=True)
class FeatureInfo:
    fps: float
    num_frames: int
    tokens_per_frame: int
    video: str
    frames: FrameRecord | None = None
    """How the frames were made; None in files written before it was recorded."""


def feature_path(features_dir: str | Path, video: str) -> Path:
    return Path(features_dir) / (video + SUFFIX)


def read_info(path: str | Path) -> FeatureInfo:
    """Header of a feature file; a missing, truncated or inconsistent file is a DataError."""
    file = str(path)
    if not Path(path).is_file():
        raise DataError("feature file missing (run `streamvlm encode`)", file=file)
    try:
        with safe_open(file, framework="pt") as f:
            meta = f.metadata() or {}
            if TENSOR not in f.keys():  # noqa: SIM118 - safe_open handles have no __contains__/__iter__
                raise DataError(f"no tensor '{TENSOR}'", file=file)
            shape = list(f.get_slice(TENSOR).get_shape())
    except SafetensorError as exc:
        raise DataError(f"not a readable safetensors file (truncated or corrupt: {exc})", file=file) from None
    try:
        info = FeatureInfo(float(meta["fps"]), int(meta["num_frames"]), int(meta["tokens_per_frame"]), meta["video"],
                           FrameRecord.from_json(meta["frames"], file) if "frames" in meta else None)
    except (KeyError, ValueError) as exc:
        raise DataError(f"bad or missing metadata ({exc})", file=file, field="metadata") from None
    if not math.isfinite(info.fps) or info.fps <= 0:
        raise DataError(f"fps must be > 0, got {info.fps}", file=file, field="fps")
    if len(shape) != 3 or shape[0] != info.num_frames or shape[1] != info.tokens_per_frame:
        raise DataError(f"tensor shape {shape} disagrees with num_frames={info.num_frames}, "
                        f"tokens_per_frame={info.tokens_per_frame}", file=file, field=TENSOR)
    return info


def is_complete(path: str | Path) -> bool:
    try:
        read_info(path)
    except DataError:
        return False
    return True


def load_frames(path: str | Path, first: int, stop: int) -> Tensor:
    """Frames ``[first, stop)`` -> ``[stop - first, T, D_vision]``, read lazily from the file."""
    with safe_open(str(path), framework="pt") as f:
        return f.get_slice(TENSOR)[first:stop]


def write_features(path: str | Path, frame_tokens: Tensor, fps: float, video: str,
                   frames: FrameRecord | None = None) -> None:
    """Write ``frame_tokens [N, T, D_vision]`` and how its ``frames`` were made, atomically
    (temporary file, then rename), with the mode a new file gets (safetensors itself creates it
    0600). A write that fails (a full disk) raises the OSError naming ``path``, and leaves no
    temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    meta = {"fps": repr(float(fps)), "num_frames": str(frame_tokens.shape[0]),
            "tokens_per_frame": str(frame_tokens.shape[1]), "video": video}
    if frames is not None:
        meta["frames"] = frames.to_json()
    try:
        save_file({TENSOR: frame_tokens.detach().contiguous().cpu()}, str(tmp), metadata=meta)
        follow_umask(tmp)
        tmp.replace(path)
    except SafetensorError as exc:
        tmp.unlink(missing_ok=True)
        raise os_error(exc, path) or exc from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise



_WARNED: set[str] = set()
"""Feature folders already warned about (files without a frame record): one line per folder and process."""


class FeatureStore:
    """The frame tokens of conversations, read from a features folder and checked: the file's fps
    equals the conversation's, it holds every frame the conversation needs, the tokens per frame,
    width and the way frames were made (``frames``: a
    :class:`~streamvlm.model.frame_record.FrameRecord`) fit the model (when given), and the
    values are finite. Frame ``i`` of a conversation is feature frame ``round(start * fps) + i``.
    Files without a frame record are accepted, with one warning."""

    def __init__(self, features_dir: str | Path, tokens_per_frame: int | None = None, width: int | None = None,
                 frames: FrameRecord | None = None) -> None:
        self.dir = Path(features_dir)
        if not self.dir.is_dir():
            raise DataError("features folder not found", file=str(features_dir))
        self.tokens_per_frame = tokens_per_frame
        self.width = width
        self.expected = frames
        """How the model takes frames (None: not checked)."""
        self._infos: dict[str, FeatureInfo] = {}

    def check(self, record: ConversationRecord) -> tuple[Path, FeatureInfo]:
        """The feature file of ``record`` and its header, checked against the record (no tensor read)."""
        path = feature_path(self.dir, record.video)
        if record.video not in self._infos:
            self._infos[record.video] = read_info(path)
        info = self._infos[record.video]
        where = dict(file=str(path), record=record.id)
        if abs(info.fps - record.fps) > FPS_TOLERANCE:
            raise DataError(f"features are at {info.fps} fps, the conversation at {record.fps} fps",
                            field="fps", **where)
        if self.tokens_per_frame is not None and info.tokens_per_frame != self.tokens_per_frame:
            raise DataError(f"{info.tokens_per_frame} tokens per frame, the model uses {self.tokens_per_frame}",
                            field="tokens_per_frame", **where)
        self.check_frames(path, info)
        first, stop = record.frame_range()
        if stop > info.num_frames:
            raise DataError(f"needs frames {first}..{stop - 1} but the file holds {info.num_frames}",
                            field="num_frames", **where)
        return path, info

    def check_frames(self, path: Path, info: FeatureInfo) -> None:
        """Refuse a file whose frames were made otherwise than the model takes them (both named);
        warn once about files that do not say."""
        if self.expected is None:
            return
        if info.frames is None:
            if str(self.dir) not in _WARNED:
                _WARNED.add(str(self.dir))
                warnings.warn(f"{self.dir}: feature files without a record of how their frames were made "
                              f"(written before streamvlm recorded it, e.g. {path.name}); assumed to match the "
                              "model (re-encode with `streamvlm encode` to have them checked)", StreamvlmWarning,
                              stacklevel=3)
            return
        if info.frames.differs(self.expected):
            raise DataError(f"features made with {info.frames.describe()}; the model takes "
                            f"{self.expected.describe()} (re-encode them with `streamvlm encode` and this model)",
                            file=str(path), field="frames")

    def check_all(self, records: list[ConversationRecord]) -> None:
        """:meth:`check_frames` on the feature files of ``records`` that exist (headers only), so a
        run refuses features made another way before it starts; other problems stay per record."""
        for video in dict.fromkeys(r.video for r in records):
            path = feature_path(self.dir, video)
            if path.is_file():
                try:
                    info = read_info(path)
                except DataError:
                    continue
                self.check_frames(path, info)

    def frames(self, record: ConversationRecord) -> Tensor:
        """``[N, T, D_vision]`` frame tokens of ``record`` (see the class doc for the checks)."""
        import torch

        path, _ = self.check(record)
        first, stop = record.frame_range()
        frames = load_frames(path, first, stop)
        where = dict(file=str(path), record=record.id)
        if self.width is not None and frames.shape[-1] != self.width:
            raise DataError(f"features have width {frames.shape[-1]}, the model's connector expects {self.width} "
                            "(features from another vision tower?)", field=TENSOR, **where)
        if frames.is_floating_point() and not bool(torch.isfinite(frames).all()):
            raise DataError("features hold NaN or infinite values (re-encode this video)", field=TENSOR, **where)
        return frames
