"""Is what a narration says in the frame tokens it is spoken after?

For every narration of a synthetic world: the frame tokens of its reply frame (the first frame at
or after it, as in training) and of the ``frames - 1`` frames before it, flattened, against what
the narration names: its verb and the colour and kind of the object it acts on. A linear classifier
fitted on one world and scored on another says how much of that can be read from the tokens alone;
a language model that names it far less often than the probe has not learned to read it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..model.vlm import StreamVLM

TARGETS = ("verb", "colour", "kind")
"""What each narration is probed for (the object is the one it names first)."""


@dataclass
class ProbeData:
    """Frame tokens at the narrations of a world and what the narrations say."""

    tokens: Tensor
    """``[N, frames * T * D]`` flattened frame tokens, the reply frame first."""
    labels: dict[str, list[str]]
    """Target -> one value per narration (``N`` each)."""


def narrated_tokens(world_dir: str | Path, features_dir: str | Path, frames: int = 1) -> ProbeData:
    """The frame tokens of every narration of the world in ``world_dir`` from ``features_dir``
    (``streamvlm encode WORLD/videos``: ``FEATURES/<uid>.mp4.safetensors``); narrations the
    world's grammar cannot parse are left out."""
    from ..data.convert.timeline import frame_at
    from ..data.features import feature_path, load_frames, read_info
    from ..data.synth import SynthWorld
    from ..evaluation.live_eval import parse_sentence, world_clips

    rows: list[Tensor] = []
    labels: dict[str, list[str]] = {t: [] for t in TARGETS}
    for clip in world_clips(SynthWorld.load(Path(world_dir))):
        path = feature_path(features_dir, f"{clip.uid}.mp4")
        info = read_info(path)
        video = load_frames(path, 0, info.num_frames).float()  # [num_frames, T, D]
        for narration in clip.narrations:
            said = parse_sentence(narration.text)
            if said.verb is None or said.object is None:
                continue
            k = min(frame_at(narration.time, info.fps), info.num_frames - 1)
            rows.append(torch.cat([video[max(0, k - j)].reshape(-1) for j in range(frames)]))
            for target, value in zip(TARGETS, (said.verb, *said.object)):
                labels[target].append(value)
    if not rows:
        from ..errors import DataError

        raise DataError("no narration to probe", file=str(world_dir))
    return ProbeData(torch.stack(rows), labels)


def fit_probe(tokens: Tensor, values: list[str], *, steps: int = 300, lr: float = 1e-3,
              seed: int = 0) -> tuple[torch.nn.Linear, list[str]]:
    """A linear classifier from ``tokens`` ``[N, F]`` to ``values`` (full-batch AdamW, ``steps``
    steps); returns it and its classes (column order of its output)."""
    classes = sorted(set(values))
    index = {c: i for i, c in enumerate(classes)}
    target = torch.tensor([index[v] for v in values])
    generator = torch.Generator().manual_seed(seed)
    probe = torch.nn.Linear(tokens.shape[1], len(classes))
    with torch.no_grad():
        bound = 1 / tokens.shape[1] ** 0.5
        probe.weight.uniform_(-bound, bound, generator=generator)
        probe.bias.zero_()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(tokens), target).backward()
        optimizer.step()
    return probe, classes


def accuracy(probe: torch.nn.Linear, classes: list[str], tokens: Tensor, values: list[str]) -> float:
    """Share of ``values`` the probe predicts (a value it never saw counts as wrong)."""
    with torch.no_grad():
        predicted = probe(tokens).argmax(1).tolist()
    return sum(classes[p] == v for p, v in zip(predicted, values)) / len(values)


def probe_report(train: ProbeData, heldout: ProbeData, *, steps: int = 300) -> dict[str, dict[str, float]]:
    """Per target: the probe's accuracy on ``train`` and ``heldout``, and the held-out share of
    the most frequent value (what predicting it alone scores)."""
    out = {}
    for target in TARGETS:
        probe, classes = fit_probe(train.tokens, train.labels[target], steps=steps)
        values = heldout.labels[target]
        out[target] = {"train": accuracy(probe, classes, train.tokens, train.labels[target]),
                       "heldout": accuracy(probe, classes, heldout.tokens, values),
                       "majority": Counter(values).most_common(1)[0][1] / len(values)}
    return out


@dataclass
class ModelColours:
    """What a model says at the colour word of a world's narrations, teacher-forced."""

    replies: int
    """Narration replies that name a colour (their first colour word is scored)."""
    right: float
    """Share where the model's most likely colour (of the world's colours) is the narration's."""
    first_mention: float
    """The same, where that colour and kind were not said before in the dialogue."""
    said_before: float
    """The same, where they were (copying from the dialogue would do)."""
    follows_swap: float
    """Share where, with the reply frame's tokens replaced by another narration's reply frame
    (another colour), the model's colour is that narration's: it reads the frame."""


def model_colours(model: StreamVLM, world_dir: str | Path, features_dir: str | Path, seed: int = 0) -> ModelColours:
    """:class:`ModelColours` of ``model`` over the narration dialogues of the world in ``world_dir``
    (rule-refined, as ``build-default`` makes them) with frame tokens from ``features_dir``."""
    import random

    from ..data.convert.narration import NarrationOptions, convert_narration
    from ..data.features import FeatureStore
    from ..data.formats.ego4d import read_narration
    from ..data.generate import rule_refine
    from ..data.synth.vocabulary import COLOURS

    videos = read_narration(Path(world_dir) / "annotations" / "narration.json")
    refined = {n.annotation_uid: rule_refine(n.text) for v in videos for ns in v.passes.values() for n in ns}
    records = list(convert_narration(videos, NarrationOptions(seed=seed), refined))
    store = FeatureStore(features_dir, model.config.tokens_per_frame)
    colour_of = {ids[0]: c for c in COLOURS if len(ids := model.renderer.encode(" " + c)) == 1}
    choices = torch.tensor(sorted(colour_of))
    samples = []  # (rendered, frames, [(position, reply frame, colour, said before)])
    for record in records:
        rendered = model.renderer.render(record.conversation)
        ids, ends = rendered.input_ids, [positions[-1] for positions in rendered.frame_positions]
        found, frames_seen = [], set()
        for p, label in enumerate(rendered.labels):
            if label in colour_of:
                j = max(k for k, end in enumerate(ends) if end < p)  # the frame the reply is spoken after
                if j not in frames_seen:
                    frames_seen.add(j)
                    said = any(ids[q:q + 2] == ids[p + 1:p + 3] for q in range(p))  # colour and kind said before
                    found.append((p, j, colour_of[label], said))
        if found:
            samples.append((rendered, store.frames(record).float(), found))
    pool = [(frames[j], colour) for _, frames, found in samples for _, j, colour, _ in found]
    rng = random.Random(seed)
    right = {False: [], True: []}
    follows = []
    for rendered, frames, found in samples:
        swapped, swapped_colour = frames.clone(), {}
        for p, j, colour, _ in found:
            other = [pair for pair in pool if pair[1] != colour]
            if other:
                swapped[j], swapped_colour[p] = rng.choice(other)
        ids = torch.tensor([rendered.input_ids], device=model.device)
        with torch.inference_mode():
            plain = model(ids, frame_tokens=frames).logits[0, :, choices]
            moved = model(ids, frame_tokens=swapped).logits[0, :, choices]
        for p, _, colour, said in found:
            right[said].append(colour_of[int(choices[plain[p].argmax()])] == colour)
            if p in swapped_colour:
                follows.append(colour_of[int(choices[moved[p].argmax()])] == swapped_colour[p])

    def share(values: list[bool]) -> float:
        return sum(values) / len(values) if values else float("nan")

    return ModelColours(len(right[False]) + len(right[True]), share(right[False] + right[True]), share(right[False]),
                        share(right[True]), share(follows))
