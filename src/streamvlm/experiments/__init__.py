"""Experiments: the paper's ablation tables reproduced at CPU scale (``streamvlm tables``)."""

from .tables import RUNS, RunSpec, TablesOptions, run_tables

__all__ = ["RUNS", "RunSpec", "TablesOptions", "run_tables"]
