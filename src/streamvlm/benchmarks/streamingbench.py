"""StreamingBench (THUNLP-MT/StreamingBench): its question files, harness prompts and scoring rules.

The question files (``src/data/questions_{real,omni,sqa,proactive}.json``) list videos: ``{video_path,
questions: [{task_type, question, time_stamp "HH:MM:SS", answer, options}]}``; the sequential-QA
file nests them one level deeper (a list of such lists per video); proactive questions have
``ground_truth_time_stamp`` and ``ground_truth_output`` instead of options.

Harness (``src/benchmark/*.py``): the clip from 0 to the question's time, a prompt listing four
options ("... The best option is:"), the first reply; sequential QA adds the earlier questions of
the video with their *gold* answers to the prompt; proactive polls every second from the question's
time + 1 s to the expected time + 4 s ("Is it the right time to output ...? yes or no") on the
clip from the question's time, and on the first reply containing "yes" asks the question itself.

Scoring (``src/data/count.py``), ported with its quirks: multiple choice is right when the reply's
*first character* equals the answer letter (``"B. a cat"`` is B; ``" B"`` is wrong; a reply given
as a list: its first item must equal the letter); proactive is *on time* when the last reply of the
dialogue is within 2 s of the expected time, and *right* when it is on time and contains the
expected output. A missing or empty reply (the official script stops on it) counts as wrong here.

The omni-source tasks that need the audio track (Emotion Recognition, Scene Understanding, Source
Discrimination, Multimodal Alignment) are refused: streamvlm models do not hear.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from .checks import Where, clock, entry, field, items, read_list, string, text
from .probes import LETTERS, Probe

ABBREVIATIONS = {
    "Object Recognition": "OP", "Causal Reasoning": "CR", "Clips Summarize": "CS", "Attribute Recognition": "ATP",
    "Event Understanding": "EU", "Text-Rich Understanding": "TR", "Prospective Reasoning": "PR",
    "Spatial Understanding": "SU", "Action Recognition": "ACP", "Counting": "CT",
    "Emotion Recognition": "ER", "Scene Understanding": "SCU", "Source Discrimination": "SD",
    "Multimodal Alignment": "MA",
    "Anomaly Context Understanding": "ACU", "Misleading Context Understanding": "MCU",
    "Sequential Question Answering": "SQA", "Proactive Output": "PO",
}
"""Task types as the files name them -> the columns of the paper's table."""
REALTIME = ("OP", "CR", "CS", "ATP", "EU", "TR", "PR", "SU", "ACP", "CT")
OMNI = ("ER", "SCU", "SD", "MA")
CONTEXTUAL = ("ACU", "MCU", "SQA", "PO")
AUDIO_TASKS = ("Emotion Recognition", "Scene Understanding", "Source Discrimination", "Multimodal Alignment")
TOLERANCE = 2.0
"""Proactive output is on time within this many seconds of the expected time."""

# The harness's prompts (StreamingBench src/benchmark/*.py, MIT licence), reproduced so that
# offline runs ask exactly what the official harness asks.
CHOICE_TEMPLATE = (
    "You are an advanced video question-answering AI assistant. You have been provided with some frames from the "
    "video and a multiple-choice question related to the video. Your task is to carefully analyze the video and "
    "provide the best answer to question, choosing from the four options provided. Respond with only the letter "
    "(A, B, C, or D) of the correct option.\n\nQuestion: {}\n\nOptions:\n{}\n{}\n{}\n{}")
SQA_TEMPLATE = (
    "You are an advanced video question-answering AI assistant. You have been provided with a video and a "
    "multiple-choice question related to the video. Your task is to carefully analyze the video and the provided "
    "context to answer the question, choosing from the four options provided. Respond with only the letter (A, B, C, "
    "or D) of the correct option.\n\n{}\n\nHere is the question. Answer it and don't confuse it with the previous "
    "conversation.\nQuestion: {}\n\nOptions:\n{}\n{}\n{}\n{}\n\nThe best option is:")
PROACTIVE_TEMPLATE = (
    "You are an advanced image question-answering AI assistant. You have been provided with images and a question "
    "related to the images. Your task is to carefully analyze the images and provide the answer to the question. You "
    "need to carefully confirm whether the images content meet the conditions of the question, and then output the "
    "correct content.\n\nQuestion: {}\n\nThe answer is:\n")
SQA_CONTEXT_HEAD = ("Here are the contextual information related to the video. Please answer the questions based on "
                    "the contextual information: ")


def poll_question(question: str, output: str) -> str:
    """What the proactive harness asks every second."""
    return f"{question} Is it the right time to output \"{output}\"? You can only answer yes or no."


# ============================================================================ the question files
def load(path: str | Path, tasks: Sequence[str] | None = None) -> list[Probe]:
    """The probes of a StreamingBench question file (real-time, omni-source, sequential QA or
    proactive, told apart by their shape), every field the harness reads checked; ``tasks`` keeps
    only those task types (full names or the table's abbreviations)."""
    file = str(path)
    data = read_list(file, "StreamingBench videos")
    nested = isinstance(data[0], list)
    out: list[Probe] = []
    for i, raw in enumerate(data):
        subsets = raw if nested else [raw]
        if nested and not isinstance(raw, list):
            raise Where(file, f"entry {i}").error("expected a list of video parts (a sequential-QA file)")
        context = ""
        for k, part in enumerate(subsets):
            where = Where(file, f"entry {i}" + (f"[{k}]" if nested else ""))
            part = entry(part, where)
            video = text(part, "video_path", where)
            for j, (question, at) in enumerate(items(part, "questions", where)):
                at = Where(file, f"{where.record} question {j}")
                probe, context = _probe(entry(question, at), at, video, f"{i}/{k}/{j}" if nested else f"{i}/{j}",
                                        nested, context)
                if tasks and probe.task not in tasks and ABBREVIATIONS.get(probe.task) not in tasks:
                    continue
                if probe.task in AUDIO_TASKS:
                    raise UserError(f"{file}: {at.record}: task '{probe.task}' needs the video's audio, which "
                                    "streamvlm models do not hear; keep other tasks with --tasks (e.g. ACU MCU)")
                out.append(probe)
    return out


def _probe(q: dict[str, Any], at: Where, video: str, key: str, sequential: bool, context: str) -> tuple[Probe, str]:
    task = text(q, "task_type", at)
    question = text(q, "question", at)
    time = clock(field(q, "time_stamp", at)[0], at.at("time_stamp"))
    if "ground_truth_time_stamp" in q or "ground_truth_output" in q:
        due = clock(field(q, "ground_truth_time_stamp", at)[0], at.at("ground_truth_time_stamp"))
        output = text(q, "ground_truth_output", at)
        if due < time:
            raise at.at("ground_truth_time_stamp").error(f"is before the question's time_stamp ({due:g} < {time:g} s)")
        truth = {"time": due, "output": output}
        return Probe(key, task, video, due, question, PROACTIVE_TEMPLATE.format(question), "proactive", truth=truth,
                     start=time, asked=time, target=output, stream=video), context
    options = [string(o, oat, empty=True) for o, oat in items(q, "options", at, minimum=4)]  # the files hold ''

    answer = text(q, "answer", at)
    if len(answer) != 1 or answer not in LETTERS[: len(options)]:
        raise at.at("answer").error(f"must be one option letter (A to {LETTERS[len(options) - 1]}), got {answer!r}")
    shown = options if options[0].startswith("A.") else [f"{LETTERS[n]}. {o}" for n, o in enumerate(options[:4])]
    texts = tuple(_strip_letter(o) for o in options)
    if sequential:
        prompt = SQA_TEMPLATE.format(context, question, *shown)
        line = (f"At timestamp {q['time_stamp']}, the following question and answer occurred: Question: {question}; "
                f"Options: {shown[0]}, {shown[1]}, {shown[2]}, {shown[3]}; Answer: {answer}; ")
        context = (context or SQA_CONTEXT_HEAD) + line
    else:
        prompt = CHOICE_TEMPLATE.format(question, *shown) + "\n\nThe best option is:"
    return Probe(key, task, video, time, question, prompt, "choice", texts, answer, asked=time, stream=video,
                 context=context), context


def _strip_letter(option: str) -> str:
    """``"B. A map."`` -> ``"A map."`` (the option's text, for likelihood scoring)."""
    head, dot, rest = option.partition(".")
    return rest.strip() if dot and len(head.strip()) == 1 and head.strip() in LETTERS else option


# ============================================================================ the official rules
def hit_choice(response: Any, letter: str) -> int:
    """The response's first character (a list: its first item) equals the letter."""
    if not response:
        return 0
    first = response[0] if isinstance(response, (str, list)) else str(response)[0]
    return int(first == letter)


def proactive_hits(last_time: float | None, last_reply: Any, due: float, output: str) -> tuple[int, int]:
    """``(on time, right)`` of a proactive dialogue from its last turn: on time within 2 s of the
    expected time, right when also containing the expected output."""
    if last_time is None:
        return 0, 0
    on_time = int(-TOLERANCE <= last_time - due <= TOLERANCE)
    text_of = last_reply if isinstance(last_reply, str) else " ".join(map(str, last_reply or []))
    return on_time, int(bool(on_time) and output in text_of)


def score(probe: Probe, response: Any) -> float:
    """The official score of a response: multiple choice, or a proactive dialogue ``{"time",
    "text"}`` (its last turn) scored as right (on time and containing the output)."""
    if probe.kind == "choice":
        return float(hit_choice(response, probe.truth))
    response = response or {}
    return float(proactive_hits(response.get("time"), response.get("text"), probe.truth["time"],
                                probe.truth["output"])[1])


def on_time(probe: Probe, response: Any) -> float | None:
    """Proactive only: whether the dialogue's last turn came within 2 s of the expected time."""
    if probe.kind != "proactive":
        return None
    response = response or {}
    return float(proactive_hits(response.get("time"), response.get("text"), probe.truth["time"], "")[0])


def table(rows: Sequence[tuple[str, dict[str, tuple[float, int]]]]) -> str:
    """The paper's layout: real-time columns and All, then contextual (ACU, MCU, SQA, PO and
    PO on time); one row per ``(label, {column: (accuracy %, questions)})``; blank where no question.
    "All" is over the real-time questions (as ``count.py`` totals a file)."""
    columns = [*REALTIME, "All", *CONTEXTUAL, "PO-t"]
    lines = [f"{'':14}" + " ".join(f"{c:>6}" for c in columns)]
    for label, cells in rows:
        values = [cells.get(c) for c in columns]
        lines.append(f"{label[:13]:14}" + " ".join(f"{v[0]:6.2f}" if v else f"{'':>6}" for v in values))
    return "\n".join(lines)
