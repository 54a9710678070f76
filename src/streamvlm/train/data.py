"""Training datasets for a data method: the project's datasets with a conversation transform.

:func:`build_dataset` returns :class:`streamvlm.data.dataset.StreamingDataset` (pre-extracted
frame tokens ``[N, T, D_vision]``) or :class:`~streamvlm.data.dataset.RawFrameDataset`
(normalised pixels ``[N, 3, S, S]`` decoded from videos) whose renderer applies the data method
(:mod:`streamvlm.train.transforms`) to the turns before rendering. Both yield
:class:`~streamvlm.data.collate.Sample` and skip (and log) samples whose frames cannot be loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset, Subset

from ..data.dataset import RawFrameDataset, StreamingDataset
from ..data.jsonl import ConversationRecord, read_jsonl
from ..errors import ConfigError
from ..model.conversation import ConversationRenderer, RenderedConversation, Turn
from ..model.frame_encoder import FrameEncoder
from ..model.frame_record import FrameRecord
from .config import DataSection
from .transforms import Transform, get_transform


class TransformedRenderer:
    """A renderer that applies a conversation transform (a data method) before rendering."""

    def __init__(self, renderer: ConversationRenderer, transform: Transform) -> None:
        self.renderer = renderer
        self.transform = transform

    def __getattr__(self, name: str) -> Any:
        return getattr(self.renderer, name)

    def render(self, turns: Sequence[Turn]) -> RenderedConversation:
        return self.renderer.render(self.transform(list(turns)))


def read_records(data: DataSection) -> list[ConversationRecord]:
    """The training conversations (validated; errors name file, line and field)."""
    records = read_jsonl(data.train)
    return records[: data.max_samples] if data.max_samples else records


def training_texts(records: Sequence[ConversationRecord]) -> list[str]:
    """Every turn's text (the corpus a tokenizer is trained on)."""
    return [t.content for r in records for t in r.conversation if t.content]


def build_dataset(data: DataSection, renderer: ConversationRenderer, split: str = "train",
                  encoder: FrameEncoder | None = None, frames: FrameRecord | None = None) -> Dataset:
    """The dataset of ``data.train`` (or ``data.val`` with ``split="val"``) for ``data.method``.

    Raw videos (``data.videos``) need the model's frame ``encoder`` for preprocessing; features
    (``data.features``) made otherwise than ``frames`` says (how the model takes frames:
    ``StreamVLM.frame_record``) are refused.
    """
    file = data.train if split == "train" else data.val
    wrapped = TransformedRenderer(renderer, get_transform(data.method))
    if data.features is not None:
        dataset: Dataset = StreamingDataset(file, data.features, wrapped, frames=frames)
    elif encoder is None:
        raise ConfigError("data.videos: raw frames need the model's image tower (model.with_vision = true)")
    else:
        dataset = RawFrameDataset(file, data.videos, wrapped, encoder)
    if split == "train" and data.max_samples and data.max_samples < len(dataset):
        dataset = Subset(dataset, range(data.max_samples))
    return dataset
