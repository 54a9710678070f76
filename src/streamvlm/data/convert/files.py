"""From annotation files to a conversation JSONL file: the ``data convert`` pipeline step.

:func:`convert_file` reads an annotation file in its dataset's own format, converts it with the
converter of ``kind`` (:mod:`.narration`, :mod:`.livechat`, :mod:`.benchmarks`), keeps the
conversations whose video exists under the data root, optionally inserts wrong replies
(robustness augmentation), and writes the JSONL atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, DirectoryPath, Field, FilePath

from ...errors import UserError
from ...model.config import UPSTREAM_SYSTEM_PROMPT
from ...outputs import check_output, write_text_atomic
from ...settings import Arg, PositiveInt, Probability, settings
from ..generate.options import BackendOptions
from ..jsonl import ConversationRecord
from .benchmarks import COIN_BENCHMARKS
from .narration import ACKNOWLEDGEMENT
from .timeline import CONVERSATION_FPS, ConversationFps, VideoPattern

Kind = Literal["narration", "livechat", "coin", "lta"]


def _benchmarks(text: str) -> str:
    chosen = [b for b in text.split(",") if b]
    unknown = sorted(set(chosen) - set(COIN_BENCHMARKS))
    if unknown or not chosen:
        raise ValueError(f"unknown benchmark {unknown[0] if unknown else text!r} "
                         f"(choose from {', '.join(COIN_BENCHMARKS)})")
    return text


@settings
class ConvertOptions:
    """What ``streamvlm data convert`` converts, and how."""

    kind: Annotated[Kind, Arg(positional=True, metavar="KIND")]
    """narration: Ego4D narration.json; livechat: Ego4D goalstep_*.json or COIN.json; coin: COIN
    benchmark samples; lta: Ego4D fho_lta_*.json samples."""
    annotations: Annotated[FilePath, Arg(positional=True, metavar="ANNOTATIONS")]
    """Annotation file in the dataset's own format."""
    videos_root: DirectoryPath
    """Data root holding the videos; conversations whose video is missing are skipped."""
    out: Path
    """Output conversation JSONL file (replaced only when the conversion succeeds)."""
    fps: ConversationFps = CONVERSATION_FPS
    """Frame rate of the conversations."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Seed of every random choice."""
    video_pattern: VideoPattern = "{video_uid}.mp4"
    """Video path relative to the root, from the video uid."""
    system_prompt: str = UPSTREAM_SYSTEM_PROMPT
    """System prompt of every conversation (default: the upstream one)."""
    refined: FilePath | None = None
    """narration: refined narrations {annotation_uid: 'You ...'} (from `streamvlm data refine`)."""
    instruction: str | None = None
    """narration: user instruction of every dialogue (default: one of the library's, seeded)."""
    window: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    """narration: seconds of video per dialogue."""
    idle_start: Probability = 0.0
    """narration: share of dialogues asked at their window's start, before the first narration,
    and answered there with --acknowledgement."""
    acknowledgement: str = ACKNOWLEDGEMENT
    """narration: the answer to an instruction asked before the first narration (--idle-start)."""
    max_questions: Annotated[PositiveInt, Field(le=100)] = 3
    """livechat: at most this many user questions per video."""
    wrong_reply_prob: Probability = 0.0
    """Share of dialogues given a wrong reply to correct or ignore (robustness augmentation)."""
    benchmarks: Annotated[str, AfterValidator(_benchmarks)] = ",".join(COIN_BENCHMARKS)
    """coin: comma-separated subset of step,task,next,procedure,procedure_goal."""
    subset: Literal["training", "testing"] | None = None
    """coin: only videos of this COIN subset."""
    lta_observed: Annotated[PositiveInt, Field(le=1000)] = 8
    """lta: actions observed before the question (Ego4D LTA: 8)."""
    lta_future: Annotated[PositiveInt, Field(le=1000)] = 20
    """lta: Z, the future actions to predict (Ego4D LTA: 20)."""
    backend: BackendOptions = field(default_factory=BackendOptions)
    """livechat: who writes the assistant's replies."""

    def __post_init__(self) -> None:
        inputs = [self.annotations, self.refined]
        check_output(self.out, name="--out", inputs=inputs)
        if self.kind == "coin":
            check_output(self.labels_file, name="--out (labels file)", inputs=inputs)

    @property
    def labels_file(self) -> Path:
        """COIN: the label spaces written beside the output (``OUT.labels.json``)."""
        return self.out.with_suffix(".labels.json")


@dataclass
class ConvertReport:
    """What :func:`convert_file` wrote."""

    written: int
    skipped: int = 0
    missing_videos: set[str] = field(default_factory=set)


def _records(options: ConvertOptions) -> Iterable[ConversationRecord]:
    from ...jsonfiles import read_json
    from ..formats import read_coin, read_goalstep, read_lta, read_narration
    from . import benchmarks as bm

    system = options.system_prompt
    if options.kind == "narration":
        from .narration import NarrationOptions, convert_narration, load_refined

        refined = load_refined(options.refined) if options.refined else None
        narration = NarrationOptions(fps=options.fps, window=options.window, system_prompt=system,
                                     instruction=options.instruction, seed=options.seed,
                                     video_pattern=options.video_pattern, idle_start=options.idle_start,
                                     acknowledgement=options.acknowledgement)
        return convert_narration(read_narration(options.annotations), narration, refined)
    if options.kind == "livechat":
        from ..generate.options import make_backend
        from ..rule_responder import RuleResponder
        from .livechat import LiveChatOptions, coin_tasks, convert_livechat, goalstep_tasks

        data = read_json(options.annotations)
        if isinstance(data, dict) and "database" in data:
            tasks = coin_tasks(read_coin(options.annotations), options.video_pattern)
        else:
            tasks = goalstep_tasks(read_goalstep(options.annotations), options.video_pattern)
        backend = make_backend(options.backend)
        if backend is None:
            responder = RuleResponder()
        else:
            from ..generate.responder import LLMResponder

            responder = LLMResponder(backend)
        chat = LiveChatOptions(fps=options.fps, seed=options.seed, system_prompt=system,
                               max_questions=options.max_questions)
        return convert_livechat(tasks, responder, chat, progress=True)
    bench = bm.BenchmarkOptions(fps=options.fps, system_prompt=system, video_pattern=options.video_pattern,
                                lta_observed=options.lta_observed, lta_future=options.lta_future)
    if options.kind == "coin":
        videos = read_coin(options.annotations)
        labels = bm.coin_label_spaces(videos)
        write_text_atomic(options.labels_file, json.dumps(labels, ensure_ascii=False, indent=1) + "\n", name="--out")
        if options.subset:
            videos = [v for v in videos if v.subset == options.subset]
        return bm.coin_benchmarks(videos, labels, [b for b in options.benchmarks.split(",") if b], bench)
    return bm.lta_samples(read_lta(options.annotations), bench)


def convert_file(options: ConvertOptions, *, progress: bool = True) -> ConvertReport:
    """Convert ``options.annotations`` into ``options.out`` (see module doc)."""
    from tqdm import tqdm

    from ..augment import AugmentOptions, insert_wrong_reply
    from ..jsonl import check_video_path, write_jsonl

    root = Path(options.videos_root)
    records = list(tqdm(_records(options), desc=f"convert {options.kind}", unit="conv", disable=not progress))
    augment = AugmentOptions(options.wrong_reply_prob, seed=options.seed)
    kept, missing = [], set()
    for record in records:
        try:
            path = check_video_path(record.video, root)
        except ValueError as exc:
            raise UserError(f"--video-pattern gives a bad path: {exc}") from None
        if not path.is_file():
            missing.add(record.video)
            continue
        kept.append(insert_wrong_reply(record, augment))
    count = write_jsonl(kept, options.out)
    return ConvertReport(count, len(records) - len(kept), missing)
