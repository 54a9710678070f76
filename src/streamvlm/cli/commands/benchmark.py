"""``streamvlm benchmark``: OVO-Bench, StreamingBench and ProactiveVideoQA, offline as their
harnesses run them and online as a user lives it; their official scoring; synthetic editions.

    streamvlm benchmark ovo-bench|streamingbench|proactivevideoqa ANNOTATIONS --videos DIR [...]
    streamvlm benchmark score ovo-bench RESULTS...
    streamvlm benchmark make-synthetic WORLD --out DIR
    streamvlm benchmark plot RUN.jsonl... --out FIGURE.png

See ``docs/benchmarks.md`` and :mod:`streamvlm.benchmarks`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import field, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from ...engine.narration import NARRATE_INSTRUCTION
from ...engine.options import GenerationConfig, StreamOptions
from ...errors import UserError
from ...model.loading import ModelSource
from ...outputs import check_output
from ...settings import Arg, Device, PositiveInt, settings

RUNS = ("ovo-bench", "streamingbench", "proactivevideoqa")
ACTIONS = (*RUNS, "score", "make-synthetic", "plot")


@settings
class JudgeOptions:
    """Judge (ProactiveVideoQA ratings; what the model's own replies say, online)."""

    judge: Literal["rule", "text", "transformers", "openai"] = "text"
    """rule: the synthetic world's grammar and step recipes (synthetic editions); text: normalised
    containment; transformers / openai: a chat model (--judge-model, --judge-base-url)."""
    judge_model: str | None = None
    """The judge's model: a folder or hub id (transformers), or the served model name (openai)."""
    judge_base_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """API root including /v1 of an OpenAI-compatible endpoint (openai)."""
    judge_api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the endpoint's API key ('' sends none)."""
    judge_device: Device = "auto"
    """Torch device of a transformers judge."""

    def __post_init__(self) -> None:
        if self.judge in ("transformers", "openai") and not self.judge_model:
            raise UserError(f"--judge {self.judge}: name the judge's model with --judge-model")
        if self.judge == "openai" and not self.judge_base_url:
            raise UserError("--judge openai: give the endpoint with --judge-base-url (e.g. http://127.0.0.1:8000/v1)")


@settings
class Options:
    """Options of ``streamvlm benchmark``."""

    action: Annotated[str, Arg(positional=True, metavar="NAME")]
    """ovo-bench, streamingbench or proactivevideoqa (run it on ANNOTATIONS); score (official
    results files: score ovo-bench RESULTS...); make-synthetic (WORLD --out DIR); plot (RUN.jsonl...
    --out FIGURE.png)."""
    inputs: Annotated[list[str], Arg(positional=True, metavar="FILE", nargs="*")] = field(default_factory=list)
    """ANNOTATIONS: annotation files as the benchmark publishes them (one for OVO-Bench; several
    StreamingBench question files or ProactiveVideoQA subsets make one run); or what the action reads."""
    videos: Path | None = None
    """The folder the annotation file's video paths are relative to."""
    model: ModelSource = field(default_factory=ModelSource)
    """The model."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decisions and replies."""
    stream: StreamOptions = field(default_factory=StreamOptions)
    """Streaming (--fps, --kv-budget)."""
    mode: Literal["offline", "online"] = "offline"
    """offline: a fresh session per probe over its clip, as the official harnesses; online: one
    stream per video, every question at its own time, forward and proactive probes read from what
    the model says by itself."""
    answer: Literal["text", "options"] = "text"
    """text: the model's own words, scored as the official scripts score them; options: the
    candidate the model finds most likely at the question's point (option, count, Yes/No)."""
    options_as: Literal["text", "letter"] = "text"
    """With --answer options: score each option's text (then the end of the reply), or its letter alone."""
    prompt: Literal["benchmark", "plain"] = "benchmark"
    """benchmark: the official harness's prompt; plain: the question alone (for models trained on
    short questions, such as the embedded one)."""
    instruction: str = NARRATE_INSTRUCTION
    """Online: asked at 0 s of every stream, its answer not scored ('' asks nothing)."""
    tasks: Annotated[list[str], Arg(nargs="+")] = field(default_factory=list)
    """Only these tasks (names as in the file, or StreamingBench's abbreviations such as ACP)."""
    limit: PositiveInt | None = None
    """Only the first N probes of the file."""
    blind: bool = True
    """Also run the blind baseline (each video's frames replaced by the next video's)."""
    batch: Annotated[int, Field(ge=1, le=1024)] = 8
    """Sessions advanced together by the batched step."""
    chunk: Annotated[int, Field(ge=1, le=600)] = 3
    """ProactiveVideoQA offline: seconds per clip (its harness's video_chunk_sec)."""
    judge: JudgeOptions = field(default_factory=JudgeOptions)
    """Judge."""
    out: Path | None = None
    """A run: its JSON lines (default BENCHMARK-MODE-ANSWER.jsonl; a re-run resumes it);
    make-synthetic: the editions' folder; plot: the PNG file."""
    no_progress: bool = False
    """Hide the progress bar."""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise UserError(f"unknown benchmark or action {self.action!r} (expected one of {', '.join(ACTIONS)})")
        if self.action in RUNS:
            self._check_run()
        elif self.action == "score":
            if len(self.inputs) < 2 or self.inputs[0] != "ovo-bench":
                raise UserError("score: expected `score ovo-bench RESULTS...` (OVO-Bench results files or folders)")
        elif self.action == "make-synthetic":
            if len(self.inputs) != 1 or not (Path(self.inputs[0]) / "world.json").is_file():
                raise UserError("make-synthetic: expected one WORLD folder made by `streamvlm synth` (with world.json)")
            if self.out is None:
                raise UserError("make-synthetic: --out DIR is required (where the editions are written)")
            check_output(self.out, name="--out", folder=True)
        else:
            from ...evaluation.plots import require_matplotlib

            if not self.inputs:
                raise UserError("plot: name the runs' JSON-lines files")
            if self.out is None or self.out.suffix.lower() != ".png":
                raise UserError("plot: --out FIGURE.png is required")
            for name in self.inputs:
                if not Path(name).is_file():
                    raise UserError(f"plot: {name}: no such file")
            check_output(self.out, name="--out", inputs=self.inputs)
            require_matplotlib("plot")

    def _check_run(self) -> None:
        if not self.inputs:
            raise UserError(f"{self.action}: name the ANNOTATIONS file(s)")
        if self.action == "ovo-bench" and len(self.inputs) != 1:
            raise UserError(f"ovo-bench: expected one annotation file, got {len(self.inputs)}")
        for name in self.inputs:
            if not Path(name).is_file():
                raise UserError(f"{name}: no such file")
        if self.videos is None or not self.videos.is_dir():
            raise UserError(f"--videos: {'required' if self.videos is None else f'{self.videos}: no such folder'} "
                            "(the folder the annotation file's video paths are relative to)")
        if self.stream.realtime:
            raise UserError("--realtime: benchmarks stream every frame; drop --realtime")
        check_output(self.run_file, name="--out", inputs=self.inputs)

    @property
    def run_file(self) -> Path:
        return self.out if self.out is not None else Path(f"{self.action}-{self.mode}-{self.answer}.jsonl")


def run(options: Options) -> int:
    if options.action == "score":
        return _score(options)
    if options.action == "make-synthetic":
        return _make_synthetic(options)
    if options.action == "plot":
        return _plot(options)
    return _run(options)


def _run(options: Options) -> int:
    from tqdm import tqdm

    from ...benchmarks import report
    from ...benchmarks.records import RecordFile
    from ...benchmarks.runner import Runner, Settings, check_videos, load_probes
    from ...benchmarks.stream import Streamer

    probes = []
    for index, file in enumerate(options.inputs):
        found = load_probes(options.action, file, options.tasks)
        check_videos(found, options.videos, file)
        if len(options.inputs) > 1:  # keys stay unique across the files of one run
            found = [replace(p, key=f"{index}:{p.key}") for p in found]
        probes += found
    if not probes:
        raise UserError(f"no probe of the tasks {' '.join(options.tasks)} in {' '.join(options.inputs)}")
    videos = [p.video for p in probes]
    probes = probes[: options.limit]
    annotations = " ".join(options.inputs)
    judge = _judge(options.judge)
    streamer = Streamer(options.model, options.generation, options.stream.kv_budget, options.stream.fps)
    settings = Settings(options.action, annotations, options.videos, options.mode, options.answer, options.options_as,
                        options.prompt, options.instruction.strip() if options.mode == "online" else "",
                        options.batch, options.chunk)
    header = {"benchmark": options.action, "annotations": annotations, "mode": options.mode,
              "answer": options.answer, "options_as": options.options_as, "prompt": options.prompt,
              "instruction": settings.instruction, "limit": options.limit, "tasks": options.tasks,
              "model": options.model.model or "embedded default model", "llm": options.model.llm,
              "vision": options.model.vision, "dtype": str(streamer.model.dtype).removeprefix("torch."),
              "judge": judge.name, "chunk": options.chunk if options.action == "proactivevideoqa" else None,
              "max_new_tokens": options.generation.max_new_tokens, **streamer.describe()}
    records = RecordFile(options.run_file, header)
    start, frames = time.monotonic(), [0]
    try:
        runner = Runner(settings, probes, streamer, judge, records, blind=options.blind, videos=videos)
        bar = tqdm(total=runner.remaining(), unit="probe", desc=options.action, disable=options.no_progress,
                   file=sys.stderr, dynamic_ncols=True)

        def stepped(n: int) -> None:
            frames[0] += n
            bar.set_postfix_str(f"{frames[0] / max(1e-9, time.monotonic() - start):.0f} frames/s", refresh=False)

        runner.progress, runner.frames_done = bar.update, stepped
        try:
            runner.run()
        finally:
            bar.close()
    finally:
        records.close()
    seconds = time.monotonic() - start
    print(report.describe(header))
    print(report.table(options.action, records.records))
    passes = ", ".join(runner.passes)
    print(f"{len(records.records)} probe results ({passes}) in {options.run_file}; this run: {frames[0]} frames "
          f"in {seconds:.1f} s ({frames[0] / max(seconds, 1e-9):.0f} frames/s)")
    return 0


def _judge(options: JudgeOptions):
    from ...benchmarks.judges import make_judge

    backend = None
    if options.judge in ("transformers", "openai"):
        from ...data.generate.options import BackendOptions, make_backend

        backend = make_backend(BackendOptions(backend=options.judge, model=options.judge_model,
                                              base_url=options.judge_base_url,
                                              api_key_env=options.judge_api_key_env, device=options.judge_device,
                                              max_new_tokens=8))
    return make_judge(options.judge, backend)


def _score(options: Options) -> int:
    from ...benchmarks import ovobench

    results = ovobench.load_results(options.inputs[1:])
    hits = ovobench.score_results(results)
    summary = ovobench.summarize(hits)
    print("\n".join(ovobench.official_lines(summary, hits)))
    print()
    print(ovobench.table([("results", summary)]))
    if summary["overall"] is None:
        print("no overall average: the results hold no probe of "
              + ", ".join(g for g, v in summary["groups"].items() if v is None))
    return 0


def _make_synthetic(options: Options) -> int:
    from ...benchmarks.runner import load_probes
    from ...benchmarks.synthetic import make_editions

    written = make_editions(options.inputs[0], options.out)
    for name, path in written.items():
        benchmark = name.split(" ")[0]
        count = len(load_probes(benchmark, path))
        print(f"{name}: {path} ({count} probes)")
    print(f"run them with --videos {options.inputs[0]}")
    return 0


def _plot(options: Options) -> int:
    from ...benchmarks import report
    from ...benchmarks.records import read_run

    runs = []
    for name in options.inputs:
        header, records = read_run(name)
        label = f"{header['mode']} {header['answer']}" + (" (letter)" if header.get("options_as") == "letter"
                                                          and header["answer"] == "options" else "")
        runs.append((label, header["benchmark"], records))
    report.plot(runs, options.out, title="per-task scores: the model (bars), blind (ticks), chance (dashes)")
    print(f"wrote {options.out}")
    return 0
