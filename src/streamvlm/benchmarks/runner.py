"""Running a benchmark: its probes through the model (and the blind baseline), offline or online,
each probe scored and written the moment it finishes.

* ``offline``, as the official harnesses: a fresh session per probe over the clip up to the
  probe's time (from its start: StreamingBench proactive polls, ProactiveVideoQA 3-second chunks),
  the question at the end, its reply (``--answer text``) or the likelihood of each candidate
  (``--answer options``);
* ``online``, as a user lives it: one session per video at the model's fps, the instruction at
  0 s, every question asked at its own time in that session (``--answer options``: every probe
  scored by likelihood at its time, the stream untouched). OVO-Bench REC and SSR are not asked:
  they are read from what the model says by itself (REC: its replies reporting the activity so far;
  SSR: whether its latest reply reports the step), CRR from whether it says the answer after the
  question, StreamingBench proactive from its first reply after the question that says the
  expected output, ProactiveVideoQA from every reply. A judge decides what a reply says.

The blind baseline is the same run with each video's frames replaced by those of the next video
of the file (looped to its length): what the model scores without seeing the right video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from . import ovobench, proactivevideoqa, streamingbench
from .judges import Judge
from .probes import YES_NO, Probe
from .records import RecordFile
from .stream import Ask, Frames, Outcome, Plan, Streamer, best

BENCHMARKS = ("ovo-bench", "streamingbench", "proactivevideoqa")
PASSES = ("model", "blind")


def load_probes(benchmark: str, path: str | Path, tasks: Sequence[str] = ()) -> list[Probe]:
    """The probes of one annotation file of ``benchmark`` (``tasks``: only these tasks)."""
    if benchmark == "ovo-bench":
        probes = ovobench.probes(ovobench.load(path))
    elif benchmark == "streamingbench":
        return streamingbench.load(path, list(tasks) or None)
    else:
        probes = proactivevideoqa.load(path)
    return [p for p in probes if p.task in tasks] if tasks else probes


def check_videos(probes: Sequence[Probe], root: Path, annotations: str) -> None:
    """Every video named exists under ``root`` (checked before any model loads)."""
    for probe in probes:
        if not (root / probe.video).is_file():
            raise DataError(f"no such video under --videos {root}: {probe.video}", file=annotations,
                            record=f"probe {probe.key}", field="video")


def score(benchmark: str, probe: Probe, response: Any) -> float:
    if benchmark == "ovo-bench":
        return ovobench.score(probe, response)
    return streamingbench.score(probe, response)


@dataclass(frozen=True)
class Settings:
    """How a run goes (its JSON-lines header holds them all)."""

    benchmark: str
    annotations: str
    videos: Path
    mode: str
    answer: str
    options_as: str
    prompt: str
    instruction: str
    batch: int
    chunk: int


class FrameStore:
    """Frame embeddings per video (a few kept), seen directly or, for the blind pass, through the
    next video of the file."""

    def __init__(self, streamer: Streamer, settings: Settings, videos: Sequence[str], keep: int = 4) -> None:
        self.streamer, self.root = streamer, settings.videos
        self.order = list(dict.fromkeys(videos))
        self.cache: dict[str, Frames] = {}
        self.keep = keep

    def own(self, video: str) -> Frames:
        if video not in self.cache:
            if len(self.cache) >= self.keep:
                self.cache.pop(next(iter(self.cache)))
            self.cache[video] = self.streamer.frames(self.root / video)
        return self.cache[video]

    def get(self, video: str, blind: bool) -> Frames:
        frames = self.own(video)
        if not blind:
            return frames
        other = self.order[(self.order.index(video) + 1) % len(self.order)]
        return frames.seen_through(self.own(other))


class Runner:
    """One run of one annotation file: passes, plans, scores, records."""

    def __init__(self, settings: Settings, probes: Sequence[Probe], streamer: Streamer, judge: Judge,
                 records: RecordFile, *, blind: bool = True, videos: Sequence[str] = (),
                 progress: Callable[[int], None] | None = None,
                 frames_done: Callable[[int], None] | None = None) -> None:
        """``videos``: every video of the annotation files, in order (the blind pass shows each
        probe the next one's frames; default: the probes' own videos)."""
        self.settings, self.probes, self.streamer, self.judge = settings, list(probes), streamer, judge
        self.records = records
        self.store = FrameStore(streamer, settings, list(videos) or [p.video for p in probes])
        self.passes = PASSES if blind and len(self.store.order) > 1 else PASSES[:1]
        self.progress, self.frames_done = progress or (lambda n: None), frames_done

    def remaining(self) -> int:
        done = self.records.done()
        return sum((name, p.key) not in done for name in self.passes for p in self.probes)

    def run(self) -> None:
        done = self.records.done()
        for name in self.passes:
            todo = [p for p in self.probes if (name, p.key) not in done]
            if not todo:
                continue
            if self.settings.mode == "offline":
                self._offline(name, todo)
            else:
                self._online(name, todo)

    # ------------------------------------------------------------------ helpers
    def _query(self, probe: Probe) -> str:
        return probe.prompt if self.settings.prompt == "benchmark" else probe.question

    def _candidates(self, texts: Sequence[str]) -> list[list[int]]:
        letters = self.settings.options_as == "letter"
        return [self.streamer.continuation(t, end=not letters) for t in texts]

    def _scored_ask(self, frame: int, tag: Any, probe: Probe) -> Ask:
        texts = probe.candidates(self.settings.options_as)
        return Ask(frame, tag, self._query(probe), self._candidates(texts))

    def _record(self, name: str, probe: Probe, response: Any, extra: dict[str, Any] | None = None) -> None:
        record = {"pass": name, "key": probe.key, "task": probe.task, "video": probe.video, "time": probe.time,
                  "kind": probe.kind, "question": probe.question, "response": response}
        if probe.kind == "replies":
            record.update(extra or {})
        else:
            record["score"] = score(self.settings.benchmark, probe, response)
            record["chance"] = probe.chance
            if probe.kind == "proactive":
                record["on_time"] = streamingbench.on_time(probe, response)
        self.records.write(record)
        self.progress(1)

    def _run(self, plans: Iterator[Plan], on_done: Callable[[Plan, Outcome], None]) -> None:
        self.streamer.run(plans, on_done, batch=self.settings.batch, on_frames=self.frames_done)

    # ------------------------------------------------------------------ offline
    def _offline(self, name: str, todo: list[Probe]) -> None:
        blind = name == "blind"
        plain = [p for p in todo if p.kind in ("choice", "count", "yesno")]
        by_key = {p.key: p for p in todo}

        def plans() -> Iterator[Plan]:
            if self.settings.answer == "options":
                # scoring leaves a stream as it was, and a fresh session fed the clip up to a probe's
                # time is the stream up to that time: one session per video and start serves them all
                groups: dict[tuple[str, float], list[Probe]] = {}
                for probe in plain:
                    groups.setdefault((probe.video, probe.start), []).append(probe)
                for (video, start), probes in groups.items():
                    frames = self.store.get(video, blind)
                    asks = [self._scored_ask(frames.index_at(p.time), p.key, p) for p in probes]
                    yield Plan(frames, frames.index_at(start), max(a.frame for a in asks), asks,
                               tag=[p.key for p in probes])
                return
            for probe in plain:
                frames = self.store.get(probe.video, blind)
                last = frames.index_at(probe.time)
                yield Plan(frames, frames.index_at(probe.start), last, [Ask(last, probe.key, self._query(probe))],
                           tag=[probe.key])

        def finished(plan: Plan, outcome: Outcome) -> None:
            for key in plan.tag:
                probe = by_key[key]
                if self.settings.answer == "options":
                    response = probe.pick(best(outcome.scores[key]))
                else:
                    response = outcome.answers.get(key)
                self._record(name, probe, response)

        self._run(plans(), finished)
        self._offline_proactive(name, [p for p in todo if p.kind == "proactive"])
        self._offline_replies(name, [p for p in todo if p.kind == "replies"])

    def _offline_proactive(self, name: str, todo: list[Probe]) -> None:
        """StreamingBench's polling: every second from the question's time + 1 s to the expected
        time + 4 s, a clip from the question's time and "is it time to output ...?"; the question
        itself on the clip of the first yes."""
        if not todo:
            return
        blind, options = name == "blind", self.settings.answer == "options"
        polls: dict[str, dict[float, bool | str]] = {p.key: {} for p in todo}

        def poll_plans() -> Iterator[Plan]:
            for probe in todo:
                frames = self.store.get(probe.video, blind)
                question = streamingbench.PROACTIVE_TEMPLATE.format(
                    streamingbench.poll_question(probe.question, probe.truth["output"]))
                if self.settings.prompt == "plain":
                    question = streamingbench.poll_question(probe.question, probe.truth["output"])
                t = probe.start + 1
                while t <= probe.truth["time"] + 4:
                    last = frames.index_at(t)
                    tag = (probe.key, t)
                    ask = (Ask(last, tag, question, self._candidates(YES_NO)) if options
                           else Ask(last, tag, question))
                    yield Plan(frames, frames.index_at(probe.start), last, [ask])
                    t += 1

        def polled(plan: Plan, outcome: Outcome) -> None:
            key, t = plan.asks[0].tag
            if options:
                polls[key][t] = YES_NO[best(outcome.scores[(key, t)])] == "Yes"
            else:
                polls[key][t] = outcome.answers.get((key, t), "")

        self._run(poll_plans(), polled)
        by_key = {p.key: p for p in todo}
        decided: dict[str, float] = {}
        for key, answers in polls.items():
            for t in sorted(answers):
                said = answers[t]
                if said is True or (isinstance(said, str) and "yes" in said.strip().lower()):
                    decided[key] = t
                    break

        def answer_plans() -> Iterator[Plan]:
            for key, t in decided.items():
                probe = by_key[key]
                frames = self.store.get(probe.video, blind)
                yield Plan(frames, frames.index_at(probe.start), frames.index_at(t), [
                    Ask(frames.index_at(t), key, self._query(probe))])

        def answered(plan: Plan, outcome: Outcome) -> None:
            key = plan.asks[0].tag
            self._record(name, by_key[key], {"time": decided[key], "text": outcome.answers.get(key, "")})

        self._run(answer_plans(), answered)
        for key in polls.keys() - decided.keys():  # never yes: the dialogue ends with the last poll
            last = max(polls[key])
            said = polls[key][last]
            self._record(name, by_key[key], {"time": last, "text": said if isinstance(said, str) else "No"})

    def _offline_replies(self, name: str, todo: list[Probe]) -> None:
        """ProactiveVideoQA offline: a clip per chunk, the question at its end, each reply a prediction."""
        if not todo:
            return
        blind = name == "blind"
        predictions: dict[str, list[tuple[float, str]]] = {p.key: [] for p in todo}
        left = {p.key: 0 for p in todo}
        by_key = {p.key: p for p in todo}

        def plans() -> Iterator[Plan]:
            for probe in todo:
                frames = self.store.get(probe.video, blind)
                pieces = proactivevideoqa.chunks(probe, frames.times[-1] + 1 / self.streamer.fps,
                                                 self.settings.chunk)
                left[probe.key] = len(pieces)
                if not pieces:
                    self._finish_replies(name, probe, [])
                for start, end, question in pieces:
                    first = min(frames.index_at(start - 1e-6) + (frames.times[0] < start - 1e-6),
                                frames.index_at(end))
                    yield Plan(frames, first, frames.index_at(end), [Ask(frames.index_at(end), (probe.key, end),
                                                                         question)])

        def finished(plan: Plan, outcome: Outcome) -> None:
            key, end = plan.asks[0].tag
            text = outcome.answers.get((key, end), "")
            if text:
                predictions[key].append((end, text))
            left[key] -= 1
            if left[key] == 0:
                self._finish_replies(name, by_key[key], predictions[key])

        self._run(plans(), finished)

    def _finish_replies(self, name: str, probe: Probe, predictions: list[tuple[float, str]]) -> None:
        answers = probe.truth["answers"]
        ratings = proactivevideoqa.judge_turns(probe.question, answers, predictions, self.judge.rate)
        pauc = {str(omega): proactivevideoqa.turn_scores(answers, ratings, omega) for omega in (0.0, 0.5, 1.0)}
        turns = pauc["0.5"]
        self._record(name, probe, [[t, s] for t, s in predictions],
                     {"score": sum(turns) / len(turns), "turns": len(turns), "pauc": pauc,
                      "ratings": [{str(t): r for t, r in sorted(turn.items())} for turn in ratings],
                      "chance": proactivevideoqa.START_SCORE / proactivevideoqa.MAX_SCORE})

    # ------------------------------------------------------------------ online
    def _online(self, name: str, todo: list[Probe]) -> None:
        blind, options = name == "blind", self.settings.answer == "options"
        streams: dict[str, list[Probe]] = {}
        for probe in todo:
            streams.setdefault(probe.stream, []).append(probe)

        def plans() -> Iterator[Plan]:
            for probes in streams.values():
                frames = self.store.get(probes[0].video, blind)
                asks: list[Ask] = []
                asked: set[tuple[float, str]] = set()
                for probe in probes:
                    if options and probe.kind in ("choice", "count", "yesno"):
                        asks.append(self._scored_ask(frames.index_at(probe.time), probe.key, probe))
                    elif probe.asked is not None and (probe.asked, self._query(probe)) not in asked:
                        asked.add((probe.asked, self._query(probe)))
                        asks.append(Ask(frames.index_at(probe.asked), (probe.asked, self._query(probe)),
                                        self._query(probe)))
                    for time, text in probe.extra:
                        if (time, text) not in asked:
                            asked.add((time, text))
                            asks.append(Ask(frames.index_at(time), (time, text), text))
                last = len(frames.times) - 1
                if all(p.kind == "replies" for p in probes):
                    last = frames.index_at(max(p.time for p in probes))
                instruction = None if self.settings.benchmark == "proactivevideoqa" else self.settings.instruction
                yield Plan(frames, 0, last, asks, instruction or None, tag=probes[0].stream)

        def finished(plan: Plan, outcome: Outcome) -> None:
            self._online_scores(name, streams[plan.tag], outcome, options)

        self._run(plans(), finished)

    def _online_scores(self, name: str, probes: list[Probe], outcome: Outcome, options: bool) -> None:
        """Score the probes of one finished stream from its answers, scores and replies."""
        replies = [(t, s) for t, s, _ in outcome.replies if s]
        spontaneous = [(t, s) for t, s, asked in outcome.replies if s and not asked]
        heard: dict[str, list[tuple[float, str]]] = {}  # probe key -> the replies its judge reads
        for probe in probes:
            if options and probe.kind in ("choice", "count", "yesno"):
                continue
            end = probe.time + 1e-6
            if probe.kind == "count":
                heard[probe.key] = [(t, s) for t, s in spontaneous if t <= end]
            elif probe.kind == "yesno" and probe.asked is None:  # SSR: the latest reply
                heard[probe.key] = [(t, s) for t, s in spontaneous if t <= end][-1:]
            elif probe.kind == "yesno":  # CRR: what was said since the question
                heard[probe.key] = [(t, s) for t, s in replies if probe.asked - 1e-6 <= t <= end]
            elif probe.kind == "proactive":  # replies after the answer to the question, until its polls would end
                heard[probe.key] = [(t, s) for t, s in spontaneous
                                    if probe.asked + 1e-6 < t <= probe.truth["time"] + 4 + 1e-6]
        pairs = sorted({(s, p.target) for p in probes if p.key in heard for _, s in heard[p.key]})
        said = dict(zip(pairs, self.judge.mentions(pairs))) if pairs else {}
        for probe in probes:
            if probe.kind == "replies":
                self._finish_replies(name, probe, [(t, s) for t, s in replies if t >= (probe.asked or 0.0) - 1e-6])
            elif options and probe.kind in ("choice", "count", "yesno"):
                self._record(name, probe, probe.pick(best(outcome.scores[probe.key])))
            elif probe.kind == "choice":
                self._record(name, probe, outcome.answers.get((probe.asked, self._query(probe))))
            elif probe.kind == "count":
                self._record(name, probe, str(sum(said[(s, probe.target)] for _, s in heard[probe.key])))
            elif probe.kind == "yesno":
                yes = any(said[(s, probe.target)] for _, s in heard[probe.key])
                self._record(name, probe, "Yes" if yes else "No")
            else:
                first = next(((t, s) for t, s in heard[probe.key] if said[(s, probe.target)]), None)
                self._record(name, probe, {"time": first[0], "text": first[1]} if first else None)


__all__ = ["BENCHMARKS", "FrameStore", "PASSES", "Runner", "Settings", "check_videos", "load_probes"]
