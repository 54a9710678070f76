"""Pretrain a small vision tower on the synthetic world's frames.

The real model starts from a pretrained SigLIP; a tower built from scratch for the synthetic
world needs its own pretraining, or the language model has to discover colours and objects
through the sparse signal of a few reply words. Here the tower learns to tell, from one frame,
the object in the hand, the action under way, the object it acts on and its target (the
world's ground truth, :mod:`streamvlm.data.synth.labels`), through linear heads on exactly the
frame tokens the language model will see (pooled token + pooled grid, ``[N, T, D]``). The
optimizer and schedule are the training recipe's (:mod:`streamvlm.train.optim`: AdamW without
decay on biases and norms, linear warmup from 0, cosine decay to 0), with gradients clipped to 1.

The result is a frame-encoder folder (:func:`streamvlm.model.frame_encoder.save_frame_encoder`) that
``streamvlm encode --model`` reads and that a training config names with
``model.config.vision.name_or_path``.

Two sources of frames:

- a world's encoded videos (:func:`load_world_frames`), read once and passed over ``epochs``
  times. A tower from scratch memorises those few hundred layouts instead of learning "the object
  under the hand" (held-out colour accuracy close to the "none" prior);
- fresh layouts (:class:`FreshLayouts`): every step plans new videos with the synthetic world's
  own planner (:func:`~streamvlm.data.synth.plan_video`, a pure function of ``(seed, index)``),
  renders a few frames of each with its numpy renderer (no video encoding) and labels them with
  :func:`~streamvlm.data.synth.labels.frame_labels`, so no layout is ever seen twice. The frames go
  through the same ``yuv420p`` chroma subsampling as the world's h264 videos, so they look like the
  decoded frames the tower encodes later.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..data.synth.labels import LABEL_FIELDS, frame_labels
from ..data.synth.planner import plan_video
from ..data.synth.render import render_video_frames
from ..data.synth.spec import SynthWorld, VideoSpec
from ..errors import DataError
from ..model.config import VisionConfig
from ..model.frame_encoder import FrameEncoder, save_frame_encoder
from ..video import open_source
from ..video.resize import FrameFit
from .config import TowerPretrainOptions
from .optim import make_optimizer, make_scheduler


def load_world_frames(world_dir: str | Path, fps: float, fit: FrameFit | int, *,
                      progress: bool = True) -> tuple[Tensor, Tensor]:
    """Decode every video of a synthetic world at ``fps`` and ``fit`` (the encoder's; an int: its
    image size, streamvlm's rule) -> uint8 frames ``[N, H, W, 3]`` and their labels int64 ``[N, F]``
    (columns: :data:`~streamvlm.data.synth.labels.LABEL_FIELDS`)."""
    from tqdm.auto import tqdm

    world = SynthWorld.load(world_dir)
    fit = fit if isinstance(fit, FrameFit) else FrameFit(fit)
    images, labels = [], []
    for spec in tqdm(world.videos, desc=f"decode {Path(world_dir).name}", unit="video", disable=not progress):
        path = world.video_path(spec.uid)
        if not path.is_file():
            raise DataError("video listed in world.json is missing", file=str(path))
        with open_source(path, fps=fps, fit=fit, allow_urls=False) as source:
            frames = list(source)
        images += [f.image for f in frames]
        labels.append(frame_labels(spec, [f.time for f in frames]))
    if not images:
        raise DataError("no frames decoded", file=str(world_dir))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.concatenate(labels))


FRESH_LAYOUT_SEED = 1_000_000
"""Default world seed of the fresh layouts: far from the seeds worlds are generated with (the
default model's training and held-out worlds use 1 and 2), so no fresh video is an evaluation video."""
_SAMPLE_STREAM = 7919  # random stream of the frame choice (the planner's streams are 0, 1, 2)


def yuv420_roundtrip(images: np.ndarray) -> np.ndarray:
    """``uint8 [N, H, W, 3]`` RGB through ``yuv420p`` and back, with the same FFmpeg conversion as
    the synthetic world's videos and their decoding (chroma at half resolution: colour edges blur
    the way they do in the decoded frames). ``H`` and ``W`` must be even."""
    import av

    n, h, w, _ = images.shape
    pad = 4  # rows of edge between the frames, so that no frame's colours bleed into the next
    tall = np.pad(images, ((0, 0), (pad, pad), (0, 0), (0, 0)), mode="edge").reshape(n * (h + 2 * pad), w, 3)
    # one conversion for the whole batch (within 2 levels of converting each frame alone, 20x faster)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(tall), format="rgb24").reformat(format="yuv420p")
    return frame.reformat(format="rgb24").to_ndarray().reshape(n, h + 2 * pad, w, 3)[:, pad:pad + h]


@dataclass(frozen=True)
class FreshLayouts:
    """An endless stream of labelled frames from videos planned fresh for every step.

    Step ``s`` plans videos ``s * per_step ... (s + 1) * per_step - 1`` of world ``seed``
    (:func:`~streamvlm.data.synth.plan_video`, new objects, colours, positions, task timing and
    rendering style each), renders ``frames_per_video`` frames of each at times drawn for that
    video and labels them (:func:`~streamvlm.data.synth.labels.frame_labels`). Everything is a pure
    function of ``(seed, step)``: the same step always gives the same frames, in any process.
    """

    videos: int
    """Fresh videos in all (0: none); with ``frames_per_video`` it sets the number of steps."""
    size: int = 64
    """Frame side in pixels (the world's ``--size``)."""
    duration: float = 60.0
    """Seconds per planned video (the world's ``--duration``)."""
    seed: int = FRESH_LAYOUT_SEED
    """World seed of the planned videos."""
    frames_per_video: int = 16
    """Frames rendered and kept per video."""
    busy: float | None = None
    """Fraction of each video's frames drawn from instants where the hand holds something (frames
    are then picked from twice as many rendered ones); ``None``: frames at random instants, in the
    world's own proportions (about a third with something in the hand)."""
    codec: bool = True
    """Pass the frames through ``yuv420p`` like the world's h264 videos (:func:`yuv420_roundtrip`)."""

    @classmethod
    def like_world(cls, world: str | Path, videos: int, **kwargs) -> FreshLayouts:
        """Fresh layouts rendered like ``world``'s videos (its frame size and duration)."""
        options = SynthWorld.load(world).options
        return cls(videos=videos, size=options.size, duration=options.duration, **kwargs)

    def per_step(self, batch_size: int) -> int:
        """Videos planned per step (their frames fill at least ``batch_size``)."""
        return max(1, math.ceil(batch_size / self.frames_per_video))

    def steps(self, batch_size: int) -> int:
        return max(1, math.ceil(self.videos / self.per_step(batch_size)))

    def plan(self, index: int) -> tuple[VideoSpec, np.ndarray]:
        """Fresh video ``index``: its spec and the frames kept, as indices into
        ``render_video_frames(spec)`` (frame ``j`` shows time ``j / spec.fps``)."""
        k = self.frames_per_video
        rng = np.random.default_rng([self.seed, index, _SAMPLE_STREAM])
        candidates = k if self.busy is None else 2 * k
        # a rate of about `candidates` frames per video, different for every video: frame j shows
        # j / rate, so the instants (and the camera sway, light and fly at them) vary from video to video
        rate = candidates / self.duration * float(rng.uniform(1.0, 1.25))
        spec = plan_video(self.seed, index, duration=self.duration, fps=rate, size=self.size, split="train")
        n = spec.num_frames
        if self.busy is None:
            keep = rng.choice(n, size=min(k, n), replace=False)
        else:
            labels = frame_labels(spec, [j / spec.fps for j in range(n)])
            held = np.flatnonzero(labels[:, 0] > 0)  # held_kind
            empty = np.setdiff1d(np.arange(n), held)
            want = max(min(len(held), round(k * self.busy)), k - len(empty))
            keep = np.concatenate([rng.choice(held, size=want, replace=False),
                                   rng.choice(empty, size=min(k - want, len(empty)), replace=False)])
        return spec, np.sort(keep)

    def video(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``uint8 [K, size, size, 3]`` (before :attr:`codec`) and labels ``int64 [K, F]``
        of fresh video ``index``."""
        spec, keep = self.plan(index)
        wanted, frames = set(keep.tolist()), []
        for j, frame in enumerate(render_video_frames(spec)):
            if j in wanted:
                frames.append(frame)
            if j >= keep[-1]:
                break  # the frames after the last kept one are not rendered
        return np.stack(frames), frame_labels(spec, (keep / spec.fps).tolist())

    def batch(self, step: int, batch_size: int) -> tuple[Tensor, Tensor]:
        """Frames ``uint8 [batch_size, size, size, 3]`` and labels ``int64 [batch_size, F]`` of step ``step``."""
        per_step = self.per_step(batch_size)
        parts = [self.video(step * per_step + j) for j in range(per_step)]
        images = np.concatenate([p[0] for p in parts])[:batch_size]
        labels = np.concatenate([p[1] for p in parts])[:batch_size]
        if self.codec:
            images = yuv420_roundtrip(images)
        return torch.from_numpy(images), torch.from_numpy(labels)


class _FreshBatches(torch.utils.data.IterableDataset):
    """Batches of steps ``[0, steps)``; worker ``w`` of ``W`` makes steps ``w, w + W, ...`` (the data
    loader takes them round-robin, so the order is the steps' whatever the number of workers)."""

    def __init__(self, fresh: FreshLayouts, batch_size: int, steps: int) -> None:
        self.fresh, self.batch_size, self.steps = fresh, batch_size, steps

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        info = torch.utils.data.get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(first, self.steps, stride):
            yield self.fresh.batch(step, self.batch_size)


def fresh_batches(fresh: FreshLayouts, batch_size: int, steps: int,
                  workers: int = 1) -> Iterator[tuple[Tensor, Tensor]]:
    """The batches of steps ``0 .. steps - 1`` in order, rendered by ``workers`` processes (0: here)."""
    dataset = _FreshBatches(fresh, batch_size, steps)
    if workers == 0:
        return iter(dataset)
    return iter(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4,
                                            persistent_workers=False))


class LabelHeads(nn.Module):
    """One linear classifier per label field over the flattened frame tokens.
    ``[N, T, D]`` -> logits ``[N, sum(classes)]`` (split with :meth:`split`)."""

    def __init__(self, tokens_per_frame: int, hidden_size: int) -> None:
        super().__init__()
        self.sizes = [len(classes) for classes in LABEL_FIELDS.values()]
        self.linear = nn.Linear(tokens_per_frame * hidden_size, sum(self.sizes))

    def forward(self, tokens: Tensor) -> list[Tensor]:
        return list(self.linear(tokens.flatten(1)).split(self.sizes, dim=-1))


def _loss_and_hits(encoder: FrameEncoder, heads: LabelHeads, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy over fields (mean over frames), and hits ``[F]`` per field."""
    logits = heads(encoder(encoder.preprocess(images)))
    loss = sum(nn.functional.cross_entropy(lg, labels[:, i]) for i, lg in enumerate(logits))
    hits = torch.stack([(lg.argmax(-1) == labels[:, i]).sum() for i, lg in enumerate(logits)])
    return loss, hits


@torch.no_grad()
def label_accuracy(encoder: FrameEncoder, heads: LabelHeads, images: Tensor, labels: Tensor,
                   batch_size: int = 256, *, present: bool = False) -> dict[str, float]:
    """Per-field accuracy of the heads on ``images``; with ``present``, only over the frames where
    the field is not "none" (how often the thing shown is named, not the "none" prior)."""
    encoder.eval()
    hits = torch.zeros(len(LABEL_FIELDS))
    counted = torch.zeros(len(LABEL_FIELDS))
    for i in range(0, len(images), batch_size):
        x, y = images[i:i + batch_size], labels[i:i + batch_size]
        logits = heads(encoder(encoder.preprocess(x)))
        for f, lg in enumerate(logits):
            keep = y[:, f] > 0 if present else torch.ones(len(y), dtype=torch.bool)
            hits[f] += (lg.argmax(-1) == y[:, f])[keep].sum()
            counted[f] += keep.sum()
    encoder.train()
    return {name: float(h) / max(float(c), 1.0) for name, h, c in zip(LABEL_FIELDS, hits, counted)}


def pretrain_tower(vision: VisionConfig, train_world: str | Path | None, out_dir: str | Path, *,
                   heldout_world: str | Path | None = None, options: TowerPretrainOptions | None = None,
                   fresh: FreshLayouts | None = None, workers: int = 1, heldout_every: int = 0,
                   progress: bool = True) -> dict:
    """Train a tower built from ``vision`` and save it to ``out_dir``: on ``train_world``'s frames
    (``options.epochs`` passes), or with ``fresh`` on fresh layouts (``fresh.steps(batch_size)``
    steps, each on new videos rendered by ``workers`` processes; ``epochs`` unused, ``fps`` only for
    ``heldout_world``, ``train_world`` not read).

    Returns (and writes to ``out_dir/pretrain.json``) the options, the first and final (smoothed)
    training loss and per-field accuracy on ``heldout_world`` when given: over all frames and over
    the frames where the field is not "none" (``heldout_accuracy_present``); with ``heldout_every``
    also every that many steps (``heldout_curve``).
    """
    from tqdm.auto import tqdm

    opt = options or TowerPretrainOptions()
    torch.manual_seed(opt.seed)
    encoder = FrameEncoder.from_config(vision)
    heads = LabelHeads(encoder.tokens_per_frame, encoder.hidden_size)
    h_images = h_labels = None
    if heldout_world is not None:
        h_images, h_labels = load_world_frames(heldout_world, opt.fps, encoder.fit, progress=progress)
    if fresh is None:
        if train_world is None:
            raise ValueError("pretrain_tower needs a train_world or fresh layouts")
        images, labels = load_world_frames(train_world, opt.fps, encoder.fit, progress=progress)
        frames = len(images)
        total = math.ceil(frames / opt.batch_size) * opt.epochs
    else:
        total = fresh.steps(opt.batch_size)
        frames = total * opt.batch_size
    params = [p for m in (encoder, heads) for p in m.parameters()]
    optimizer = make_optimizer(params, opt.lr, opt.weight_decay)  # the training recipe's AdamW and schedule
    schedule = make_scheduler(optimizer, opt.warmup_ratio, total, "cosine")
    generator = torch.Generator().manual_seed(opt.seed)

    def world_batches() -> Iterator[tuple[Tensor, Tensor]]:
        for _ in range(opt.epochs):
            order = torch.randperm(len(images), generator=generator)
            for i in range(0, len(images), opt.batch_size):
                idx = order[i:i + opt.batch_size]
                yield images[idx], labels[idx]

    batches = world_batches() if fresh is None else fresh_batches(fresh, opt.batch_size, total, workers)
    encoder.train()
    start, running, first, curve = time.monotonic(), None, None, []
    desc = "pretrain tower" if fresh is None else "pretrain tower (fresh layouts)"
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, dynamic_ncols=True)
    for step, (x, y) in enumerate(batches, 1):
        loss, _ = _loss_and_hits(encoder, heads, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        value = loss.item()
        first = value if first is None else first
        running = value if running is None else 0.95 * running + 0.05 * value
        bar.set_postfix(loss=f"{running:.3f}")
        bar.update()
        if h_images is not None and heldout_every and step % heldout_every == 0 and step < total:
            accuracy = label_accuracy(encoder, heads, h_images, h_labels)
            curve.append({"step": step, "minutes": round((time.monotonic() - start) / 60, 2), **accuracy})
            bar.write(f"step {step}: held-out " + " ".join(f"{k} {100 * v:.1f}%" for k, v in accuracy.items()))
    bar.close()
    report: dict = {"options": asdict(opt), "frames": frames, "steps": total, "first_loss": first,
                    "final_loss": running, "minutes": round((time.monotonic() - start) / 60, 2)}
    if fresh is not None:
        report["fresh_layouts"] = asdict(fresh)
    if h_images is not None:
        report["heldout_accuracy"] = label_accuracy(encoder, heads, h_images, h_labels)
        report["heldout_accuracy_present"] = label_accuracy(encoder, heads, h_images, h_labels, present=True)
        if curve:
            report["heldout_curve"] = curve
    out = Path(out_dir)
    save_frame_encoder(encoder, out)
    (out / "pretrain.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
