"""OVO-Bench (JoeLeelyf/OVO-Bench): its annotation file, its harness prompts, its scoring rules.

``data/ovo_bench_new.json`` is a list of entries. Backward-tracing (EPM, ASI, HLD) and real-time
(OCR, ACR, ATR, STU, FPD, OJR) entries are multiple choice: ``{id, task, video, realtime, question,
options, answer, gt}`` (``gt`` indexes ``options``). Forward active-responding entries hold several
test points, each its own probe at its own time: REC ``{activity, start_times, end_times,
test_info: [{realtime, count}]}``, SSR ``{tutorial, all_steps, start_time, end_time, test_info:
[{realtime, step, type}]}``, CRR ``{question, answer, ask_time, clue_time, test_info: [{realtime,
type}]}`` (``type`` 1: the step is under way / the clue has appeared).

The harness cuts every clip from 0 to ``ceil(realtime)`` and asks one prompt (:func:`prompt`,
its ``constant.py`` templates). Its scoring (``utils/OVOBenchScore.py``), ported as pure functions
with every quirk:

* multiple choice: a hit when the right letter appears *anywhere* in the response (``"A" in
  "Answer: B"`` is a hit); a response given as a list hits when the letter is one of its items;
* REC: the response's digits, joined, equal the count (``"2 or 3"`` reads 23);
* SSR / CRR: a hit when the response is exactly ``N`` (type 0) or ``Y`` (type 1), or contains
  ``No`` / ``Yes`` (so ``"Not yet"`` is a No);
* a missing response (None) is a miss; accuracy per task, averaged over the tasks of each group,
  overall the mean of the three groups (printed only when all three are present: the official
  script stops otherwise).

A response list the official script cannot read (REC over a list, a number) is read here as the
text of its items, never a crash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..jsonfiles import read_json
from .checks import Where, entry, field, integer, items, number, read_list, string, text
from .probes import LETTERS, Probe

BACKWARD = ("EPM", "ASI", "HLD")
REALTIME = ("OCR", "ACR", "ATR", "STU", "FPD", "OJR")
FORWARD = ("REC", "SSR", "CRR")
GROUPS = {"realtime": REALTIME, "backward": BACKWARD, "forward": FORWARD}
"""The groups in the order of the paper's table (real-time, backward, forward)."""
GROUP_TITLES = {"realtime": "Real-Time Visual Perception", "backward": "Backward Tracing",
                "forward": "Forward Active Responding"}
GROUP_OF = {task: group for group, tasks in GROUPS.items() for task in tasks}

# The harness's prompts (OVO-Bench constant.py, MIT licence), reproduced so that offline runs ask
# exactly what the official harness asks.
CHOICE_TEMPLATE = "\n".join([
    '',
    'Question: {}',
    'Options:',
    '{}',
    '',
    'Respond only with the letter corresponding to your chosen option (e.g., A, B, C). ',
    'Do not include any additional text or explanation in your response.',
    '',
])
REC_TEMPLATE = "\n".join([
    '',
    "You're watching a video in which people may perform a certain type of action repetively. ",
    "The person performing this kind of action are referred to as 'they' in the following statement.",
    "You're task is to count how many times have different people in the video perform this kind of action in total.",
    'One complete motion counts as one. ',
    'Now, answer the following question: {}',
    'Provide your answer as a single number (e.g., 0, 1, 2, 3…) indicating the total count.',
    'Do not include any additional text or explanation in your response.',
    '',
])
SSR_TEMPLATE = "\n".join([
    '',
    "You're watching a tutorial video which contain a sequential of steps. ",
    'The following is one step from the whole procedures: ',
    '{}',
    'Your task is to determine if the man or woman in the video is currently performing this step.',
    'Answer only with “Yes” or “No”.',
    'Do not include any additional text or explanation in your response.',
    '',
])
CRR_TEMPLATE = "\n".join([
    '',
    "You're responsible of answering questions based on the video content. ",
    'The following question are relevant to the latest frames, i.e. the end of the video.',
    '{}',
    'Decide whether existing visual content, especially latest frames, i.e. frames that near the end of the video, '
    'provide enough information for answering the question.',
    'Answer only with “Yes” or “No”.',
    'Do not include any additional text or explanation in your response.',
    '',
])


# ============================================================================ the annotation file
def load(path: str | Path) -> list[dict[str, Any]]:
    """The entries of an OVO-Bench annotation file, every field the harness reads checked."""
    file = str(path)
    data = read_list(file, "OVO-Bench entries")
    seen: set[str] = set()
    out = []
    for i, raw in enumerate(data):
        where = Where(file, f"entry {i}")
        record = entry(raw, where)
        ident, at = field(record, "id", where)
        if isinstance(ident, bool) or not isinstance(ident, (int, str)) or str(ident) in seen:
            raise at.error("must be a unique integer or string" + (f", {ident!r} is repeated" if str(ident) in seen
                                                                    else f", got {ident!r}"))
        seen.add(str(ident))
        where = Where(file, f"entry {i} (id {ident})")
        task = text(record, "task", where)
        if task not in GROUP_OF:
            raise where.at("task").error(f"unknown task {task!r} (expected one of {', '.join(GROUP_OF)})")
        text(record, "video", where)
        _check_entry(record, task, where)
        out.append(record)
    return out


def _check_entry(record: dict[str, Any], task: str, where: Where) -> None:
    if task == "REC":
        text(record, "activity", where)
        for name in ("start_times", "end_times"):
            for value, at in items(record, name, where, minimum=0):
                number(value, at)
        for info, at in items(record, "test_info", where):
            info = entry(info, at)
            number(field(info, "realtime", at)[0], at.at("realtime"))
            integer(field(info, "count", at)[0], at.at("count"))
    elif task == "SSR":
        text(record, "tutorial", where)
        steps = [string(s, at) for s, at in items(record, "all_steps", where)]
        for name in ("start_time", "end_time"):
            values = items(record, name, where)
            if len(values) != len(steps):
                raise where.at(name).error(f"has {len(values)} times for {len(steps)} steps")
            for value, at in values:
                number(value, at)
        for info, at in items(record, "test_info", where):
            info = entry(info, at)
            number(field(info, "realtime", at)[0], at.at("realtime"))
            if text(info, "step", at) not in steps:
                raise at.at("step").error("is not one of all_steps")
            integer(field(info, "type", at)[0], at.at("type"), maximum=1)
    elif task == "CRR":
        text(record, "question", where)
        text(record, "answer", where)
        for name in ("ask_time", "clue_time"):
            number(field(record, name, where)[0], where.at(name))
        for info, at in items(record, "test_info", where):
            info = entry(info, at)
            number(field(info, "realtime", at)[0], at.at("realtime"))
            integer(field(info, "type", at)[0], at.at("type"), maximum=1)
    else:
        number(field(record, "realtime", where)[0], where.at("realtime"))
        text(record, "question", where)
        options = [string(o, at, empty=True) for o, at in items(record, "options", where, minimum=2)]
        if len(options) > len(LETTERS):
            raise where.at("options").error(f"has {len(options)} options, at most {len(LETTERS)} are supported")
        integer(field(record, "gt", where)[0], where.at("gt"), maximum=len(options) - 1)


def prompt(task: str, question: str | None = None, options: Sequence[str] = (), *, activity: str | None = None,
           step: str | None = None) -> str:
    """The harness's prompt for one probe (``build_prompt`` of its ``utils/OVOBench.py``)."""
    if task == "REC":
        return REC_TEMPLATE.format(f"How many times did they {activity}?")
    if task == "SSR":
        return SSR_TEMPLATE.format(step)
    if task == "CRR":
        return CRR_TEMPLATE.format(question)
    formatted = "; ".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(options)) + ";"
    return CHOICE_TEMPLATE.format(question, formatted)


def probes(entries: Iterable[dict[str, Any]]) -> list[Probe]:
    """One probe per multiple-choice entry and per forward test point. Times are the harness's
    clip ends, ``ceil(realtime)``."""
    out = []
    for e in entries:
        task, video, ident = e["task"], e["video"], e["id"]
        if task == "REC":
            question = f"How many times did they {e['activity']}?"
            for i, info in enumerate(e["test_info"]):
                out.append(Probe(f"{ident}/{i}", task, video, math.ceil(info["realtime"]), question,
                                 prompt(task, activity=e["activity"]), "count", truth=info["count"],
                                 target=e["activity"], stream=video))
        elif task == "SSR":
            for i, info in enumerate(e["test_info"]):
                out.append(Probe(f"{ident}/{i}", task, video, math.ceil(info["realtime"]),
                                 f"Am I doing this step now: {info['step']}?", prompt(task, step=info["step"]), "yesno",
                                 truth=info["type"], target=info["step"], stream=video))
        elif task == "CRR":
            for i, info in enumerate(e["test_info"]):
                out.append(Probe(f"{ident}/{i}", task, video, math.ceil(info["realtime"]), e["question"],
                                 prompt(task, e["question"]), "yesno", truth=info["type"], asked=e["ask_time"],
                                 target=e["answer"], stream=video))
        else:
            time = math.ceil(e["realtime"])
            out.append(Probe(str(ident), task, video, time, e["question"], prompt(task, e["question"], e["options"]),
                             "choice", tuple(e["options"]), LETTERS[e["gt"]], asked=time, stream=video))
    return out


# ============================================================================ the official rules
def _text_of(response: Any) -> str:
    """A response the official script cannot read, as text: a list's items joined, a number written."""
    if isinstance(response, list):
        return " ".join(_text_of(item) for item in response)
    return response if isinstance(response, str) else str(response)


def _contains(response: Any, wanted: str) -> bool:
    """``wanted in response`` as the official script evaluates it (item membership for a list)."""
    if isinstance(response, (str, list)):
        return wanted in response
    return wanted in _text_of(response)


def hit_choice(response: Any, letter: str) -> int:
    """Multiple choice: the letter anywhere in the response (a list: one of its items)."""
    return 0 if response is None else int(_contains(response, letter))


def hit_count(response: Any, count: int) -> int:
    """REC: the response's digits joined equal the count."""
    if response is None:
        return 0
    return int("".join(re.findall(r"\d+", _text_of(response))) == str(count))


def hit_yes_no(response: Any, kind: int) -> int:
    """SSR / CRR: ``N`` / ``Y`` exactly, else ``No`` / ``Yes`` inside the response."""
    if response is None:
        return 0
    if (response == "N" and kind == 0) or (response == "Y" and kind == 1):
        return 1
    return int(_contains(response, "No" if kind == 0 else "Yes"))


def score(probe: Probe, response: Any) -> float:
    """The official score of a response to one of :func:`probes`."""
    if probe.kind == "choice":
        return float(hit_choice(response, probe.truth))
    if probe.kind == "count":
        return float(hit_count(response, probe.truth))
    return float(hit_yes_no(response, probe.truth))


# ============================================================================ official results files
def load_results(paths: Sequence[str | Path]) -> dict[str, list[dict[str, Any]]]:
    """The results files the harness writes (``results/MODEL/*.json``: ``{"backward": [...],
    "realtime": [...], "forward": [...]}``), merged as its ``score.py`` merges a model's folder; a
    folder stands for every ``.json`` file in it."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
            if not found:
                raise DataError("no .json results file in this folder", file=str(path))
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError("no such file or folder", file=str(path))
    merged: dict[str, list[dict[str, Any]]] = {"backward": [], "realtime": [], "forward": []}
    for file in files:
        data = read_json(file)
        if not isinstance(data, dict):
            raise DataError(f"expected an object with backward, realtime and forward lists, got "
                            f"{type(data).__name__}", file=str(file))
        for group in merged:
            results = data.get(group)
            if not isinstance(results, list):
                raise DataError("missing or not a list", file=str(file), field=group)
            for i, result in enumerate(results):
                merged[group].append(_check_result(result, group, Where(str(file), f"{group}[{i}]")))
    return merged


def _check_result(result: Any, group: str, where: Where) -> dict[str, Any]:
    result = entry(result, where)
    text(result, "task", where)
    if group != "forward":
        field(result, "response", where)
        letter = text(result, "ground_truth", where)
        if letter not in LETTERS:
            raise where.at("ground_truth").error(f"must be an option letter, got {letter!r}")
        return result
    for info, at in items(result, "test_info", where, minimum=0):
        info = entry(info, at)
        field(info, "response", at)
        if result["task"] == "REC":
            integer(field(info, "count", at)[0], at.at("count"))
        elif result["task"] in ("SSR", "CRR"):
            integer(field(info, "type", at)[0], at.at("type"), maximum=1)
    return result


def score_results(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[int]]]:
    """Hits per task, per group, as the official script counts them (a task in the group of the
    list it was found in; forward test points one by one; tasks in order of first appearance)."""
    out: dict[str, dict[str, list[int]]] = {"backward": {}, "realtime": {}, "forward": {}}
    for group in ("backward", "realtime"):
        for result in results[group]:
            out[group].setdefault(result["task"], []).append(hit_choice(result["response"], result["ground_truth"]))
    for result in results["forward"]:
        task = result["task"]
        hits = out["forward"].setdefault(task, [])
        for info in result["test_info"]:
            if task == "REC":
                hits.append(hit_count(info["response"], info["count"]))
            elif task in ("SSR", "CRR"):
                hits.append(hit_yes_no(info["response"], info["type"]))
    out["forward"] = {task: hits for task, hits in out["forward"].items() if hits}  # others: never scored
    return out


def summarize(hits: dict[str, dict[str, Sequence[float]]]) -> dict[str, Any]:
    """Accuracy per task (percent), per group (the mean of its tasks) and overall (the mean of the
    three groups; None unless all three have a task)."""
    tasks = {task: 100.0 * sum(v) / len(v) for group in hits.values() for task, v in group.items() if v}
    groups = {}
    for group, per_task in hits.items():
        accs = [sum(v) / len(v) for v in per_task.values() if v]
        groups[group] = 100.0 * sum(accs) / len(accs) if accs else None
    present = [g for g in groups.values() if g is not None]
    overall = sum(present) / 3 if len(present) == 3 else None
    return {"tasks": tasks, "groups": groups, "overall": overall}


def official_lines(summary: dict[str, Any], hits: dict[str, dict[str, Sequence[float]]]) -> list[str]:
    """The numbers as the official ``score.py`` prints them (task lines per group, averages, total)."""
    lines = []
    for group, title in (("backward", "Backward"), ("realtime", "Realtime"), ("forward", "Forward")):
        if not hits[group]:
            continue
        lines += [f"Task: {task}, Acc: {summary['tasks'][task]:.2f}" for task in hits[group]]
        lines.append(f"{title} Avg.: {summary['groups'][group]:.2f}")
    if summary["overall"] is not None:
        lines.append(f"Total Avg.: {summary['overall']:.2f}")
    return lines


def table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The paper's layout: real-time tasks and their average, backward, forward, overall; one row
    per ``(label, summarize(...))``; a task with no probe is blank."""
    columns = [(task, group) for group, tasks in GROUPS.items() for task in (*tasks, "Avg.")]
    head1 = " " * 14 + " | ".join(f"{GROUP_TITLES[g]:^{7 * (len(t) + 1) - 1}}" for g, t in GROUPS.items())
    head1 += " | Overall"
    head2 = f"{'':14}" + " | ".join(" ".join(f"{c:>6}" for c, g in columns if g == group) for group in GROUPS) \
        + " |    Avg."
    lines = [head1, head2]
    for label, summary in rows:
        cells = []
        for group, tasks in GROUPS.items():
            values = [summary["tasks"].get(task) for task in tasks] + [summary["groups"].get(group)]
            cells.append(" ".join(f"{v:6.2f}" if v is not None else f"{'':>6}" for v in values))
        overall = summary["overall"]
        lines.append(f"{label[:13]:14}" + " | ".join(cells) + f" | {overall:7.2f}" if overall is not None
                     else f"{label[:13]:14}" + " | ".join(cells) + " |")
    return "\n".join(lines)
