"""The paper's data methods as conversation transforms (turns -> turns), applied before rendering.

* ``streaming`` (ours): unchanged; the model learns every annotated frame decision (streaming EOS)
  and the replies.
* ``interleaved``: frame decisions are not learned; the LM learns the annotated replies only (it
  cannot learn *when* to speak).
* ``per_frame``: every frame is followed by an assistant turn; frames with nothing to say get an
  empty reply (learned where the original frame decision was learned), so silence costs a whole
  reply template per frame. No frame decision is learned: the decision lives in the replies.

Frame count and order never change, so the frames of a sample stay valid after a transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..model.conversation import Turn
from .config import DataMethod

Transform = Callable[[Sequence[Turn]], list[Turn]]


def streaming(turns: Sequence[Turn]) -> list[Turn]:
    return list(turns)


def interleaved(turns: Sequence[Turn]) -> list[Turn]:
    """Same turns; no frame decision learned."""
    return [Turn(t.role, t.content, t.time, t.num_frames, False) if t.role == "stream" else t for t in turns]


def per_frame(turns: Sequence[Turn]) -> list[Turn]:
    """Split every stream into one-frame streams, each followed by a reply (empty when silent)."""
    out: list[Turn] = []
    for i, turn in enumerate(turns):
        if turn.role != "stream" or turn.num_frames == 0:
            out.append(turn)
            continue
        replied = i + 1 < len(turns) and turns[i + 1].role == "assistant"
        learned = turn.learned_frames()
        for f in range(turn.num_frames):
            out.append(Turn("stream", time=turn.time if f == 0 else None, num_frames=1, learn=False))
            if f == turn.num_frames - 1 and replied:
                continue  # the annotated reply follows this frame
            out.append(Turn("assistant", "", learn=f < learned))
    return out


TRANSFORMS: dict[str, Transform] = {"streaming": streaming, "interleaved": interleaved, "per_frame": per_frame}


def get_transform(method: DataMethod) -> Transform:
    return TRANSFORMS[method]
