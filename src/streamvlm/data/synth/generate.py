"""Generate a whole synthetic world: plan every video, render and encode them (in parallel
processes), and write the annotation files, ``world.json`` and ``splits.json``.

Layout of ``out_dir``::

    videos/<uid>.mp4              h264, yuv420p, ``size`` x ``size``, ``fps`` frames per second
    annotations/narration.json    Ego4D narrations
    annotations/goalstep_{train,val,test}.json
    annotations/COIN.json
    annotations/fho_lta_{train,val,test}.json, annotations/fho_lta_taxonomy.json
    world.json                    ground truth (written last: its presence marks a complete world)
    splits.json                   {"train": [uids], "val": [...], "test": [...]}

These are the world's files (:func:`world_files`, read from ``world.json``): replacing a world
(``overwrite``) replaces exactly them, and refuses a folder whose ``world.json`` is not a world.
One process at a time generates into a folder (a lock beside it, ``.NAME.lock``).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Literal

from ...errors import UserError
from ...outputs import exclusive
from .formats import ANNOTATION_FILES, SPLITS, write_annotations
from .marker import SYNTH_VIDEO_TAG
from .planner import plan_video
from .render import render_video_frames
from .spec import WORLD_VERSION, LiveOptions, SynthWorld, VideoSpec, WorldOptions

# x264 settings that make the bytes a pure function of the frames: one thread, and ``asm=0`` (x264's
# C code, no SIMD kernels). With its assembly, x264 (core 165, as PyAV ships it) reads uninitialised
# heap memory on CPUs with AVX-512, in the macroblock-tree rate control with B-frames: the encoding
# then depended on what the process had allocated and freed before (e.g. decoding a video), and the
# same world came out with different bytes and frames. The C code's output depends on neither the
# heap's earlier contents (tests/data/synth/test_synth_encoding.py) nor the CPU's instruction set;
# it costs about 0.2 s more CPU per 60 s video at 96 px.
X264_PARAMS = "threads=1:lookahead-threads=1:sliced-threads=0:deterministic=1:asm=0"


def write_video(spec: VideoSpec, path: Path, crf: int = 18) -> None:
    """Render ``spec`` and encode it to an h264 mp4 at ``path`` (x264 single-threaded and without
    assembly, see :data:`X264_PARAMS`: the bytes are the same on every run, whatever ran before in
    the process)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        container.metadata["comment"] = SYNTH_VIDEO_TAG  # how a synthetic-world video is recognised
        stream = container.add_stream("libx264", rate=Fraction(spec.fps).limit_denominator(1001))
        stream.width = stream.height = spec.size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": X264_PARAMS}
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        for frame in render_video_frames(spec):
            # convert here: the encoder's own rgb->yuv conversion is not always bit-reproducible
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


def _write_one(args: tuple[VideoSpec, str]) -> str:
    spec, folder = args
    write_video(spec, Path(folder) / f"{spec.uid}.mp4")
    return spec.uid


def generate_world(out_dir: str | Path, num_videos: int, seed: int, *, duration: float = 60.0,
                   size: int = 96, fps: float = 8.0, split: Literal["auto", "train", "val", "test"] = "auto",
                   workers: int | None = None, overwrite: bool = False, progress: bool = True,
                   live: LiveOptions | None = None) -> SynthWorld:
    """Generate ``num_videos`` videos of world ``seed`` into ``out_dir`` and return the world.

    Everything written is a pure function of the arguments other than ``workers``,
    ``overwrite`` and ``progress``. ``split="auto"`` gives each video a split from
    ``(seed, index)`` (80/10/10); ``"train"``/``"val"``/``"test"`` puts every video in that split
    (e.g. an extra test set from a new seed). ``workers`` defaults to the number of CPUs.
    ``live`` makes a share of the videos live-like streams (several tasks, idle stretches; see
    :class:`~.spec.LiveOptions`); without it every video is a one-task clip.
    """
    options = WorldOptions(num_videos=num_videos, seed=seed, duration=float(duration), size=size,
                           fps=float(fps), split=split, live=live or LiveOptions())
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    with exclusive(out, what="generating a world"):
        replaced = _previous_world_files(out, overwrite)
        videos = [plan_video(seed, i, duration=options.duration, fps=options.fps, size=options.size,
                             split=None if split == "auto" else split, live=options.live) for i in range(num_videos)]
        world = SynthWorld(WORLD_VERSION, options, videos)
        written = world_files(world)
        foreign = [name for name in written if name not in replaced and os.path.lexists(out / name)]
        if foreign:
            raise UserError(f"{out}: {foreign[0]} is there, and not a file of the world in it; "
                            "move it away or choose another folder")
        # Everything is written into a staging folder beside ``out`` and moved into place at the end:
        # a run that fails or is interrupted leaves a world already in ``out`` as it was.
        staging = out.parent / f".{out.name}.partial"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        try:
            _generate(staging, world, workers, progress)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for name in replaced:
            (out / name).unlink(missing_ok=True)
        for name in written:
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (staging / name).rename(target)
        shutil.rmtree(staging)
    world.root = out
    return world


def world_files(world: SynthWorld) -> list[str]:
    """Every file :func:`generate_world` wrote for ``world``, relative to its folder."""
    return [*(f"videos/{v.uid}.mp4" for v in world.videos), *(f"annotations/{n}" for n in ANNOTATION_FILES),
            "splits.json", "world.json"]


def _previous_world_files(out: Path, overwrite: bool) -> list[str]:
    """The files of the world already in ``out`` that ``overwrite`` replaces ([] for an empty or
    new folder); a folder holding anything else is refused."""
    if not out.exists() or not any(out.iterdir()):
        return []
    if not overwrite:
        raise UserError(f"{out}: folder is not empty (pass --overwrite to replace a generated world)")
    if not (out / "world.json").is_file():
        raise UserError(f"{out}: holds no world.json, so no world of `streamvlm synth`; --overwrite replaces only "
                        "such a world (choose another folder)")
    try:
        previous = SynthWorld.load(out)
    except UserError as exc:
        raise UserError(f"{out}: its world.json is not a world of `streamvlm synth` ({exc}); --overwrite replaces "
                        "only such a world (choose another folder)") from None
    odd = next((v.uid for v in previous.videos if Path(v.uid).name != v.uid or v.uid in ("", ".", "..")), None)
    if odd is not None:  # its files are named after the uids: none may lead out of videos/
        raise UserError(f"{out}: its world.json names a video {odd!r}, which no world of `streamvlm synth` does; "
                        "--overwrite replaces only such a world (choose another folder)")
    return world_files(previous)


def _generate(staging: Path, world: SynthWorld, workers: int | None, progress: bool) -> None:
    """Write every video of ``world``, the annotations, ``splits.json`` and ``world.json`` into ``staging``."""
    from tqdm import tqdm

    videos, num_videos = world.videos, len(world.videos)
    jobs = [(v, str(staging / "videos")) for v in sorted(videos, key=lambda v: -v.num_frames)]  # long ones first
    workers = max(1, min(workers or os.cpu_count() or 1, num_videos))
    with tqdm(total=num_videos, desc="synth videos", unit="video", disable=not progress) as bar:  # closed on errors too
        if workers == 1:
            for job in jobs:
                _write_one(job)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_write_one, jobs):
                    bar.update()

    write_annotations(videos, staging / "annotations")
    splits = {s: [v.uid for v in videos if v.split == s] for s in SPLITS}
    (staging / "splits.json").write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    world.save(staging)
