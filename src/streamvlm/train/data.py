"""Training datasets: conversation JSONL + frame features (or raw videos) -> :class:`Sample`.

:func:`build_dataset` uses the project's ``streamvlm.data.dataset.StreamingDataset`` when it is
importable (features only) and otherwise the minimal reader below: it parses the conversation
JSONL strictly (errors name file, record and field), then loads each sample's frames at
``start + i / fps`` from ``FEATURES_DIR/<video>.safetensors`` (tensor ``frame_tokens [N, T, D]``,
metadata ``fps``) or decodes them from ``VIDEOS_ROOT/<video>`` with PyAV. The data method
(:mod:`streamvlm.train.transforms`) is applied to the turns before rendering.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..collate import Sample
from ..conversation import ConversationRenderer, RenderedConversation, Turn, turns_from_dicts
from ..errors import ConversationError, DataError, VideoError
from .config import DataSection
from .transforms import Transform, get_transform


@dataclass(frozen=True)
class ConversationRecord:
    """One line of a conversation JSONL file."""

    id: str
    video: str
    fps: float
    start: float
    turns: list[Turn]

    @property
    def num_frames(self) -> int:
        return sum(t.num_frames for t in self.turns if t.role == "stream")

    def frame_times(self) -> list[float]:
        """Video time of every frame, in seconds: ``start + i / fps``."""
        return [self.start + i / self.fps for i in range(self.num_frames)]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_conversations(file: str | Path, max_samples: int | None = None) -> list[ConversationRecord]:
    """Parse a conversation JSONL file; a malformed line raises DataError (file, line, field)."""
    file = Path(file)
    records = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read ({exc})", file=str(file)) from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = dict(file=str(file), record=f"line {lineno}")
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", **where) from None
        if not isinstance(data, dict):
            raise DataError("expected a JSON object", **where)
        if data.get("version") != 1:
            raise DataError(f"unsupported version {data.get('version')!r} (expected 1)", field="version", **where)
        for name, ok in (("id", isinstance(data.get("id"), str)), ("video", isinstance(data.get("video"), str)),
                         ("fps", _number(data.get("fps")) and data.get("fps", 0) > 0),
                         ("start", _number(data.get("start", 0.0)) and data.get("start", 0.0) >= 0),
                         ("conversation", isinstance(data.get("conversation"), list))):
            if not ok:
                raise DataError(f"missing or invalid value {data.get(name)!r}", field=name, **where)
        video = data["video"]
        if Path(video).is_absolute() or ".." in Path(video).parts:
            raise DataError(f"video path {video!r} must be relative to the data root and stay inside it",
                            field="video", **where)
        try:
            turns = turns_from_dicts(data["conversation"])
        except ConversationError as exc:
            raise DataError(str(exc), field="conversation", **where) from None
        records.append(ConversationRecord(data["id"], video, float(data["fps"]), float(data.get("start", 0.0)), turns))
        if max_samples is not None and len(records) >= max_samples:
            break
    if not records:
        raise DataError("no conversations", file=str(file))
    return records


def training_texts(records: Sequence[ConversationRecord]) -> list[str]:
    """Every turn's text (for training a tokenizer on the corpus)."""
    return [t.content for r in records for t in r.turns if t.content]


def _inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing paths that escape ``root`` (through ``..`` or symlinks)."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DataError(f"path {relative!r} escapes the data root {root}", field="video")
    return path


class TransformedRenderer:
    """A renderer that applies a conversation transform (a data method) before rendering."""

    def __init__(self, renderer: ConversationRenderer, transform: Transform) -> None:
        self.renderer = renderer
        self.transform = transform

    def __getattr__(self, name: str) -> Any:
        return getattr(self.renderer, name)

    def render(self, turns: Sequence[Turn]) -> RenderedConversation:
        return self.renderer.render(self.transform(list(turns)))


class ConversationDataset(Dataset):
    """Conversations rendered to token ids, with their frames from ``load_frames(record)``."""

    def __init__(self, records: Sequence[ConversationRecord], renderer: ConversationRenderer | TransformedRenderer,
                 load_frames: Callable[[ConversationRecord], Tensor], source: str) -> None:
        self.records = list(records)
        self.renderer = renderer
        self.load_frames = load_frames
        self.source = source

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        frames = self.load_frames(record)
        return Sample(self.renderer.render(record.turns), frames, key=record.id)


class FeatureLoader:
    """Frame tokens ``[N, T, D]`` of a record from ``FEATURES_DIR/<video>.safetensors``."""

    def __init__(self, features_dir: str | Path, source: str) -> None:
        self.root = Path(features_dir)
        self.source = source

    def file(self, record: ConversationRecord) -> Path:
        return _inside(self.root, record.video + ".safetensors")

    def __call__(self, record: ConversationRecord) -> Tensor:
        file = self.file(record)
        where = dict(file=self.source, record=record.id)
        if not file.is_file():
            raise DataError(f"no features file {file} (run `streamvlm encode` first)", field="video", **where)
        try:
            with safe_open(str(file), framework="pt") as f:
                tokens = f.get_tensor("frame_tokens")
                fps = float((f.metadata() or {}).get("fps", record.fps))
        except (SafetensorError, KeyError) as exc:
            raise DataError(f"unreadable features file {file} ({exc})", field="video", **where) from None
        index = [round(t * fps) for t in record.frame_times()]
        if index and index[-1] >= tokens.shape[0]:
            raise DataError(f"needs frame {index[-1]} at {fps} fps but {file} holds {tokens.shape[0]} frames",
                            field="conversation", **where)
        return tokens[index].float()


class VideoLoader:
    """Normalised pixels ``[N, 3, S, S]`` of a record, decoded from ``VIDEOS_ROOT/<video>`` with PyAV
    (the last frame shown at each frame time) and preprocessed by the frame encoder."""

    def __init__(self, videos_root: str | Path, preprocess: Callable[[Tensor], Tensor], source: str) -> None:
        self.root = Path(videos_root)
        self.preprocess = preprocess
        self.source = source

    def __call__(self, record: ConversationRecord) -> Tensor:
        import av

        path = _inside(self.root, record.video)
        times = record.frame_times()
        picked: list[Tensor] = []
        try:
            with av.open(str(path)) as container:
                last = None
                for frame in container.decode(video=0):
                    t = float(frame.time) if frame.time is not None else 0.0
                    while len(picked) < len(times) and last is not None and t > times[len(picked)] + 1e-6:
                        picked.append(last)
                    last = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                    if len(picked) == len(times):
                        break
                while last is not None and len(picked) < len(times):
                    picked.append(last)  # frames past the end repeat the last one
        except (OSError, av.FFmpegError) as exc:
            raise VideoError(f"{path}: cannot decode ({exc})") from None
        if not picked and times:
            raise VideoError(f"{path}: no decodable video frame")
        return self.preprocess(torch.stack(picked)) if picked else torch.empty(0)


def build_dataset(data: DataSection, renderer: ConversationRenderer, split: str = "train",
                  preprocess: Callable[[Tensor], Tensor] | None = None,
                  records: Sequence[ConversationRecord] | None = None) -> Dataset:
    """The dataset of ``data.train`` (or ``data.val`` when ``split="val"``) for ``data.method``.

    ``preprocess`` (the frame encoder's) is needed for raw videos; ``records`` may pass the
    already-parsed JSONL.
    """
    file = data.train if split == "train" else data.val
    wrapped = TransformedRenderer(renderer, get_transform(data.method))
    if data.features is not None:
        try:
            from ..data.dataset import StreamingDataset  # the project's dataset, when present
        except ImportError:
            StreamingDataset = None
        if StreamingDataset is not None:
            dataset = StreamingDataset(file, data.features, wrapped)
            limit = data.max_samples if split == "train" else None
            return Subset(dataset, range(min(limit, len(dataset)))) if limit else dataset
    if records is None:
        records = read_conversations(file, data.max_samples if split == "train" else None)
    if data.features is not None:
        loader = FeatureLoader(data.features, file)
        for record in records:  # fail before training, not at step 1000
            if not loader.file(record).is_file():
                raise DataError(f"no features file {loader.file(record)} (run `streamvlm encode` first)",
                                file=str(file), record=record.id, field="video")
        return ConversationDataset(records, wrapped, loader, str(file))
    if preprocess is None:
        raise DataError("raw videos need the model's frame encoder to preprocess frames", file=str(file))
    return ConversationDataset(records, wrapped, VideoLoader(data.videos, preprocess, str(file)), str(file))
