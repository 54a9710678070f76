"""ProactiveVideoQA: its ``anno.json`` files and the PAUC metric.

Each subset (EGO, TV, VAD, WEB) has an ``anno.json``: a list of ``{video, question_id, conversation:
[{role, content, time}], answer: [{role, content, related_timespan, reply_timespan}], duration}``.
The first user turn is the question; later user turns (TV subtitles) arrive at their times. Every
reply the model makes is a prediction at its time.

PAUC, as the benchmark computes it: for each gold answer turn, the predictions whose time falls in
its ``reply_timespan`` (ends included) are taken in time order, a sentence already seen skipped;
after each, a judge rates all the sentences so far against the gold answer, 1 (wrong) to 3 (covers
it), kept as 0 to 2 at the prediction's time. A rating after the ``related_timespan`` that is lower
than the last one inside it is dropped (a late reply does not undo an earlier right one). The
ratings make a step curve over the reply span that starts at 0.5 (no reply yet); its area,
normalised by the span times the top rating (2), is the turn's score, with the time axis of the
ratings scaled by ``1 - omega`` (omega = 0: a rating counts from its time; omega = 1: the last
rating counts for the whole span). A turn without a rating scores 0.5 / 2 = 0.25 (a silent model).
PAUC is the mean over every answer turn of the subset; the benchmark reports omega = 0.5.

Offline, as its harness runs offline models: every ``chunk`` seconds (3) a clip of that chunk alone,
the question (and the user turns of the chunk) at its end; the reply is a prediction at the chunk's
end; chunks stop after the last reply span.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .checks import Where, entry, field, items, number, read_list, span, text
from .probes import Probe

OMEGA = 0.5
MAX_SCORE = 2.0
START_SCORE = 0.5
CHUNK = 3
"""Seconds per clip of the offline harness (its ``video_chunk_sec``)."""


def load(path: str | Path) -> list[Probe]:
    """One probe per conversation of an ``anno.json``; its task is the subset (the folder name)."""
    file = str(path)
    subset = Path(file).parent.name or Path(file).stem
    out = []
    seen: set[str] = set()
    for i, raw in enumerate(read_list(file, "ProactiveVideoQA conversations")):
        where = Where(file, f"entry {i}")
        record = entry(raw, where)
        video = text(record, "video", where)
        ident, at = field(record, "question_id", where)
        if isinstance(ident, bool) or not isinstance(ident, (str, int)) or str(ident) in seen:
            raise at.error(f"must be a unique string, got {ident!r}" + (" again" if str(ident) in seen else ""))
        seen.add(str(ident))
        where = Where(file, f"entry {i} (question_id {ident})")
        turns = []
        for turn, tat in items(record, "conversation", where):
            turn = entry(turn, tat)
            role = text(turn, "role", tat)
            content = text(turn, "content", tat)
            time = number(field(turn, "time", tat)[0], tat.at("time"))
            if role == "user":
                turns.append((time, content))
        if not turns:
            raise where.at("conversation").error("has no user turn (the question)")
        answers = []
        for turn, tat in items(record, "answer", where):
            turn = entry(turn, tat)
            answers.append({"content": text(turn, "content", tat),
                            "related_timespan": span(field(turn, "related_timespan", tat)[0],
                                                     tat.at("related_timespan")),
                            "reply_timespan": span(field(turn, "reply_timespan", tat)[0], tat.at("reply_timespan"))})
        end = max(a["reply_timespan"][1] for a in answers)
        duration = number(record["duration"], where.at("duration")) if "duration" in record else None
        question_time, question = turns[0]
        out.append(Probe(str(ident), subset, video, end if duration is None else min(end, duration), question,
                         question, "replies", truth={"answers": tuple(answers), "duration": duration},
                         asked=question_time, stream=f"{subset}/{ident}", extra=tuple(turns[1:])))
    return out


def chunks(probe: Probe, duration: float, chunk: int = CHUNK) -> list[tuple[float, float, str]]:
    """The offline harness's clips of one conversation over a video of ``duration`` seconds (the
    annotation's own when it has one): ``(start, end, question)``, the question followed by the
    user turns that fall in the chunk; none starts after the last reply span."""
    duration = probe.truth["duration"] if probe.truth["duration"] is not None else duration
    last_reply = max(a["reply_timespan"][1] for a in probe.truth["answers"])
    out = []
    for start in range(0, int(duration), chunk):
        if start > last_reply:
            break
        end = min(duration, start + chunk)
        added = "".join(f"{content}\n" for time, content in ((probe.asked or 0.0, probe.question), *probe.extra)
                        if start < time <= end)
        question = probe.question + ("\n" + added.rstrip("\n") if added else "")
        out.append((float(start), end, question))
    return out


# ============================================================================ PAUC
Rate = Callable[[list[tuple[str, str, str]]], list[int | None]]
"""A judge: ``[(question, gold answer, predicted text)] -> [1, 2, 3 or None]``."""


def judge_turns(question: str, answers: Sequence[dict[str, Any]], predictions: Sequence[tuple[float, str]],
                rate: Rate) -> list[dict[float, float]]:
    """Per answer turn, ``{prediction time: rating 0-2}`` (see the module doc), late lower ratings dropped."""
    asks: list[tuple[int, float, tuple[str, str, str]]] = []
    for index, answer in enumerate(answers):
        first, last = answer["reply_timespan"]
        added: list[str] = []
        for time, sentence in sorted((p for p in predictions if first <= p[0] <= last), key=lambda p: p[0]):
            if sentence in added:
                continue
            added.append(sentence)
            asks.append((index, time, (question, answer["content"], " ".join(added))))
    ratings = rate([a[2] for a in asks]) if asks else []
    scores: list[dict[float, float]] = [{} for _ in answers]
    for (index, time, _), rating in zip(asks, ratings):
        if rating is not None:
            scores[index][time] = float(rating - 1)
    for answer, turn in zip(answers, scores):
        if len(turn) <= 1:
            continue
        related_end = answer["related_timespan"][1]
        last_inside = 0.0
        for time, value in sorted(turn.items()):
            if time <= related_end:
                last_inside = value
            elif value < last_inside:
                del turn[time]
    return scores


def area_ratio(points: Sequence[tuple[float, float]], max_x: float, omega: float = OMEGA,
               max_y: float = MAX_SCORE, start: float = START_SCORE) -> float:
    """Area under the step curve through ``points`` (x from the span's start, ratings), from
    ``start`` at 0 to ``max_x``, x scaled by ``1 - omega``; over ``max_x * max_y`` (0 for an empty span)."""
    if not points:
        return 0.0
    scaled = [(x * (1 - omega), y) for x, y in sorted(points)]
    scaled.append((max_x, scaled[-1][1]))
    area, prev_x, prev_y = 0.0, 0.0, start
    for x, y in scaled:
        area += (x - prev_x) * prev_y
        prev_x, prev_y = x, y
    return area / (max_x * max_y) if max_x * max_y > 0 else 0.0


def turn_scores(answers: Sequence[dict[str, Any]], ratings: Sequence[dict[float, float]],
                omega: float = OMEGA) -> list[float]:
    """The PAUC of each answer turn (0.25 when it has no rating)."""
    out = []
    for answer, turn in zip(answers, ratings):
        first, last = answer["reply_timespan"]
        if not turn:
            out.append(START_SCORE / MAX_SCORE)
        else:
            out.append(area_ratio([(t - first, s) for t, s in turn.items()], last - first, omega))
    return out


def table(rows: Sequence[tuple[str, dict[str, tuple[float, int]]]]) -> str:
    """PAUC (omega 0.5, percent) per subset and over every turn; one row per ``(label, {subset:
    (PAUC %, turns)})``."""
    subsets = sorted({s for _, cells in rows for s in cells if s != "All"}) + ["All"]
    lines = [f"{'':14}" + " ".join(f"{s:>8}" for s in subsets)]
    for label, cells in rows:
        lines.append(f"{label[:13]:14}" + " ".join(f"{cells[s][0]:8.2f}" if s in cells else f"{'':>8}"
                                                  for s in subsets))
    return "\n".join(lines)
