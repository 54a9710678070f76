"""How a video of the synthetic world is recognised, and what the embedded model says elsewhere.

``streamvlm synth`` writes :data:`SYNTH_VIDEO_TAG` into every video's container metadata (the MP4
``comment`` tag), so a video is known to be the world's by an explicit marker, not guessed from
its size or length. The embedded default model was trained only on that world: on any other
source the front ends (``narrate``, ``demo --video``, ``serve``) say so once, with
:data:`EMBEDDED_MODEL_NOTE`.
"""

from __future__ import annotations

import os

SYNTH_VIDEO_TAG = "streamvlm synthetic world"
"""The container ``comment`` tag of every video ``streamvlm synth`` writes."""

EMBEDDED_MODEL_NOTE = ("note: the embedded model was trained only on the synthetic world (streamvlm synth); "
                       "for real footage use a model trained on real data, e.g. the released VideoLLM-online "
                       "adapter (--model ADAPTER --llm LLM --vision TOWER)")
"""Said once when the embedded model watches a source that is not a synthetic-world video."""


def is_synthetic_video(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a local video file that ``streamvlm synth`` wrote (its container
    carries :data:`SYNTH_VIDEO_TAG`). Webcams, URLs, pipes and image folders are not; a file that
    cannot be opened is not either (opening it for the stream reports why)."""
    from ...errors import UserError
    from ...video.decoding import open_container
    from ...video.locate import locate

    try:
        location = locate(source)
        if location.kind != "file" or location.live:
            return False
        with open_container(location, read_timeout=10.0) as container:
            return container.metadata.get("comment") == SYNTH_VIDEO_TAG
    except (UserError, OSError, ValueError):
        return False


def embedded_model_note(source: str | os.PathLike) -> str | None:
    """:data:`EMBEDDED_MODEL_NOTE` unless ``source`` is a synthetic-world video."""
    return None if is_synthetic_video(source) else EMBEDDED_MODEL_NOTE
