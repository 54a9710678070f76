"""Connector alignment: short frame -> narration samples from a synthetic world, trained before
the streaming stage (as LLaVA's first stage aligns the projector before instruction tuning).

In a streaming dialogue the colour of the object acted on is one token of a reply, and most of
its mentions can be copied from the replies before it; a small language model learns the rest of
the reply and names the colour from its priors. An alignment sample has no history to copy from:
a few frames and the narration of the action under way in the last of them::

    <bos>\\n[<v>x10,<v>x10,<v>x10]\\nAssistant: You pick up the red cup.<eos>

so the reply can only be read from the frames. Every frame inside an action (from its start to
its end) gives a sample, labelled from the world's ground truth (``world.json``); the frames come
from the features ``streamvlm encode`` wrote for the world's videos, as the streaming stage's do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from ..data.jsonl import ConversationRecord, write_jsonl
from ..model.conversation import Turn

CONTEXT_FRAMES = 3
"""Frames of an alignment sample: the frame the reply is about and the ones before it."""


def alignment_records(world_dir: str | Path, fps: float, context: int = CONTEXT_FRAMES,
                      stride: int = 1) -> Iterator[ConversationRecord]:
    """One record per ``stride``-th frame inside an action of each video of the world in
    ``world_dir`` (frames at ``fps``): the ``context`` frames that end with it (fewer at the
    video's start), then the action's rule-refined narration, learned. No frame decision is learned."""
    from ..data.convert.timeline import frame_at, frame_time
    from ..data.generate import rule_refine
    from ..data.synth import SynthWorld

    world = SynthWorld.load(Path(world_dir))
    for video in world.videos:
        frames = max(1, frame_at(video.duration, fps))  # frames the features hold (frame k at k / fps)
        for a, action in enumerate(video.actions):
            text = rule_refine(action.narration)
            last = min(math.floor(action.end * fps + 1e-6), frames - 1)  # the last frame shown before it ends
            for k in range(frame_at(action.start, fps), last + 1, stride):
                first = max(0, k - context + 1)
                yield ConversationRecord(
                    id=f"{video.uid}/align/{a}/{k}", video=f"{video.uid}.mp4", fps=fps, start=frame_time(first, fps),
                    conversation=[Turn("stream", time=frame_time(first, fps), num_frames=k - first + 1),
                                  Turn("assistant", text, frame_time(k, fps), learn=True)],
                    meta={"source": "synth_alignment", "video_uid": video.uid, "action": a},
                )


def write_alignment(world_dir: str | Path, out: str | Path, fps: float, context: int = CONTEXT_FRAMES,
                    stride: int = 1) -> int:
    """Write :func:`alignment_records` of a world to the JSONL file ``out``; return how many."""
    return write_jsonl(alignment_records(world_dir, fps, context, stride), out)
