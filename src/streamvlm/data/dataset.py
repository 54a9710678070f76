"""Training datasets over conversation JSONL files.

:class:`StreamingDataset` pairs each rendered conversation with its pre-extracted frame tokens
(``[N, T, D_vision]``, read lazily by frame range); :class:`RawFrameDataset` decodes the video
instead and returns normalised pixels (``[N, 3, S, S]``) for small runs. Samples that cannot be
loaded (missing or short feature file, undecodable video) are skipped, counted and logged with a
warning, so an epoch completes (RELIABILITY 18).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError, UserError
from ..model.conversation import ConversationRenderer
from ..model.frame_encoder import FrameEncoder
from ..model.frame_record import FrameRecord
from ..video import open_source
from .collate import Batch, Sample, collate
from .features import FeatureStore
from .jsonl import ConversationRecord, check_video_path, read_jsonl

log = logging.getLogger(__name__)


class _ConversationDataset(Dataset, ABC):
    """Shared part: records, rendering, skipping of bad samples (by moving to the next one)."""

    def __init__(self, jsonl_path: str | Path, renderer: ConversationRenderer, *,
                 max_frames: int | None = None) -> None:
        self.path = str(jsonl_path)
        self.records: list[ConversationRecord] = read_jsonl(jsonl_path)
        self.renderer = renderer
        self.max_frames = max_frames
        self.skipped: dict[str, str] = {}
        """Record id -> reason, for samples that could not be loaded."""

    def __len__(self) -> int:
        return len(self.records)

    def frame_range(self, record: ConversationRecord) -> tuple[int, int]:
        first, stop = record.frame_range()
        if self.max_frames is not None and stop - first > self.max_frames:
            raise DataError(f"{stop - first} frames, more than max_frames={self.max_frames}",
                            file=self.path, record=record.id)
        return first, stop

    @abstractmethod
    def load_frames(self, record: ConversationRecord) -> Tensor:
        """The record's frames (``[N, ...]``); raises a UserError when they cannot be loaded."""

    def __getitem__(self, index: int) -> Sample:
        """The sample at ``index``, or the next loadable one when it cannot be loaded."""
        for offset in range(len(self.records)):
            record = self.records[(index + offset) % len(self.records)]
            try:
                frames = self.load_frames(record)
            except UserError as exc:
                if record.id not in self.skipped:
                    self.skipped[record.id] = str(exc)
                    log.warning("skipping sample %s (%d skipped so far): %s", record.id, len(self.skipped), exc)
                continue
            return Sample(self.renderer.render(record.conversation), frames, record.id)
        raise DataError("no sample could be loaded", file=self.path)


class StreamingDataset(_ConversationDataset):
    """Conversations + pre-extracted frame tokens from ``FEATURES_DIR/<video>.safetensors``.

    Frame ``i`` of a conversation is feature frame ``round(start * fps) + i``; the feature file's
    fps must equal the conversation's. With ``frames`` (how the model takes frames), feature files
    made another way are refused here, before any sample is read (a DataError naming both).
    """

    def __init__(self, jsonl_path: str | Path, features_dir: str | Path, renderer: ConversationRenderer,
                 *, max_frames: int | None = None, frames: FrameRecord | None = None) -> None:
        super().__init__(jsonl_path, renderer, max_frames=max_frames)
        self.features_dir = Path(features_dir)
        self.store = FeatureStore(features_dir, renderer.tokens_per_frame, frames=frames)
        self.store.check_all(self.records)

    def load_frames(self, record: ConversationRecord) -> Tensor:
        """``[N, T, D_vision]`` frame tokens of the record."""
        self.frame_range(record)
        return self.store.frames(record)


class RawFrameDataset(_ConversationDataset):
    """Conversations + normalised pixels ``[N, 3, S, S]`` decoded from ``VIDEOS_ROOT/<video>``."""

    def __init__(self, jsonl_path: str | Path, videos_root: str | Path, renderer: ConversationRenderer,
                 encoder: FrameEncoder, *, max_frames: int | None = None) -> None:
        super().__init__(jsonl_path, renderer, max_frames=max_frames)
        self.videos_root = Path(videos_root)
        self.preprocess: Callable[[Tensor], Tensor] = encoder.preprocess
        self.image_size = encoder.image_size
        self.fit = encoder.fit

    def load_frames(self, record: ConversationRecord) -> Tensor:
        first, stop = self.frame_range(record)
        try:
            path = check_video_path(record.video, self.videos_root)
        except ValueError as exc:
            raise DataError(str(exc), file=self.path, record=record.id, field="video") from None
        with open_source(path, fps=record.fps, fit=self.fit, allowed_root=self.videos_root) as source:
            images = [frame.image for frame in islice(source, first, stop)]
        if len(images) < stop - first:
            raise DataError(f"needs frames {first}..{stop - 1} but the video gives {first + len(images)}",
                            file=str(path), record=record.id)
        return torch.cat([self.preprocess(torch.from_numpy(image)) for image in images]) if images else \
            torch.empty(0, 3, self.image_size, self.image_size)


def make_collator(pad_id: int) -> Callable[[Sequence[Sample]], Batch]:
    """A ``collate_fn`` for :class:`torch.utils.data.DataLoader`."""
    def collate_fn(samples: Sequence[Sample]) -> Batch:
        return collate(samples, pad_id)
    return collate_fn
