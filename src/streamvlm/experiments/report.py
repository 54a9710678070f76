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

from ..outputs import write_text_atomic

if TYPE_CHECKING:
    from .runs import TablesOptions

DISCUSSION_START = "<!-- discussion:start -->"
DISCUSSION_END = "<!-- discussion:end -->"

PAPER = {
    "interleaved": (2.45, 6.47, 0.111), "per_frame": (3.34, 2.52, 0.377), "streaming": (2.43, 2.32, 0.426),
    "ohem": (2.53, 2.39, 0.410), "focal": (2.59, 2.44, 0.394),
    "tau0.5": (2.44, 2.32, 0.424), "tau2": (2.46, 2.31, 0.425), "tau3": (2.47, 2.32, 0.425),
}
"""The paper's Ego4D narration numbers per run (LM-PPL, TimeDiff, Fluency): MISSION 1.5 and the
seed's tables (a)-(c). ``streaming`` is CE with tau = 1."""
PAPER_COST = {"interleaved": "1694 / 12h", "per_frame": "6737 / 22h", "streaming": "1694 / 12h"}
"""The paper's tokens per training conversation and training time (table (a))."""

METHODS = {"interleaved": "Interleaved dialogue", "per_frame": "Per-frame dialogue", "streaming": "Streaming dialogue"}
LOSSES = {"streaming": "CE", "ohem": "OHEM", "focal": "focal"}
TAUS = {"tau0.5": 0.5, "streaming": 1.0, "tau2": 2.0, "tau3": 3.0}
SEPARATION = "P(silence): speak / silent frames"


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


def separation_cell(result: dict) -> str:
    """Mean P(silence) at gold-speak / gold-silent frames (see :mod:`.diagnostics`)."""
    sep = result.get("separation") or {}
    return f"{fmt(sep.get('p_silence_speak'))} / {fmt(sep.get('p_silence_silent'))}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


METRIC_SENSE = (("lm_ppl", "LM-PPL", False), ("time_diff", "TimeDiff", False), ("fluency", "Fluency", True))
DECIMALS = {"lm_ppl": 3, "time_diff": 2, "fluency": 3}
"""Values equal at the report's precision are ties."""


def ranking(results: dict[str, dict], names: Sequence[str], metric: str, higher_is_better: bool) -> list[list[str]]:
    """``names`` grouped from best to worst on ``metric``; a group holds runs tied at the report's
    precision; runs without a finite value come last, as one group."""
    groups: dict[float, list[str]] = {}
    for name in names:
        value = results[name]["metrics"].get(metric)
        if value is None or not math.isfinite(value):
            key = math.inf
        else:
            key = round(-value if higher_is_better else value, DECIMALS[metric])
        groups.setdefault(key, []).append(name)
    return [groups[k] for k in sorted(groups)]


def paper_cell(name: str) -> str:
    ppl, time_diff, fluency = PAPER[name]
    return f"{ppl} / {time_diff} / {100 * fluency:.1f}%"


def ordering_sentence(results: dict[str, dict], labels: dict[str, str]) -> str:
    """Whether the runs ``labels`` rank as in the paper, metric by metric (a tie is not the
    paper's strict ordering)."""
    names = list(labels)
    parts, held = [], 0
    for i, (metric, label, higher) in enumerate(METRIC_SENSE):
        paper = [[n] for n in sorted(names, key=lambda n: -PAPER[n][i] if higher else PAPER[n][i])]
        here = ranking(results, names, metric, higher)
        held += here == paper
        text = " > ".join(" = ".join(labels[n] for n in group) for group in here)
        parts.append(f"{label} {'as in the paper' if here == paper else 'differs from the paper'} (best first: {text})")
    verdict = "holds" if held == len(METRIC_SENSE) else ("holds in part" if held else "does not hold")
    return f"The paper's ordering {verdict} here: " + "; ".join(parts) + "."


def tau_sentence(results: dict[str, dict], taus: dict[str, float]) -> str:
    """The paper finds every tau within about 1% and tau = 2 the best trade-off (best TimeDiff)."""
    names = list(taus)
    spreads, similar = [], True
    for metric, label, _ in METRIC_SENSE:
        values = [results[n]["metrics"].get(metric) for n in names]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if values and max(values) > 0:
            spread = (max(values) - min(values)) / max(values)
            similar = similar and (metric == "lm_ppl" or spread <= 0.1)
            spreads.append(f"{label} {100 * spread:.0f}%")
    best_time = ranking(results, names, "time_diff", False)[0]
    best_fluency = ranking(results, names, "fluency", True)[0]
    time_at_2 = best_time == ["tau2"]
    verdict = "holds" if similar and time_at_2 else ("holds in part" if similar or time_at_2 else "does not hold")

    def at(group: list[str]) -> str:
        return " and ".join(f"{taus[n]:g}" for n in group) + (" (tied)" if len(group) > 1 else "")
    return (f"The paper's finding (every tau within about 1%, tau = 2 the best trade-off with the best TimeDiff) "
            f"{verdict} here: best TimeDiff at tau = {at(best_time)}, best Fluency at tau = {at(best_fluency)}; "
            "spread between the best and worst tau (relative to the largest value): " + ", ".join(spreads) + ".")


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


def build_report(results: dict[str, dict], options: TablesOptions, commands: Sequence[str],
                 calls_s: Sequence[float], out: str, discussion: str) -> str:
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
        f"Total wall time: **{sum(calls_s) / 60:.1f} min** over {len(calls_s)} call(s) of `streamvlm tables` "
        f"({', '.join(f'{c / 60:.1f}' for c in calls_s)} min; a later call reuses the finished runs).",
        "",
        "## Setup",
        "",
        f"- Training world: {options.videos} synthetic videos of {options.duration:g} s at {options.size} px "
        f"(`streamvlm synth --seed {options.seed} --split train`), one narration and one live-chat conversation each.",
        f"- Held-out world: {options.heldout_videos} videos of a new seed ({options.seed + 1}, `--split test`); "
        "every number below is on its narration conversations.",
        f"- Vision: one tiny-synth tower pretrained on the training world's frames for {options.tower_epochs} epochs "
        "(`streamvlm pretrain-tower`), then frozen; both worlds' features are extracted once with it "
        "(`streamvlm encode`) and every run trains over them, so the runs differ only in how the language model "
        "learns (as in the paper, where SigLIP is frozen).",
        f"- Every run: the same data, {options.steps} optimizer steps of 4 conversations (batch 2 x accumulation 2), "
        "seed 0, the tiny-synth recipe with these model overrides: "
        + (", ".join(f"`{o}`" for o in options.model) or "none") + ".",
        f"- theta = {theta:g} on P(interval) (per-frame models: on P(empty reply)) for tables (a)-(c).",
        f"- {SEPARATION}: the mean silence probability at the held-out frames where the gold narration speaks, "
        "and where it stays silent (`streamvlm.experiments.diagnostics`). Equal values mean the run learned how "
        "often to speak but not when.",
        f"- Training time is wall time with {options.threads} torch thread(s) on a shared 2-core CPU, so it is noisy; "
        "tokens per conversation is the mean rendered length of the training conversations in the run's layout.",
        "",
        "## (a) Learning method",
        "",
    ]
    rows = [[METHODS[name], *metric_cells(results[name]["metrics"]), separation_cell(results[name]),
             fmt(results[name]["train_s"], "int"), fmt(results[name]["tokens_per_conversation"], "int"),
             f"{paper_cell(name)} / {PAPER_COST[name]}"] for name in METHODS]
    lines += [table(["method", *header, SEPARATION, "train (s)", "tokens / conv.",
                     "paper: PPL / TimeDiff / Fluency / tokens / train"],
                    rows), "", ordering_sentence(results, METHODS), ""]
    lines += ["## (b) Loss (streaming dialogue, tau = 1)", ""]
    rows = [[label, *metric_cells(results[name]["metrics"]), separation_cell(results[name]),
             fmt(results[name]["train_s"], "int"), paper_cell(name)] for name, label in LOSSES.items()]
    lines += [table(["loss", *header, SEPARATION, "train (s)", "paper: PPL / TimeDiff / Fluency"], rows), "",
              ordering_sentence(results, LOSSES), ""]
    lines += ["## (c) Stream loss weight tau (streaming dialogue, CE)", ""]
    rows = [[f"{tau:g}", *metric_cells(results[name]["metrics"]), separation_cell(results[name]),
             fmt(results[name]["train_s"], "int"), paper_cell(name)] for name, tau in TAUS.items()]
    lines += [table(["tau", *header, SEPARATION, "train (s)", "paper: PPL / TimeDiff / Fluency"], rows), "",
              tau_sentence(results, TAUS), ""]
    sweep = results["streaming"].get("sweep", [])
    lines += ["## Threshold sweep (streaming model, evaluation only)", ""]
    rows = [[f"{s['threshold']:g}", *metric_cells(s), str(s.get("timed_turns", "-"))] for s in sweep]
    lines += [table(["theta", *header, "timed turns"], rows), "", sweep_sentence(sweep), ""]
    lines += ["## Discussion", "", DISCUSSION_START, discussion.rstrip("\n") + "\n" + DISCUSSION_END, "",
              "## Commands", "", "Every step `streamvlm tables` ran (or reused), in order:", "", "```",
              *commands, "```", ""]
    return "\n".join(lines)


def write_report(path: str | Path, results: dict[str, dict], options: TablesOptions, commands: Sequence[str],
                 calls_s: Sequence[float], out: str) -> Path:
    """Write the report to ``path`` (keeping its discussion section); return the path. ``calls_s``:
    the wall time of every ``streamvlm tables`` call on this work folder."""
    target = Path(path)
    text = build_report(results, options, commands, calls_s, out, kept_discussion(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, text, name="--results")
    return target
