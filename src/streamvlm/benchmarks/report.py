"""Per-task tables of a run in each benchmark's own layout (the model, its blind baseline, chance),
and the per-task figure of several runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import ovobench, proactivevideoqa, streamingbench

SILENT = 100 * proactivevideoqa.START_SCORE / proactivevideoqa.MAX_SCORE
"""PAUC of a model that never replies: its "chance" row."""


def task_scores(benchmark: str, records: Sequence[dict[str, Any]], key: str = "score") -> dict[str, float]:
    """Percent per column of the benchmark's table (``key``: ``score`` or ``chance``); columns with
    nothing to average are left out."""
    if benchmark == "ovo-bench":
        return ovobench.summarize(_ovo_hits(records, key))["tasks"]
    if benchmark == "streamingbench":
        return {c: v[0] for c, v in _sb_cells(records, key).items()}
    return {c: v[0] for c, v in _pvqa_cells(records, key).items()}


def _ovo_hits(records: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, list[float]]]:
    hits: dict[str, dict[str, list[float]]] = {g: {} for g in ovobench.GROUPS}
    for r in records:
        if r.get(key) is not None:
            hits[ovobench.GROUP_OF[r["task"]]].setdefault(r["task"], []).append(r[key])
    return hits


def _mean(values: Sequence[float]) -> tuple[float, int] | None:
    return (100.0 * sum(values) / len(values), len(values)) if values else None


def _sb_cells(records: Sequence[dict[str, Any]], key: str) -> dict[str, tuple[float, int]]:
    columns: dict[str, list[float]] = {}
    for r in records:
        column = streamingbench.ABBREVIATIONS.get(r["task"], r["task"])
        if r.get(key) is not None:
            columns.setdefault(column, []).append(r[key])
            if column in streamingbench.REALTIME:
                columns.setdefault("All", []).append(r[key])
        if column == "PO" and key == "score" and r.get("on_time") is not None:
            columns.setdefault("PO-t", []).append(r["on_time"])
    return {c: m for c, v in columns.items() if (m := _mean(v)) is not None}


def _pvqa_cells(records: Sequence[dict[str, Any]], key: str) -> dict[str, tuple[float, int]]:
    sums: dict[str, list[float]] = {}
    for r in records:
        value = r.get(key)
        if value is None:
            continue
        for column in (r["task"], "All"):
            total = sums.setdefault(column, [0.0, 0])
            total[0] += value * r["turns"]
            total[1] += r["turns"]
    return {c: (100.0 * s / n, int(n)) for c, (s, n) in sums.items() if n}


def table(benchmark: str, records: Sequence[dict[str, Any]]) -> str:
    """The run's table: a row per pass, then chance (ProactiveVideoQA: a silent model)."""
    passes = [p for p in ("model", "blind") if any(r["pass"] == p for r in records)]
    base = [r for r in records if r["pass"] == passes[0]] if passes else []
    if benchmark == "ovo-bench":
        rows = [(p, ovobench.summarize(_ovo_hits([r for r in records if r["pass"] == p], "score"))) for p in passes]
        rows.append(("chance", ovobench.summarize(_ovo_hits(base, "chance"))))
        return ovobench.table(rows)
    if benchmark == "streamingbench":
        rows = [(p, _sb_cells([r for r in records if r["pass"] == p], "score")) for p in passes]
        rows.append(("chance", _sb_cells(base, "chance")))
        return streamingbench.table(rows)
    rows = [(p, _pvqa_cells([r for r in records if r["pass"] == p], "score")) for p in passes]
    rows.append(("silent", {c: (SILENT, n) for c, (_, n) in _pvqa_cells(base, "score").items()}))
    return proactivevideoqa.table(rows)


def describe(header: dict[str, Any]) -> str:
    """One line naming what was run: benchmark, file, model, mode, answer, prompt, judge, fps, theta."""
    answer = header["answer"] + (f" ({header['options_as']})" if header["answer"] == "options" else "")
    return (f"{header['benchmark']} {header['annotations']}: model {header['model']}, --mode {header['mode']}, "
            f"--answer {answer}, --prompt {header['prompt']}, judge {header['judge']}, "
            f"{header['fps']:g} fps, theta {header['threshold']:g}")


def plot(runs: Sequence[tuple[str, str, Sequence[dict[str, Any]]]], path: str | Path, *, title: str = "") -> Path:
    """Per-task scores of several runs ``(label, benchmark, records)``: a panel per benchmark, a
    bar per run and task (the model), a black tick for the blind baseline, a grey line for chance."""
    from ..evaluation.plots import pyplot, save_figure

    plt = pyplot()
    benchmarks = list(dict.fromkeys(b for _, b, _ in runs))
    widths = []
    for b in benchmarks:
        columns = set()
        for _, bench, records in runs:
            if bench == b:
                columns |= set(task_scores(b, [r for r in records if r["pass"] == "model"]))
        widths.append(max(2, len(columns)))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(2 + 0.75 * sum(widths), 4.2),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {label: cycle[i % len(cycle)] for i, label in enumerate(dict.fromkeys(label for label, _, _ in runs))}
    try:
        for ax, benchmark in zip(axes[0], benchmarks):
            mine = [(label, records) for label, b, records in runs if b == benchmark]
            model = [task_scores(benchmark, [r for r in recs if r["pass"] == "model"]) for _, recs in mine]
            columns = [c for c in _column_order(benchmark) if any(c in m for m in model)]
            if benchmark == "proactivevideoqa" and len(columns) == 2:  # one subset: "All" repeats it
                columns = columns[:1]
            step = 0.8 / max(1, len(mine))
            for i, ((label, records), scores) in enumerate(zip(mine, model)):
                xs = [k - 0.4 + step * (i + 0.5) for k in range(len(columns))]
                ax.bar(xs, [scores.get(c, 0.0) for c in columns], step * 0.9, label=label, color=colours[label])
                blind = task_scores(benchmark, [r for r in records if r["pass"] == "blind"])
                bx = [x for x, c in zip(xs, columns) if c in blind]
                ax.scatter(bx, [blind[c] for c in columns if c in blind], marker="_", s=120, color="black",
                           zorder=3, label="blind" if i == 0 else None)
            chance = (task_scores(benchmark, [r for r in mine[0][1] if r["pass"] == "model"], "chance")
                      if benchmark != "proactivevideoqa" else {c: SILENT for c in columns})
            for k, c in enumerate(columns):
                if c in chance:
                    ax.plot([k - 0.45, k + 0.45], [chance[c]] * 2, color="grey", linestyle="--", linewidth=1,
                            label="chance" if k == 0 else None)
            ax.set_xticks(range(len(columns)), columns, rotation=45 if len(columns) > 6 else 0)
            ax.set_ylim(0, 100)
            ax.set_title(benchmark + (" (PAUC)" if benchmark == "proactivevideoqa" else ""), fontsize=10)
            ax.set_ylabel("score (%)")
            ax.grid(axis="y", alpha=0.3)
        legend = {}
        for ax in axes[0]:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(6, len(legend)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02))
        fig.subplots_adjust(bottom=0.25)
        return save_figure(fig, Path(path), "--out", title)
    finally:
        plt.close(fig)


def _column_order(benchmark: str) -> list[str]:
    if benchmark == "ovo-bench":
        return [t for tasks in ovobench.GROUPS.values() for t in tasks]
    if benchmark == "streamingbench":
        return [*streamingbench.REALTIME, *streamingbench.CONTEXTUAL, "PO-t"]
    return ["SYNTH", "EGO", "TV", "VAD", "WEB", "All"]
