"""The Markdown report of :func:`streamvlm.experiments.tables.run_tables` (``docs/results.md``).

Tables (a) learning method, (b) loss, (c) tau and the theta sweep, each followed by a sentence
that compares its ordering with the paper's (MISSION 1.5), then the exact commands. The text
between the ``discussion`` markers of an existing report is kept when the report is rewritten, so
a written analysis survives a rerun.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tables import TablesOptions

DISCUSSION_START = "<!-- discussion:start -->"
DISCUSSION_END = "<!-- discussion:end -->"

PAPER_METHODS = {"interleaved": (2.45, 6.47, 0.111), "per_frame": (3.34, 2.52, 0.377), "streaming": (2.43, 2.32, 0.426)}
"""The paper's Ego4D narration numbers (LM-PPL, TimeDiff, Fluency), MISSION 1.5."""

METHOD_LABELS = {"interleaved": "Interleaved dialogue", "per_frame": "Per-frame dialogue", "streaming": "Streaming dialogue"}


def fmt(value: float | None, kind: str = "num") -> str:
    """A table cell: ``-`` for a missing value, percentages for ``pct``, seconds for ``s``."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "s":
        return f"{value:.2f}"
    if kind == "int":
        return f"{value:.0f}"
    return f"{value:.3f}"


def metric_cells(metrics: dict) -> list[str]:
    return [fmt(metrics.get("lm_ppl")), fmt(metrics.get("time_diff"), "s"), fmt(metrics.get("fluency"), "pct"),
            fmt(metrics.get("lm_correctness"), "pct")]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def order(results: dict[str, dict], names: Sequence[str], metric: str, higher_is_better: bool) -> list[str]:
    """``names`` from best to worst on ``metric`` (runs without the metric last)."""
    def key(name: str) -> float:
        value = results[name]["metrics"].get(metric)
        if value is None or not math.isfinite(value):
            return math.inf
        return -value if higher_is_better else value
    return sorted(names, key=key)


METRIC_SENSE = (("lm_ppl", "LM-PPL", False), ("time_diff", "TimeDiff", False), ("fluency", "Fluency", True))


def method_sentence(results: dict[str, dict]) -> str:
    """Whether table (a)'s ordering matches the paper's, metric by metric."""
    names = ("interleaved", "per_frame", "streaming")
    parts, held = [], 0
    for metric, label, higher in METRIC_SENSE:
        paper = sorted(names, key=lambda n: PAPER_METHODS[n][("lm_ppl", "time_diff", "fluency").index(metric)]
                       * (-1 if higher else 1))
        here = order(results, names, metric, higher)
        same = here == paper
        held += same
        text = " > ".join(METHOD_LABELS[n].split()[0].lower() for n in here)
        parts.append(f"{label} {'as in the paper' if same else 'differs from the paper'} (best first: {text})")
    verdict = "holds" if held == len(METRIC_SENSE) else ("holds in part" if held else "does not hold")
    return f"The paper's ordering {verdict} here: " + "; ".join(parts) + "."


def loss_sentence(results: dict[str, dict]) -> str:
    names = ("streaming", "ohem", "focal")
    label = {"streaming": "CE", "ohem": "OHEM", "focal": "focal"}
    parts = []
    for metric, metric_label, higher in METRIC_SENSE:
        best = order(results, names, metric, higher)[0]
        parts.append(f"{metric_label}: {label[best]}")
    best_fluency = order(results, names, "fluency", True)[0]
    verdict = "holds" if best_fluency == "streaming" else "does not hold"
    return (f"The paper's ordering (plain CE best) {verdict} on Fluency here; best per metric: "
            + ", ".join(parts) + ".")


def tau_sentence(results: dict[str, dict], taus: dict[str, float]) -> str:
    names = list(taus)
    spreads = []
    for metric, label, _ in METRIC_SENSE:
        values = [results[n]["metrics"].get(metric) for n in names]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if values and max(values) > 0:
            spreads.append(f"{label} {100 * (max(values) - min(values)) / max(values):.0f}%")
    best = order(results, names, "fluency", True)[0]
    verdict = "holds" if taus[best] == 2.0 else "does not hold"
    return (f"The paper's finding (tau = 2 the slightly better trade-off) {verdict} here: the best Fluency is at "
            f"tau = {taus[best]:g}; spread between the best and worst tau (of the largest value): "
            + ", ".join(spreads) + ".")


def sweep_sentence(sweep: Sequence[dict]) -> str:
    finite = [s for s in sweep if s.get("fluency") is not None]
    if not finite:
        return "No turn was timed, so the sweep has no Fluency."
    best = max(finite, key=lambda s: s["fluency"])
    closest = min(finite, key=lambda s: s["time_diff"] if s.get("time_diff") is not None else math.inf)
    return (f"Best Fluency at theta = {best['threshold']:g} ({fmt(best['fluency'], 'pct')}); smallest TimeDiff at "
            f"theta = {closest['threshold']:g} ({fmt(closest['time_diff'], 's')} s). The paper uses theta between 0.5 "
            "and 0.8 (upstream demo 0.725). LM-PPL and LM-correctness do not depend on theta (teacher-forced replies).")


def kept_discussion(path: Path) -> str:
    """The text between the discussion markers of an existing report, else a placeholder."""
    if path.is_file():
        match = re.search(re.escape(DISCUSSION_START) + r"\n(.*?)" + re.escape(DISCUSSION_END),
                          path.read_text(encoding="utf-8"), re.S)
        if match:
            return match.group(1)
    return "_No discussion written for this run yet._\n"


def command_line(options: TablesOptions, out: str) -> str:
    if options.quick:
        return shlex.join(["streamvlm", "tables", "--out", out, "--quick"])
    return shlex.join(["streamvlm", "tables", "--out", out, "--videos", str(options.videos), "--steps",
                       str(options.steps)])


def build_report(results: dict[str, dict], options: TablesOptions, commands: Sequence[str], elapsed_s: float,
                 out: str, discussion: str) -> str:
    """The whole Markdown text. ``results`` maps run names (:data:`~.tables.RUNS`) to their
    ``result.json`` dicts."""
    theta = options.threshold
    header = ["LM-PPL", "TimeDiff (s)", "Fluency", "LM-correctness"]
    lines = [
        "# Results: the paper's ablations at CPU scale",
        "",
        "Generated by `streamvlm tables` (`streamvlm.experiments.tables`). Reproduce with:",
        "",
        "```",
        command_line(options, out),
        "```",
        "",
        f"Total wall time: **{elapsed_s / 60:.1f} min** (this call; runs finished by an earlier call are reused).",
        "",
        "## Setup",
        "",
        f"- Training world: {options.videos} synthetic videos of {options.duration:g} s at {options.size} px "
        f"(`streamvlm synth --seed {options.seed} --split train`), one narration and one live-chat conversation each.",
        f"- Held-out world: {options.heldout_videos} videos of a new seed ({options.seed + 1}, `--split test`); "
        "every number below is on its narration conversations, with frame features extracted by each run's "
        "own (trained) frame encoder.",
        f"- Every run: the same data, {options.steps} optimizer steps of 4 conversations (batch 2 x accumulation 2), "
        "seed 0, the tiny-synth recipe with these model overrides: "
        + (", ".join(f"`{o}`" for o in options.model) or "none") + ".",
        f"- theta = {theta:g} on P(interval) (per-frame models: on P(empty reply)) for tables (a)-(c).",
        "- Training time is wall time on a shared 2-core CPU, so it is noisy; tokens per conversation is the "
        "mean rendered length of the training conversations in the run's layout.",
        "",
        "## (a) Learning method",
        "",
    ]
    rows = []
    for name in ("interleaved", "per_frame", "streaming"):
        r = results[name]
        paper = PAPER_METHODS[name]
        rows.append([METHOD_LABELS[name], *metric_cells(r["metrics"]), fmt(r["train_s"], "int"),
                     fmt(r["tokens_per_conversation"], "int"), f"{paper[0]} / {paper[1]} / {100 * paper[2]:.1f}%"])
    lines += [table(["method", *header, "train (s)", "tokens / conv.", "paper: PPL / TimeDiff / Fluency"], rows), "",
              method_sentence(results), ""]
    lines += ["## (b) Loss (streaming dialogue, tau = 1)", ""]
    rows = [[label, *metric_cells(results[name]["metrics"]), fmt(results[name]["train_s"], "int")]
            for name, label in (("streaming", "CE"), ("ohem", "OHEM"), ("focal", "focal"))]
    lines += [table(["loss", *header, "train (s)"], rows), "", loss_sentence(results), ""]
    taus = {"tau0.5": 0.5, "streaming": 1.0, "tau2": 2.0, "tau3": 3.0}
    lines += ["## (c) Stream loss weight tau (streaming dialogue, CE)", ""]
    rows = [[f"{tau:g}", *metric_cells(results[name]["metrics"]), fmt(results[name]["train_s"], "int")]
            for name, tau in taus.items()]
    lines += [table(["tau", *header, "train (s)"], rows), "", tau_sentence(results, taus), ""]
    sweep = results["streaming"].get("sweep", [])
    lines += ["## Threshold sweep (streaming model, evaluation only)", ""]
    rows = [[f"{s['threshold']:g}", *metric_cells(s), str(s.get("timed_turns", "-"))] for s in sweep]
    lines += [table(["theta", *header, "timed turns"], rows), "", sweep_sentence(sweep), ""]
    lines += ["## Discussion", "", DISCUSSION_START, discussion.rstrip("\n") + "\n" + DISCUSSION_END, "",
              "## Commands", "", "Every step `streamvlm tables` ran (or reused), in order:", "", "```",
              *commands, "```", ""]
    return "\n".join(lines)


def write_report(path: str | Path, results: dict[str, dict], options: TablesOptions, commands: Sequence[str],
                 elapsed_s: float, out: str) -> Path:
    """Write the report to ``path`` (keeping its discussion section); return the path."""
    target = Path(path)
    text = build_report(results, options, commands, elapsed_s, out, kept_discussion(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
