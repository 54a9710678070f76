"""Narrating a source: the pieces every front end (``narrate``, ``demo``, ``bench``, a server)
shares to stream a video through a model (the stream's settings come from
:func:`~.defaults.resolve_stream`).

* :func:`open_for` / :func:`preflight`: open a source at the model's resolution and fps, or check
  a local one before any model loads;
* :func:`event_record`: the JSON object of one event (what ``narrate --output`` writes per line).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM
    from ..video import FrameSource
    from ..video.resize import FrameFit
    from .defaults import StreamSetup

NARRATE_INSTRUCTION = "Please concisely narrate the video in real time."
"""Asked at 0 s to start a narration, as in training (the upstream evaluation prompt)."""


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


def open_for(setup: StreamSetup, source: str) -> FrameSource:
    """Open ``source`` for a stream of ``setup``: sampled at its fps, paced by the clock when
    realtime, decoded at :func:`frame_fit` of its model (an image folder as its own data root,
    see :func:`folder_root`)."""
    from ..video import open_source

    return open_source(source, fps=setup.fps, fit=frame_fit(setup.model), realtime=setup.realtime,
                       allowed_root=folder_root(source))


def expected_frames(source: FrameSource, fps: float) -> int | None:
    """Frames the sampler will emit for a source of known duration (frame k at k / fps)."""
    if not source.duration:
        return None
    return max(1, math.ceil(source.duration * fps - 1e-6))


def event_record(time: float, role: str, text: str) -> dict[str, Any]:
    """One event as written to a JSON-lines file: ``{"time", "role", "text"}``."""
    return {"time": round(time, 3), "role": role, "text": text}
