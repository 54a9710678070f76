"""Benchmark samples for evaluation: COIN (5 tasks) and Ego4D long-term action anticipation.

Each sample is a conversation ``system, user(question), stream(observed frames), assistant(gold)``
with, in ``meta``: ``benchmark``, ``answer`` (the gold text, also the last turn) and label ids
into a label space. The evaluator drops the last turn, generates, and maps the text back to ids.
Label spaces (``coin_steps``, ``coin_tasks``) are written beside the JSONL file by the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from ...model.config import UPSTREAM_SYSTEM_PROMPT
from ...model.conversation import Turn
from ...settings import PositiveInt, settings
from ..formats.coin import CoinVideo
from ..formats.ego4d import LtaAction
from ..jsonl import ConversationRecord
from .timeline import CONVERSATION_FPS, ConversationFps, VideoPattern, frame_at, frame_time

COIN_BENCHMARKS = ("step", "task", "next", "procedure", "procedure_goal")
_CONCISE = "Format your answer concisely. No extra text output."
_LIST = "Format your answer concisely, listing each action on a new line with a number prefix. No extra text output."


@settings
class BenchmarkOptions:
    """How COIN and Ego4D LTA annotations become downstream questions."""

    fps: ConversationFps = CONVERSATION_FPS
    """Frame rate of the conversation's frames."""
    system_prompt: str = UPSTREAM_SYSTEM_PROMPT
    """System prompt of every sample."""
    video_pattern: VideoPattern = "{video_uid}.mp4"
    """Video path relative to the data root."""
    max_procedure_steps: PositiveInt = 5
    """COIN procedure forecasting: at most this many next steps."""
    lta_observed: PositiveInt = 8
    """Ego4D LTA: number of observed actions."""
    lta_future: PositiveInt = 20
    """Ego4D LTA: Z, the number of future actions to predict."""


def sentence(text: str) -> str:
    """``"slice tomatoes"`` -> ``"Slice tomatoes."``"""
    text = " ".join(text.split()).rstrip(".")
    return text[:1].upper() + text[1:] + "."


def numbered(texts: Sequence[str]) -> str:
    return "\n".join(f"{i + 1}. {sentence(t)}" for i, t in enumerate(texts))


def coin_label_spaces(videos: Sequence[CoinVideo]) -> dict[str, list[str]]:
    """Sorted answer vocabularies: ``coin_steps`` (step sentences), ``coin_tasks`` (task sentences)."""
    return {
        "coin_steps": sorted({sentence(s.label) for v in videos for s in v.segments}),
        "coin_tasks": sorted({sentence(v.task) for v in videos}),
    }


def _sample(key: str, video: str, question: str, first: int, last: int, answer: str, opt: BenchmarkOptions,
            meta: dict) -> ConversationRecord:
    """Frames ``first..last`` (inclusive) observed after the question, then the gold answer."""
    start, end = frame_time(first, opt.fps), frame_time(last, opt.fps)
    turns = [
        Turn("system", opt.system_prompt),
        Turn("user", question, start),
        Turn("stream", time=start, num_frames=last - first + 1, learn=True),
        Turn("assistant", answer, end, learn=True),
    ]
    return ConversationRecord(key, video, opt.fps, start, turns, {**meta, "answer": answer})


def coin_benchmarks(videos: Sequence[CoinVideo], labels: dict[str, list[str]],
                    benchmarks: Sequence[str] = COIN_BENCHMARKS,
                    options: BenchmarkOptions | None = None) -> Iterator[ConversationRecord]:
    """COIN step / task recognition, next step, procedure forecasting (with and without the goal)."""
    opt = options or BenchmarkOptions()
    step_ids = {t: i for i, t in enumerate(labels["coin_steps"])}
    task_ids = {t: i for i, t in enumerate(labels["coin_tasks"])}
    fps = opt.fps
    for v in videos:
        video = opt.video_pattern.format(video_uid=v.video_id)
        base = {"source": "coin", "video_uid": v.video_id, "subset": v.subset}
        steps = v.segments
        if "task" in benchmarks:
            answer = sentence(v.task)
            yield _sample(f"{v.video_id}/coin_task", video, f"What is the overall activity in the video? {_CONCISE}",
                          frame_at(v.start, fps), frame_at(v.end, fps), answer, opt,
                          {**base, "benchmark": "coin_task", "label_space": "coin_tasks", "labels": [task_ids[answer]]})
        for i, step in enumerate(steps):
            first, last = frame_at(step.start, fps), frame_at(step.end, fps)
            if "step" in benchmarks:
                answer = sentence(step.label)
                yield _sample(f"{v.video_id}/coin_step/{i}", video, f"What is the action in the video? {_CONCISE}",
                              first, last, answer, opt,
                              {**base, "benchmark": "coin_step", "label_space": "coin_steps",
                               "labels": [step_ids[answer]]})
            following = [s.label for s in steps[i + 1:i + 1 + opt.max_procedure_steps]]
            if not following:
                continue
            if "next" in benchmarks:
                answer = sentence(following[0])
                yield _sample(f"{v.video_id}/coin_next/{i}", video,
                              f"What is the next action for the video? {_CONCISE}", first, last, answer, opt,
                              {**base, "benchmark": "coin_next", "label_space": "coin_steps",
                               "labels": [step_ids[answer]]})
            for name, prefix in (("procedure", ""), ("procedure_goal", f"To {v.task}, ")):
                if name not in benchmarks:
                    continue
                if len(following) == 1:
                    question = f"{prefix}what is the next action for the video? {_CONCISE}"
                    answer = sentence(following[0])
                else:
                    question = f"{prefix}what are the next {len(following)} actions for the video? {_LIST}"
                    answer = numbered(following)
                question = question[:1].upper() + question[1:]
                yield _sample(f"{v.video_id}/coin_{name}/{i}", video, question, first, last, answer, opt,
                              {**base, "benchmark": f"coin_{name}", "label_space": "coin_steps",
                               "labels": [step_ids[sentence(t)] for t in following]})


def taxonomy_word(raw: str) -> str:
    """An Ego4D taxonomy entry in plain words: ``"put_(place,_leave,_drop)"`` -> ``"put"``."""
    return re.sub(r"_?\(.*$", "", raw).replace("_", " ").strip() or raw


def lta_samples(actions: Sequence[LtaAction], options: BenchmarkOptions | None = None) -> Iterator[ConversationRecord]:
    """Ego4D LTA: for each run of ``lta_observed`` actions in a clip followed by ``lta_future`` more,
    observe the frames of the observed actions and predict the next Z ``verb noun`` pairs."""
    opt = options or BenchmarkOptions()
    clips: dict[str, list[LtaAction]] = {}
    for a in actions:
        clips.setdefault(a.clip_uid, []).append(a)
    n_obs, z = opt.lta_observed, opt.lta_future
    for clip_uid, items in clips.items():
        for i in range(len(items) - n_obs - z + 1):
            observed, future = items[i:i + n_obs], items[i + n_obs:i + n_obs + z]
            first = round(observed[0].start * opt.fps)
            last = max(first, round(observed[-1].end * opt.fps))
            question = (f"After {last - first + 1} video frames, anticipate the next {z} actions. {_LIST}")
            answer = numbered([f"{taxonomy_word(a.verb)} {taxonomy_word(a.noun)}" for a in future])
            yield _sample(
                f"{clip_uid}/lta/{observed[-1].action_idx}", opt.video_pattern.format(video_uid=observed[0].video_uid),
                question, first, last, answer, opt,
                {"source": "ego4d_lta", "benchmark": "ego4d_lta", "clip_uid": clip_uid,
                 "last_observed_action_idx": observed[-1].action_idx,
                 "verb_labels": [a.verb_label for a in future], "noun_labels": [a.noun_label for a in future]},
            )
