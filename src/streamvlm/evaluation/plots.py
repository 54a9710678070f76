"""PNG figures of the live evaluation (:mod:`.live_eval`): quality over time per KV policy, and the
colour / object confusion. matplotlib (Agg backend, no display) is imported only when a figure is
drawn; without it :func:`require_matplotlib` says how to install it, in one line."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..outputs import write_bytes_atomic

if TYPE_CHECKING:
    from .live_eval import Confusion, WindowScore

PLOTTED = (("answered", "answered within {tolerance:g} s"), ("text", "right text"), ("verb", "right verb"),
           ("object", "right object"), ("well_formed", "well-formed"), ("false_alarm", "false alarms / replies"))
"""(rate of :attr:`~.live_eval.WindowScore.rates`, panel title) of the quality-over-time figure."""


def require_matplotlib(flag: str = "--plot") -> None:
    """A UserError naming ``flag`` when matplotlib is not installed (cheap: no import)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise UserError(f"{flag}: drawing plots needs matplotlib; install it with `pip install matplotlib`")


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display); UserError without matplotlib."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, name: str, title: str = "") -> Path:
    """Title the figure, lay it out and write it as a PNG atomically."""
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return write_bytes_atomic(path, buffer.getvalue(), name=name)


def plot_quality(runs: Sequence[tuple[str, Sequence[WindowScore]]], path: str | Path, *, title: str = "",
                 tolerance: float = 2.0, name: str = "--plot") -> Path:
    """Quality over time: one panel per measure of :data:`PLOTTED`, one line per run
    ``(label, windows)``, x the middle of each window in minutes, y in percent (a window with
    nothing to measure leaves a gap)."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True)
    try:
        for ax, (key, label) in zip(axes.flat, PLOTTED):
            for run_label, windows in runs:
                xs = [(w.start + w.end) / 2 / 60 for w in windows]
                ys = [float("nan") if w.rates[key] is None else 100 * w.rates[key] for w in windows]
                ax.plot(xs, ys, marker="o", markersize=3, label=run_label)
            ax.set_title(label.format(tolerance=tolerance), fontsize=10)
            ax.set_ylim(-2, 102)
            ax.grid(alpha=0.3)
        for ax in axes[-1]:
            ax.set_xlabel("stream time (minutes)")
        for ax in axes[:, 0]:
            ax.set_ylabel("%")
        axes.flat[0].legend(fontsize=8, loc="lower left")
        return save_figure(fig, Path(path), name, title)
    finally:
        plt.close(fig)


def plot_confusion(panels: Sequence[tuple[str, Confusion]], path: str | Path, *, title: str = "",
                   name: str = "--confusion-plot") -> Path:
    """One heat map per ``(title, confusion)``: gold values (rows) against the values the paired
    replies named (columns, ``-``: none), counts written in the cells; each row label carries the
    value's over-prediction ratio (its share of the replies' mentions over its share of the gold's)."""
    import math

    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.6), squeeze=False)
    try:
        for ax, (panel, conf) in zip(axes[0], panels):
            rows = conf.values()
            cols = [*rows, "-"]
            grid = [[conf.pairs[(g, p)] for p in cols] for g in rows]
            ax.imshow(grid or [[0]], cmap="Blues", aspect="auto")
            peak = max((max(r) for r in grid if r), default=0)
            for i, row in enumerate(grid):
                for j, n in enumerate(row):
                    if n:
                        ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                                color="white" if n > peak / 2 else "black")
            ratio = conf.over_predicted()
            ax.set_yticks(range(len(rows)),
                          [f"{g} ({'new' if math.isinf(ratio[g]) else f'{ratio[g]:.2f}x'})" for g in rows], fontsize=8)
            ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
            ax.set_xlabel("predicted (paired reply)")
            ax.set_ylabel("gold (replies' share / gold share)")
            ax.set_title(panel, fontsize=10)
        return save_figure(fig, Path(path), name, title)
    finally:
        plt.close(fig)
