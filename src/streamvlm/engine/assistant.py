"""A text-level wrapper over one :class:`StreamSession`: images in, text events out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..model.vlm import StreamVLM
from .kv_policy import KVPolicy
from .options import GenerationConfig
from .session import Event, StreamEngine, StreamSession


@dataclass
class TextEvent:
    """A query or a reply, as text, at a video time in seconds."""

    time: float
    role: str
    text: str


@torch.inference_mode()
def encode_images(model: StreamVLM, frames: list[np.ndarray] | Tensor) -> Tensor:
    """uint8 frames (a list of ``[H, W, 3]`` or one ``[N, H, W, 3]``) -> LM-width frame embeddings
    ``[N, T, D]``, in one batch (so a pipeline can encode several frames at once)."""
    if model.frame_encoder is None:
        raise ConfigError("this model was built without a frame encoder; push frame embeddings instead")
    encoder = model.frame_encoder
    if isinstance(frames, list):
        frames = [torch.as_tensor(f) for f in frames]
        if len({tuple(f.shape) for f in frames}) > 1:  # an image folder may mix sizes: each to the tower's square
            pixels = torch.cat([encoder.preprocess(f[None].to(model.device)) for f in frames])
            return model.embed_frames(pixels)
        frames = torch.stack(frames)
    return model.embed_frames(encoder.preprocess(frames.to(model.device)))


class LiveAssistant:
    """Watches frames and answers in text. Frames may be uint8 images ``[H, W, 3]``, normalised
    pixels ``[3, S, S]`` or frame embeddings ``[T, D]``."""

    def __init__(self, model: StreamVLM, generation: GenerationConfig | None = None,
                 kv_policy: KVPolicy | None = None, *, engine: StreamEngine | None = None) -> None:
        """Over a new session of ``engine`` when given (its layout and policy shared), else of an
        engine of its own with ``generation`` and ``kv_policy``."""
        self.model = model
        engine = engine if engine is not None else StreamEngine(model, generation, kv_policy)
        self.session: StreamSession = engine.new_session()

    @classmethod
    def for_engine(cls, engine: StreamEngine) -> LiveAssistant:
        """An assistant over a new session of ``engine``."""
        return cls(engine.model, engine=engine)

    def _embeds(self, frame: np.ndarray | Tensor) -> Tensor:
        frame = torch.as_tensor(frame)
        if frame.dtype == torch.uint8:
            return encode_images(self.model, frame[None])[0]
        if frame.dim() == 3 and frame.shape[0] == 3:
            with torch.inference_mode():
                return self.model.embed_frames(frame[None].to(self.model.device))[0]
        return frame

    def encode_images(self, images: list[np.ndarray] | Tensor) -> Tensor:
        """uint8 frames -> frame embeddings ``[N, T, D]`` in one batch; with :meth:`push_frame` and
        :meth:`ask` this makes the assistant a :class:`~streamvlm.engine.pipeline.FrameConsumer`."""
        return encode_images(self.model, list(images) if not isinstance(images, Tensor) else images)

    def push_frame(self, frame: np.ndarray | Tensor, time: float) -> list[TextEvent]:
        return self.text_events(self.session.push_frame(self._embeds(frame), time))

    def text_events(self, events: list[Event]) -> list[TextEvent]:
        """The session's events (ids) as text."""
        decode = self.model.tokenizer.decode
        return [TextEvent(e.time, e.role, decode(e.token_ids, skip_special_tokens=True).strip()) for e in events]

    def ask(self, text: str, time: float) -> None:
        """Ask a question; it is answered at the next frame boundary (see ``push_frame``)."""
        self.session.push_query(text, time)

    def reset(self) -> None:
        self.session.reset()
