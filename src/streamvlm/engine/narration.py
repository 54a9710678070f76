"""Narrating a source: the pieces every front end (``narrate``, ``demo``, ``bench``, a server)
shares to stream a video through a model.

* :func:`build_assistant`: a :class:`~streamvlm.engine.assistant.LiveAssistant` with the
  generation settings and the KV budget (attention sink + recent window);
* :func:`open_for` / :func:`preflight`: open a source at the model's resolution, or check a
  local one before any model loads;
* :func:`event_record`: the JSON object of one event (what ``narrate --output`` writes per line).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .options import GenerationConfig, StreamOptions

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM
    from ..video import FrameSource
    from ..video.resize import FrameFit
    from .assistant import LiveAssistant

NARRATE_INSTRUCTION = "Please concisely narrate the video in real time."
"""Asked at 0 s to start a narration, as in training (the upstream evaluation prompt)."""


def build_assistant(model: StreamVLM, generation: GenerationConfig | None = None,
                    kv_budget: int | None = None) -> LiveAssistant:
    """A live assistant over ``model`` whose cache keeps ``kv_budget`` tokens: the session start
    (the attention sink) plus the most recent window (None: the model's own budget; 0: unbounded;
    see :func:`~.kv_policy.stream_policy`)."""
    from .assistant import LiveAssistant
    from .kv_policy import stream_policy
    from .layout import LayoutIds

    policy = stream_policy(model, kv_budget, len(LayoutIds.from_model(model).start))
    return LiveAssistant(model, generation or GenerationConfig(), kv_policy=policy)


def frame_fit(model: StreamVLM) -> FrameFit:
    """The size frames are decoded at for ``model``: its frame encoder's input (one resize, at
    decoding, by the encoder's rule; see :mod:`streamvlm.video.resize`)."""
    if model.frame_encoder is None:
        raise UserError("this model has no frame encoder (vision tower); it cannot watch videos")
    return model.frame_encoder.fit


def folder_root(source: str) -> str | None:
    """An image folder is its own data root: each image must resolve inside it, so a symlink
    leading out of the folder refuses it (``video.locate.list_images``); a link to the folder
    itself is followed. None for any other source (a file, a webcam, a URL)."""
    from ..video.locate import locate

    location = locate(source)
    return location.target if location.kind == "images" else None


def preflight(source: str) -> None:
    """Open a local file or image folder once and read its header, so that a broken or
    unsupported source fails in a second, before the model is loaded. Live sources (webcams,
    URLs, pipes) are left alone: they are opened once, by the stream itself."""
    from ..video import probe
    from ..video.locate import locate

    if not locate(source).live:
        probe(source, allowed_root=folder_root(source))


def open_for(model: StreamVLM, source: str, stream: StreamOptions | None = None) -> tuple[FrameSource, float]:
    """Open ``source`` for ``model``: sampled at ``stream.fps`` (default the model's), decoded at
    :func:`frame_fit` (an image folder as its own data root, see :func:`folder_root`). Returns
    the source and its fps."""
    from ..video import open_source

    stream = stream or StreamOptions()
    fps = stream.fps if stream.fps is not None else model.config.frame_fps
    return open_source(source, fps=fps, fit=frame_fit(model), realtime=stream.realtime,
                       allowed_root=folder_root(source)), fps


def expected_frames(source: FrameSource, fps: float) -> int | None:
    """Frames the sampler will emit for a source of known duration (frame k at k / fps)."""
    if not source.duration:
        return None
    return max(1, math.ceil(source.duration * fps - 1e-6))


def event_record(time: float, role: str, text: str) -> dict[str, Any]:
    """One event as written to a JSON-lines file: ``{"time", "role", "text"}``."""
    return {"time": round(time, 3), "role": role, "text": text}
