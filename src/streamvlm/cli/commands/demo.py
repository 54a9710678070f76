"""``streamvlm demo``: watch a freshly generated synthetic clip with the model, live.

The clip is a new video of the synthetic world (``streamvlm synth``, one 64-pixel test video of a
random or given seed) that no model has seen. It is streamed through the model with the parallel
pipeline; the model's narration is printed as it happens, next to the ground truth (the world's
narrations, rule-refined to "You ..."), and three timed questions (past / now / next) are asked and
printed with their rule-written answers. Two lines of scores end it: the paper's streaming metrics
(TimeDiff, Fluency, LM-correctness) on the clip's narration conversation, which are teacher-forced
(the gold history in the cache), then the live scores of what was printed (the model's own replies
against the truth lines, :mod:`streamvlm.evaluation.live_eval`) and the pipeline's speed. With
``--video`` any video is narrated instead (no ground truth, no scores).
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ...engine.console import EventPrinter
from ...engine.narration import NARRATE_INSTRUCTION
from ...engine.options import GenerationConfig
from ...model.loading import ModelSource
from ...settings import settings

if TYPE_CHECKING:
    from ...engine.assistant import TextEvent
    from ...model.vlm import StreamVLM

CLIP_SIZE = 64
NARRATE = NARRATE_INSTRUCTION
"""Asked at 0 s, and the instruction of the scored conversation (the upstream evaluation prompt)."""
QUESTIONS = (("past", 1 / 3, "What have I done so far to {goal}?"),
             ("now", 1 / 2, "What am I doing right now?"),
             ("next", 2 / 3, "What should I do next to {goal}?"))
"""(kind, fraction of the clip, question) of the timed questions; templates of the live-chat data."""


@settings
class Options:
    """Options of ``streamvlm demo``."""

    model: ModelSource = field(default_factory=ModelSource)
    """The model."""
    seed: Annotated[int, Field(ge=0, lt=2**31)] | None = None
    """Seed of the synthetic clip (default: a random one; the first line says which, to replay it)."""
    duration: Annotated[float, Field(ge=4, le=600)] = 40.0
    """Length of the synthetic clip in seconds (4 to 600)."""
    video: str | None = None
    """Narrate this video instead of a synthetic clip (no ground truth, no scores)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decisions and replies."""
    clips: Annotated[int, Field(ge=1, le=100_000)] | None = None
    """Play this many clips (seeds --seed, --seed + 1, ..., from 0 by default) without printing
    their lines, then say how many replies hold template text (``User:``, ``Assistant:``, a
    bracket) or say a run of 3 words 3 times, which ones (the first 20), and the live scores of all
    the clips' replies."""
    no_progress: bool = False
    """Hide the progress bar."""


@dataclass(frozen=True)
class TruthLine:
    """A ground-truth narration, printed once the stream reaches ``time``."""

    time: float
    text: str


class DemoPrinter(EventPrinter):
    """Prints the model's events; after the model's answer to a timed question, the true answer."""

    def __init__(self, answers: dict[str, str], quiet: bool = False) -> None:
        super().__init__()
        self.answers = answers
        self.quiet = quiet
        """Record the events without printing them."""
        self._asked: str | None = None
        self.said: list[TextEvent] = []
        """Every event printed, in order (for the live scores)."""

    def __call__(self, time: float, role: str, text: str) -> None:
        from ...engine.assistant import TextEvent

        super().__call__(time, role, text)
        self.said.append(TextEvent(time, role, text))
        if role == "user":
            self._asked = text
        elif self._asked is not None:
            truth = self.answers.get(self._asked)
            if truth:
                self.line(f"({time:.1f}s) truth: {truth}")
            self._asked = None

    def line(self, text: str) -> None:
        if not self.quiet:
            super().line(text)

    def truth(self, line: TruthLine) -> None:
        self.line(f"({line.time:.1f}s) truth: {line.text}")


def run(options: Options) -> int:
    from ...engine.narration import preflight
    from ...errors import UserError
    from ...model.loading import load_model

    if options.video is not None:
        if options.clips is not None:
            raise UserError("--clips plays synthetic clips: it does not take --video")
        preflight(options.video)
    model = load_model(options.model)
    if options.video is not None:
        return _narrate_video(model, options)
    with tempfile.TemporaryDirectory(prefix="streamvlm-demo-") as tmp:
        if options.clips is not None:
            return _clips(model, options, Path(tmp))
        return _synthetic(model, options, Path(tmp))


def _narrate_video(model: StreamVLM, options: Options) -> int:
    from ...engine.console import play, summary
    from ...engine.defaults import resolve_stream
    from ...engine.narration import expected_frames, open_for
    from ...engine.options import TimedQuery

    if options.model.model is None:
        from .narrate import say_embedded_note

        say_embedded_note(options.video)
    setup = resolve_stream(model, generation=options.generation)
    source = open_for(setup, options.video)
    with source:
        pipeline = play(setup.assistant(), source, [TimedQuery(0.0, NARRATE)], EventPrinter(),
                        progress=not options.no_progress, total=expected_frames(source, setup.fps))
    print(summary(pipeline, source.stats), flush=True)
    return 0


@dataclass
class PlayedClip:
    """One synthetic clip streamed through the model."""

    world: Any
    """The clip's world (:class:`~streamvlm.data.synth.SynthWorld`, one video)."""
    truths: list[TruthLine]
    printer: DemoPrinter
    """What was said (``printer.said``)."""
    pipeline: Any
    """The finished :class:`~streamvlm.engine.pipeline.StreamPipeline` (its stats)."""
    frames: dict[int, Any]
    """Decoded frames by grid index, uint8 ``[H, W, 3]`` (for the teacher-forced scores)."""

    @property
    def live(self) -> Any:
        """The live :class:`~streamvlm.evaluation.live_eval.WindowScore` of the replies against
        the truth lines (answers to the questions are not narration replies: left out)."""
        from ...evaluation.live_eval import Narration, score_stream, split_events

        duration, end = self.world.videos[0].duration, self.pipeline.stats.video_time
        replies, answers = split_events(self.printer.said)
        return score_stream([Narration(t.time, t.text) for t in self.truths], replies,
                            window=max(duration, end + 1.0), end=end, duration=duration, answers=answers).overall


def _play_clip(setup: Any, seed: int, duration: float, folder: Path, *, quiet: bool, progress: bool) -> PlayedClip:
    """Generate the clip of ``seed`` in ``folder`` and stream it through ``setup``'s model with
    the narration instruction at 0 s and the timed questions; its lines printed unless ``quiet``."""
    from ...data.generate import rule_refine
    from ...data.responder import ResponseRequest, Step
    from ...data.rule_responder import RuleResponder
    from ...data.synth import generate_world
    from ...engine.console import play
    from ...engine.narration import expected_frames, frame_fit
    from ...engine.options import TimedQuery
    from ...video import open_source

    world = generate_world(folder, 1, seed, duration=duration, size=CLIP_SIZE, split="test", workers=1,
                           progress=False)
    spec = world.videos[0]
    if not quiet:
        print(f"synthetic clip {spec.uid}: {spec.duration:g} s, goal: {spec.goal} (replay it with --seed {seed})",
              flush=True)
    truths = sorted((TruthLine(a.time, rule_refine(a.narration)) for a in spec.actions), key=lambda t: t.time)
    steps = tuple(Step(s.start, s.end, s.description) for s in spec.steps)
    queries = [TimedQuery(0.0, NARRATE)]
    answers = {}
    for kind, fraction, template in QUESTIONS:
        when = round(fraction * spec.duration, 1)
        question = template.format(goal=spec.goal)
        queries.append(TimedQuery(when, question))
        answers[question] = RuleResponder().answer(ResponseRequest(spec.uid, when, kind, steps, spec.goal, question))

    fps = setup.fps
    printer = DemoPrinter(answers, quiet=quiet)
    frames: dict[int, object] = {}
    due = list(truths)

    def on_step(step) -> None:
        while due and due[0].time <= step.time:
            printer.truth(due.pop(0))

    def recorded(source):
        for frame in source:  # the pipeline's reader thread; the images are kept for scoring
            frames[round(frame.time * fps)] = frame.image
            yield frame

    with open_source(world.video_path(spec.uid), fps=fps, fit=frame_fit(setup.model)) as source:
        pipeline = play(setup.assistant(), recorded(source), queries, printer,
                        progress=progress, total=expected_frames(source, fps), on_step=on_step)
    for line in due:
        printer.truth(line)
    return PlayedClip(world, truths, printer, pipeline, frames)


def _synthetic(model: StreamVLM, options: Options, tmp: Path) -> int:
    from ...engine.defaults import resolve_stream
    from ...evaluation.live_eval import summary_line

    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1_000_000)
    setup = resolve_stream(model, generation=options.generation)
    clip = _play_clip(setup, seed, options.duration, tmp / "world", quiet=False, progress=not options.no_progress)
    spec = clip.world.videos[0]
    scores = _score(model, clip.world.root, spec.uid, clip.frames, setup.fps, options.generation.threshold)
    print(f"teacher-forced (gold history in the cache): TimeDiff {_value(scores['time_diff'], '{:.1f}s')} | "
          f"Fluency {_value(scores['fluency'], '{:.0%}')} | "
          f"LM-correctness {_value(scores['lm_correctness'], '{:.0%}')}", flush=True)
    print(f"live (its own replies above): {summary_line(clip.live)} | {clip.pipeline.stats.fps:.1f} frames/s",
          flush=True)
    return 0


def _clips(model: StreamVLM, options: Options, tmp: Path) -> int:
    """``--clips N``: N clips played quietly, then what their replies hold and their live scores."""
    import shutil

    from tqdm import tqdm

    from ...engine.defaults import resolve_stream
    from ...evaluation.live_eval import has_loop, has_template_text, split_events, summary_line

    first = options.seed or 0
    setup = resolve_stream(model, generation=options.generation)
    counts = {kind: [0, 0, 0] for kind in ("narration", "answer")}  # replies, template text, loops
    flagged, total = [], None
    for seed in tqdm(range(first, first + options.clips), desc="clips", unit="clip", disable=options.no_progress):
        clip = _play_clip(setup, seed, options.duration, tmp / str(seed), quiet=True, progress=False)
        shutil.rmtree(tmp / str(seed))
        total = clip.live if total is None else total + clip.live
        replies, answers = split_events(clip.printer.said)
        for kind, said in (("narration", replies), ("answer", answers)):
            for reply in said:
                found = [has_template_text(reply.text), has_loop(reply.text)]
                counts[kind] = [n + x for n, x in zip(counts[kind], [1, *found])]
                if any(found):
                    flagged.append((seed, kind, reply, found))
    narration, answer = counts["narration"], counts["answer"]
    print(f"{options.clips} clips (seeds {first}-{first + options.clips - 1}), {narration[0]} narration replies and "
          f"{answer[0]} answers: template text in {narration[1]} and {answer[1]}, a 3-word run said 3 times in "
          f"{narration[2]} and {answer[2]}")
    for seed, kind, reply, found in sorted(flagged, key=lambda f: f[1] != "narration")[:20]:
        what = " and ".join(name for name, hit in zip(("template text", "loop"), found) if hit)
        text = reply.text.replace("\n", "\\n")
        print(f"  seed {seed}, {kind} at {reply.time:.1f}s ({what}): {text}")
    print(f"live, all clips: {summary_line(total)}", flush=True)
    return 0


def _score(model: StreamVLM, world_root: Path, uid: str, images: dict, fps: float, threshold: float) -> dict:
    """Streaming metrics of ``model`` on the clip's narration conversation (refined texts), with
    the frames the stream decoded (``images``: grid index -> uint8 ``[H, W, 3]``)."""
    import numpy as np
    import torch

    from ...data.convert.narration import NarrationOptions, convert_narration
    from ...data.convert.timeline import frame_at
    from ...data.formats.ego4d import NarrationVideo, read_narration
    from ...data.generate import rule_refine
    from ...evaluation import EvalSample, evaluate_dataset

    available = 0
    while available in images:
        available += 1
    videos = []
    for video in read_narration(world_root / "annotations" / "narration.json"):
        passes = {name: tuple(n for n in items if frame_at(n.time, fps) < available)
                  for name, items in video.passes.items()}
        videos.append(NarrationVideo(video.video_uid, {k: v for k, v in passes.items() if v}))
    refined = {n.annotation_uid: rule_refine(n.text) for v in videos for items in v.passes.values() for n in items}
    options = NarrationOptions(fps=fps, window=max(300.0, available / fps + 1.0), instruction=NARRATE)
    records = [r for r in convert_narration(videos, options, refined) if r.meta["video_uid"] == uid]
    samples = []
    with torch.inference_mode():
        for record in records:
            first, stop = record.frame_range()
            pixels = torch.from_numpy(np.stack([images[i] for i in range(first, stop)])).to(model.device)
            tokens = model.frame_encoder.encode_frames(pixels)
            samples.append(EvalSample(record.conversation, tokens, record.fps, record.id))
    return evaluate_dataset(model, samples, threshold)


def _value(value: float | None, pattern: str) -> str:
    return "-" if value is None or not math.isfinite(value) else pattern.format(value)
