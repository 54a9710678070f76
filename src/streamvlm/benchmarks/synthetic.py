"""Synthetic editions: OVO-Bench, StreamingBench and ProactiveVideoQA annotation files, in each
benchmark's exact published format, with questions made from a synthetic world's ground truth
(``streamvlm synth``). Video paths are relative to the world folder (``videos/UID.mp4``), so a run
takes ``--videos WORLD``.

Per video (every choice seeded by the world seed and the video):

* OVO-Bench: EPM "What did I pick up before I ...?" (the object; distractors: the video's other
  objects, then objects of the world's vocabulary), ASI "What have I done so far?" (the finished
  steps in the reply form the world's live-chat dialogues use; distractors: reversed, one step
  short, another task's steps), ACR "What is the action now? ..." (one of the world's narration
  instructions; the action under way as its narration says it, against the other verbs of as many
  objects on the same objects), ATR the
  colour and OJR the kind of the object in the hand; forward REC (picking something up, counted
  after each pick), SSR (each step: before it, at its start, in its middle), CRR "What will I pick
  up next?" (asked before the pick, the clue when it happens);
* StreamingBench: real-time questions (Action, Object and Attribute Recognition, Counting), a
  sequential-QA chain ("What have I done so far?" at successive step ends) and a proactive
  question ("When I ..., output "You ...".");
* ProactiveVideoQA: "Tell me each step I do, as I do it." with one answer per step (related span
  the step, reply span the step and one second more).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.synth.spec import SynthAction, SynthWorld, VideoSpec
from ..data.synth.vocabulary import COLOURS, DISTRACTOR_KINDS, TASKS, VERBS
from ..errors import UserError
from ..outputs import write_text_atomic

OVO_FILE = "ovo-bench/ovo_bench_new.json"
STREAMINGBENCH_FILES = {"real": "streamingbench/questions_real.json", "sqa": "streamingbench/questions_sqa.json",
                        "proactive": "streamingbench/questions_proactive.json"}
PROACTIVE_FILE = "proactivevideoqa/SYNTH/anno.json"
ACTIVITY = "pick up something"
PROACTIVE_INSTRUCTION = "Tell me each step I do, as I do it."


def make_editions(world_dir: str | Path, out: str | Path) -> dict[str, Path]:
    """Write the three editions of the world in ``world_dir`` under ``out``; return the files."""
    world = SynthWorld.load(world_dir)
    videos = [v for v in world.videos if v.steps]
    if not videos:
        raise UserError(f"{world_dir}: no video with task steps (a world of live-like streams only?)")
    ovo: list[dict[str, Any]] = []
    real, sqa, proactive, pvqa = [], [], [], []
    for spec in videos:
        rng = random.Random(f"{world.options.seed}/{spec.uid}")
        path = f"videos/{spec.uid}.mp4"
        for item in _ovo_entries(spec, rng):
            ovo.append({"id": len(ovo), **item, "video": path})
        real.append(_streamingbench_video(spec, path, rng))
        if (chain := _sqa_chain(spec, path, rng)) is not None:
            sqa.append(chain)
        if (item := _proactive_question(spec, path)) is not None:
            proactive.append(item)
        pvqa.append(_pvqa_conversation(spec, path))
    out = Path(out)
    files = {"ovo-bench": (OVO_FILE, ovo), "streamingbench real": (STREAMINGBENCH_FILES["real"], real),
             "streamingbench sqa": (STREAMINGBENCH_FILES["sqa"], sqa),
             "streamingbench proactive": (STREAMINGBENCH_FILES["proactive"], proactive),
             "proactivevideoqa": (PROACTIVE_FILE, pvqa)}
    written = {}
    for name, (relative, data) in files.items():
        if data:
            written[name] = write_text_atomic(out / relative, json.dumps(data, indent=1) + "\n", name="--out")
    return written


# ---------------------------------------------------------------------------- the world's facts
def _description(spec: VideoSpec, oid: str | None) -> str:
    return f"the {spec.object(oid).description}" if oid else "the table"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:].rstrip(".") + "."


def _held_at(spec: VideoSpec) -> list[tuple[float, SynthAction]]:
    """``(time, pick)``: a moment the hand holds the object just picked up (the pick's end)."""
    return [(a.end, a) for a in spec.actions if a.verb == "pick"]


def _steps_done(spec: VideoSpec, time: float) -> list[str]:
    return [s.description for s in spec.steps if s.end <= time]


def _done_sentence(steps: Sequence[str]) -> str:
    return "So far you have done: " + "; ".join(steps) + "." if steps else "You have not finished any step yet."


def _choice(rng: random.Random, answer: str, pool: Sequence[str], count: int = 4) -> tuple[list[str], int]:
    """``answer`` and ``count - 1`` distinct distractors from ``pool`` (in order of preference, then
    shuffled), shuffled; returns the options and the answer's index."""
    distractors = []
    for item in pool:
        if item != answer and item not in distractors:
            distractors.append(item)
        if len(distractors) == count - 1:
            break
    options = [answer] + distractors
    rng.shuffle(options)
    return options, options.index(answer)


def _object_pool(spec: VideoSpec, rng: random.Random, exclude: str) -> list[str]:
    own = [f"the {o.description}" for o in spec.objects if o.kind != "drawer" and f"the {o.description}" != exclude]
    rng.shuffle(own)
    kinds = sorted({o.kind for o in spec.objects if o.kind != "drawer"} | set(DISTRACTOR_KINDS))
    vocabulary = [f"the {c} {k}" for c in COLOURS for k in kinds]
    rng.shuffle(vocabulary)
    return own + vocabulary


def _step_pool(spec: VideoSpec, rng: random.Random) -> list[str]:
    own = [s.description for s in spec.steps]
    rng.shuffle(own)
    others = [s.description for t in TASKS if t.name != spec.task for s in t.steps]
    rng.shuffle(others)
    own_task = next(t for t in TASKS if t.name == spec.task) if any(t.name == spec.task for t in TASKS) else None
    skipped = [s.description for s in own_task.steps] if own_task is not None else []
    return own + [s for s in skipped if s not in own] + others


def _ceil(x: float) -> int:
    return int(math.ceil(x - 1e-9))


# ---------------------------------------------------------------------------- OVO-Bench
def _ovo_entries(spec: VideoSpec, rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    out += _epm(spec, rng) + _asi(spec, rng) + _acr(spec, rng) + _held(spec, rng)
    out += _rec(spec) + _ssr(spec) + _crr(spec)
    return out


def _mc(task: str, realtime: float, question: str, answer: str, options: list[str], gt: int) -> dict[str, Any]:
    return {"task": task, "realtime": _ceil(realtime), "question": question, "answer": answer, "options": options,
            "gt": gt}


def _epm(spec: VideoSpec, rng: random.Random) -> list[dict[str, Any]]:
    actions = spec.actions
    for i, pick in enumerate(actions):
        if pick.verb != "pick":
            continue
        after = next((b for b in actions[i + 1:] if pick.obj not in (b.obj, b.target, b.tool)), None)
        if after is None:
            continue
        answer = _description(spec, pick.obj)
        options, gt = _choice(rng, answer, _object_pool(spec, rng, answer))
        return [_mc("EPM", after.end, f"What did I pick up before I {after.imperative}?", answer, options, gt)]
    return []


def _asi(spec: VideoSpec, rng: random.Random) -> list[dict[str, Any]]:
    finished = [s for s in spec.steps if s.end + 1 < spec.duration]
    if len(finished) < 2:
        return []
    upto = finished[1] if len(finished) < 3 else finished[rng.randrange(1, len(finished))]
    after = [s.start for s in spec.steps if s.start > upto.end]
    time = min(upto.end + 3, (after[0] - 0.5) if after else spec.duration - 1)
    done = _steps_done(spec, time)
    answer = _done_sentence(done)
    pool = [_done_sentence(list(reversed(done))), _done_sentence(done[:-1]),
            _done_sentence(done + [s.description for s in spec.steps if s.description not in done][:1])]
    others = [t for t in TASKS if t.name != spec.task]
    rng.shuffle(others)
    pool += [_done_sentence([s.description for s in t.steps[: len(done)]]) for t in others]
    options, gt = _choice(rng, answer, pool)
    return [_mc("ASI", time, "What have I done so far?", answer, options, gt)]


ACTION_QUESTION = "What is the action now? Please response in short."
"""How the synthetic editions ask for the action under way: one of the world's own narration
instructions (:data:`streamvlm.data.convert.templates.NARRATION_INSTRUCTIONS`)."""
_ONE_OBJECT = ("pick", "put_down", "open", "close")
_TWO_OBJECTS = ("put_in", "take_out", "stack", "put_on")


def _acr(spec: VideoSpec, rng: random.Random) -> list[dict[str, Any]]:
    """The action under way, just after it visibly happens, as its narration says it; distractors:
    the other verbs of as many objects on the same objects (so no option is shorter by its form)."""
    actions = [a for a in spec.actions if a.verb in _ONE_OBJECT + _TWO_OBJECTS + ("cut",)]
    rng.shuffle(actions)
    actions.sort(key=lambda a: a.verb == "pick")  # picks are the most frequent action: asked last
    out = []
    for action in sorted(actions[:3], key=lambda a: a.time):
        answer = f"You {action.imperative}."
        options, gt = _choice(rng, answer, _other_actions(spec, action, rng))
        out.append(_mc("ACR", action.time + 0.5, ACTION_QUESTION, answer, options, gt))
    return out


def _other_actions(spec: VideoSpec, action: SynthAction, rng: random.Random) -> list[str]:
    """Narrations of the other verbs that take as many objects, on the action's objects."""
    obj = _description(spec, action.obj)[4:]
    second = _description(spec, action.target or action.tool)[4:] if (action.target or action.tool) else None
    verbs = [v for v in (_ONE_OBJECT if second is None else _TWO_OBJECTS) if v != action.verb]
    rng.shuffle(verbs)
    return ["You " + VERBS[v].imperative.format(obj=obj, target=second) + "." for v in verbs]


def _held(spec: VideoSpec, rng: random.Random) -> list[dict[str, Any]]:
    held = _held_at(spec)
    if not held:
        return []
    time, pick = held[rng.randrange(len(held))]
    obj = spec.object(pick.obj)
    colours = [c for c in COLOURS if c != obj.colour]
    rng.shuffle(colours)
    options, gt = _choice(rng, obj.colour, colours)
    kinds = [k for k in DISTRACTOR_KINDS if k != obj.kind]
    rng.shuffle(kinds)
    kind_options, kind_gt = _choice(rng, _a(obj.kind), [_a(k) for k in kinds])
    return [_mc("ATR", time, "What colour is the object in my hand now?", obj.colour, options, gt),
            _mc("OJR", time, "What am I holding now?", _a(obj.kind), kind_options, kind_gt)]


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _rec(spec: VideoSpec) -> list[dict[str, Any]]:
    picks = [a for a in spec.actions if a.verb == "pick"]
    if not picks:
        return []
    starts, ends = [int(a.start) for a in picks], [_ceil(a.end) for a in picks]
    times = sorted({e for e in ends if e <= spec.duration} | {int(spec.duration) - 1})
    infos = [{"realtime": t, "count": sum(e <= t for e in ends)} for t in times]
    return [{"task": "REC", "activity": ACTIVITY, "start_times": starts, "end_times": ends, "test_info": infos}]


def _ssr(spec: VideoSpec) -> list[dict[str, Any]]:
    steps = spec.steps
    starts, ends = [int(s.start) for s in steps], [_ceil(s.end) for s in steps]
    infos = []
    for step, start, end in zip(steps, starts, ends):
        for t in sorted({start - 2, start + 1, (start + end) // 2}):
            if 0 <= t < spec.duration:
                infos.append({"realtime": t, "step": step.description, "type": int(start <= t <= end)})
    if not infos or len({s.description for s in steps}) != len(steps):
        return []
    return [{"task": "SSR", "tutorial": spec.goal, "all_steps": [s.description for s in steps], "start_time": starts,
             "end_time": ends, "test_info": infos}]


def _crr(spec: VideoSpec) -> list[dict[str, Any]]:
    actions = spec.actions
    for i, pick in enumerate(actions):
        if pick.verb != "pick" or i == 0:
            continue
        clue = _ceil(pick.time)
        ask = max(_ceil(actions[i - 1].end), clue - 6)
        if clue - ask < 2 or clue + 4 >= spec.duration:
            continue
        infos = [{"realtime": ask, "type": 0}, {"realtime": (ask + clue) // 2, "type": 0},
                 {"realtime": clue + 1, "type": 1}, {"realtime": clue + 4, "type": 1}]
        return [{"task": "CRR", "question": "What will I pick up next?", "answer": _description(spec, pick.obj),
                 "ask_time": ask, "clue_time": clue, "test_info": infos}]
    return []


# ---------------------------------------------------------------------------- StreamingBench
def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _sb_question(task: str, time: float, question: str, options: list[str], gt: int) -> dict[str, Any]:
    return {"task_type": task, "question": question, "time_stamp": _clock(_ceil(time)), "answer": "ABCD"[gt],
            "options": [f"{'ABCD'[i]}. {o}" for i, o in enumerate(options)], "required_ability": "working memory"}


def _streamingbench_video(spec: VideoSpec, path: str, rng: random.Random) -> dict[str, Any]:
    questions = []
    for e in _acr(spec, rng)[:2] + _held(spec, rng):
        task = {"ACR": "Action Recognition", "ATR": "Attribute Recognition", "OJR": "Object Recognition"}[e["task"]]
        questions.append(_sb_question(task, e["realtime"], e["question"], e["options"], e["gt"]))
    picks = [a for a in spec.actions if a.verb == "pick"]
    if len(picks) >= 2:
        time = picks[rng.randrange(1, len(picks))].end + 1
        count = sum(a.end <= time for a in picks)
        numbers = [count] + [n for n in (count - 1, count + 1, count + 2, count - 2) if n >= 0 and n != count][:3]
        options, gt = _choice(rng, str(count), [str(n) for n in numbers[1:]])
        questions.append(_sb_question("Counting", time, "How many times have I picked something up so far?",
                                      options, gt))
    questions.sort(key=lambda q: q["time_stamp"])
    return {"time": f"[0:00:00 - {_clock(spec.duration)[1:]}]", "questions": questions,
            "video_categories": "synthetic_tabletop", "video_path": path}


def _sqa_chain(spec: VideoSpec, path: str, rng: random.Random) -> list[dict[str, Any]] | None:
    ends = [s.end + 1 for s in spec.steps if s.end + 1 < spec.duration][:3]
    if len(ends) < 2:
        return None
    parts = []
    for time in ends:
        done = _steps_done(spec, time)
        answer = _done_sentence(done)
        pool = [_done_sentence(done[:-1]), _done_sentence(list(reversed(done))),
                _done_sentence(done + [s.description for s in spec.steps if s.description not in done][:1])]
        pool += [_done_sentence([s.description for s in t.steps[: len(done)]]) for t in TASKS if t.name != spec.task]
        options, gt = _choice(rng, answer, pool)
        question = _sb_question("Sequential Question Answering", time, "What have I done so far?", options, gt)
        question["options"] = options  # the sequential-QA file lists options without letters
        parts.append({"time": f"[0:00:00 - {_clock(time)[1:]}]", "questions": [question],
                      "video_categories": "synthetic_tabletop", "video_path": path})
    return parts


def _proactive_question(spec: VideoSpec, path: str) -> dict[str, Any] | None:
    candidates = [a for a in spec.actions[2:] if a.verb in ("put_in", "put_down", "open", "close", "put_on")
                  and a.time >= 8 and a.time + 5 < spec.duration]
    if not candidates:
        return None
    action = candidates[0]
    due = int(round(action.time))
    output = f"You {action.imperative}."
    question = {"task_type": "Proactive Output", "question": f'When I {action.imperative}, output "{output}".',
                "time_stamp": _clock(due - 6), "ground_truth_time_stamp": _clock(due), "ground_truth_output": output,
                "required_ability": "working memory"}
    return {"time": f"[0:00:00 - {_clock(spec.duration)[1:]}]", "questions": [question],
            "video_categories": "synthetic_tabletop", "video_path": path}


# ---------------------------------------------------------------------------- ProactiveVideoQA
def _pvqa_conversation(spec: VideoSpec, path: str) -> dict[str, Any]:
    answers = [{"role": "assistant", "content": _sentence(s.description), "type": "step",
                "related_timespan": [round(s.start, 2), round(s.end, 2)],
                "reply_timespan": [round(s.start, 2), round(min(s.end + 1, spec.duration), 2)]} for s in spec.steps]
    return {"video": path, "question_id": spec.uid,
            "conversation": [{"role": "user", "time": 0, "content": PROACTIVE_INSTRUCTION}],
            "answer": answers, "duration": spec.duration}


__all__ = ["ACTIVITY", "OVO_FILE", "PROACTIVE_FILE", "STREAMINGBENCH_FILES", "make_editions"]

