"""The steps ``build-default`` and ``tables`` share, as functions: a synthetic world and its
conversations, one vision tower pretrained on it and frozen, the frame features it extracts, and
training runs over those features.

Every step skips work an earlier call finished (a world with its ``world.json``, a tower folder, a
complete feature file), so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..outputs import write_text_atomic

FROZEN_TOWER_RECIPE = "tiny-synth"
"""The recipe whose vision config the shared tower is built from."""
ENCODE_BATCH = 128
"""Frames per encoder call when extracting the worlds' features."""


def make_world(folder: Path, videos: int, seed: int, split: str, *, duration: float, size: int,
               live=None) -> Path:
    """A synthetic world in ``folder`` (made unless a ``world.json`` is already there); ``live``
    (:class:`~streamvlm.data.synth.spec.LiveOptions`) makes a share of its videos live-like streams."""
    from ..data.synth import generate_world

    if not (folder / "world.json").is_file():
        generate_world(folder, videos, seed, duration=duration, size=size, split=split, overwrite=True, live=live)
    return folder


def world_conversations(world: Path, seed: int, *, livechat_split: str | None = None, idle_start: float = 0.0,
                        questions: float = 0.0, progress: bool = True) -> list[Path]:
    """The narration conversations of a world (narrations rule-refined to "You ..."; ``idle_start``
    of them asked at their window's start, before the first narration), and with ``livechat_split``
    its live-chat conversations from ``goalstep_<split>.json``, and for a ``questions`` share of
    the narration dialogues (seeded) a copy with their video's live-chat questions asked along the
    way (:mod:`streamvlm.data.convert.mixed`); written inside the world folder. Returns the JSONL
    files."""
    from ..data.convert.files import ConvertOptions, convert_file
    from ..data.generate.narration import refine_file

    notes = world / "annotations" / "narration.json"
    refine_file(notes, world / "refined.json", None, progress=progress)
    convert_file(ConvertOptions(kind="narration", annotations=notes, videos_root=world / "videos",
                                out=world / "narration.jsonl", refined=world / "refined.json", seed=seed,
                                idle_start=idle_start),
                 progress=progress)
    files = [world / "narration.jsonl"]
    if livechat_split is not None:
        convert_file(ConvertOptions(kind="livechat",
                                    annotations=world / "annotations" / f"goalstep_{livechat_split}.json",
                                    videos_root=world / "videos", out=world / "livechat.jsonl", seed=seed),
                     progress=progress)
        files.append(world / "livechat.jsonl")
        if questions:
            files.append(_narration_with_questions(world, seed, questions))
    return files


def _narration_with_questions(world: Path, seed: int, share: float) -> Path:
    """``world/narration_asked.jsonl``: a ``share`` of the world's narration dialogues (seeded)
    with the questions of their video's live-chat dialogue asked along the way."""
    from ..data.convert.mixed import mix_questions
    from ..data.jsonl import read_jsonl, write_jsonl

    livechat = {r.meta["video_uid"]: r for r in read_jsonl(world / "livechat.jsonl")}
    rng = random.Random(f"{seed}/questions")
    mixed = []
    for record in read_jsonl(world / "narration.jsonl"):
        other = livechat.get(record.meta["video_uid"])
        if other is not None and rng.random() < share and (asked := mix_questions(record, other)) is not None:
            mixed.append(asked)
    write_jsonl(mixed, world / "narration_asked.jsonl")
    return world / "narration_asked.jsonl"


def mix_lines(files: list[Path], out: Path, seed: int) -> int:
    """Write the lines of ``files`` to ``out``, shuffled with ``seed``; return how many."""
    lines = [line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(lines)
    write_text_atomic(out, "\n".join(lines) + "\n")
    return len(lines)


def frozen_tower(train_world: Path, heldout_world: Path, tower: Path, *, epochs: int, fresh_layouts: int = 0,
                 progress: bool = True) -> Path:
    """The shared vision tower (made unless ``tower`` holds one): pretrained for ``epochs`` on
    ``train_world``'s frames, or with ``fresh_layouts`` on that many freshly rendered videos like
    them (new layouts every step)."""
    from ..model.frame_encoder import is_frame_encoder_dir
    from ..train.config import TowerPretrainOptions, recipe_vision
    from ..train.tower_pretrain import FreshLayouts, pretrain_tower

    if not is_frame_encoder_dir(tower):
        fresh = FreshLayouts.like_world(train_world, fresh_layouts) if fresh_layouts else None
        pretrain_tower(recipe_vision(FROZEN_TOWER_RECIPE), train_world, tower, heldout_world=heldout_world,
                       options=TowerPretrainOptions(epochs=epochs), fresh=fresh, progress=progress)
    return tower


def extract_features(tower: Path, world: Path, out: Path, *, progress: bool = True) -> Path:
    """Frame features of ``world``'s videos with the frozen ``tower`` (finished files kept)."""
    from ..data.convert.timeline import CONVERSATION_FPS
    from ..data.encode import encode_folder
    from ..errors import DataError
    from ..model.frame_encoder import load_frame_encoder

    report = encode_folder(load_frame_encoder(tower).eval(), world / "videos", out, fps=CONVERSATION_FPS,
                           batch_size=ENCODE_BATCH, progress=progress)
    if report.failed:
        video, reason = report.failed[0]
        raise DataError(f"{len(report.failed)} video(s) could not be encoded, e.g. {video}: {reason}", file=str(world))
    return out


def frozen_tower_overrides(tower: str | Path, features: str | Path) -> list[str]:
    """Training-config overrides that train over ``features`` extracted with the pretrained frame
    encoder ``tower``, kept frozen (and saved inside the trained model)."""
    return ["data.videos=null", f"data.features={features}", f"model.config.vision.name_or_path={tower}",
            "model.config.vision.tower_config=null", "model.train_vision=false"]


def aligned_model(world: Path, features: Path, tower: Path, corpus: Path, out: Path, *, steps: int) -> Path:
    """The connector-alignment stage (:mod:`streamvlm.train.align`): ``tiny-synth`` over the frozen
    ``tower``'s ``features`` of ``world``, trained ``steps`` steps of 64 frame -> narration samples,
    its tokenizer learned from ``corpus`` (the streaming stage's conversations, so both stages
    share it). Returns its last checkpoint (``out`` resumes a partial run)."""
    from ..data.convert.timeline import CONVERSATION_FPS
    from ..errors import UserError
    from ..train.align import write_alignment
    from ..train.state import latest_checkpoint

    samples = world / "alignment.jsonl"
    if not samples.is_file():
        write_alignment(world, samples, CONVERSATION_FPS)
    train_run("tiny-synth", [f"data.train={samples}", "data.val=null", f"tokenizer.corpus={corpus}",
                             *frozen_tower_overrides(tower, features), f"output_dir={out}",
                             "optim.batch_size=64", "optim.grad_accum=1", f"optim.max_steps={steps}",
                             "save_every=100", "resume=true"])
    final = latest_checkpoint(out)
    if final is None:
        raise UserError(f"{out}: the alignment stage wrote no checkpoint")
    return final


def aligned_overrides(aligned: str | Path, features: str | Path) -> list[str]:
    """Training-config overrides that continue the model of the alignment stage (its tokenizer and
    frozen tower) over ``features``."""
    return ["data.videos=null", f"data.features={features}", "model.config=null", f"model.init_from={aligned}",
            "tokenizer.path=null", "model.train_vision=false"]


def train_run(recipe: str, overrides: list[str]) -> Path:
    """Train ``recipe`` with ``overrides`` (resuming a partial run); return its output folder."""
    from ..train.config import load_train_config
    from ..train.recipe import train

    config = load_train_config(recipe, overrides)
    config.check_paths()
    return train(config)
