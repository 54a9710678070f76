"""``streamvlm eval DATA.jsonl --features DIR [--model MODEL]``: the paper's streaming metrics
(LM-PPL, TimeDiff, Fluency, LM-correctness) on gold conversations and, with ``--downstream``, the
COIN / Ego4D LTA scores of the lines that carry a ``task``. See ``docs/evaluation.md``."""

from __future__ import annotations

import json
import math
from dataclasses import field
from typing import Annotated

from pydantic import DirectoryPath, FilePath

from ...evaluation.files import EvalSettings
from ...model.loading import ModelSource
from ...settings import Arg, settings

LABELS = {
    "lm_ppl": "LM-PPL", "time_diff": "TimeDiff (s)", "fluency": "Fluency", "lm_correctness": "LM-correctness",
    "coin_step": "COIN step", "coin_task": "COIN task", "coin_next": "COIN next", "coin_procedure": "COIN procedure",
    "coin_procedure_goal": "COIN procedure+goal", "lta_verb_ed": "LTA verb ED@20", "lta_noun_ed": "LTA noun ED@20",
    "lta_action_ed": "LTA action ED@20",
}
PERCENT = {"fluency", "lm_correctness", "coin_step", "coin_task", "coin_next", "coin_procedure", "coin_procedure_goal"}


@settings
class Options:
    """Options of ``streamvlm eval``."""

    data: Annotated[FilePath, Arg(positional=True, metavar="DATA")]
    """Evaluation conversations, JSONL (lines with a 'task' are downstream questions)."""
    features: DirectoryPath
    """Folder of frame features (streamvlm encode) made with the model's own frame encoder."""
    model: ModelSource = field(default_factory=ModelSource)
    """The model."""
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    """Evaluation."""
    json: bool = False
    """Print one JSON object instead of a table."""
    no_progress: bool = False
    """Hide the progress bars."""


def _format(name: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{100 * value:.1f}%" if name in PERCENT else f"{value:.3f}"
    return str(value)


def print_table(result: dict) -> None:
    rows = [(label, _format(key, result.get(key))) for key, label in LABELS.items() if key in result]
    counts = [("conversations", result["conversations"]), ("turns (LM / timed / fluency)",
              f"{result['lm_turns']} / {result['timed_turns']} / {result['fluency_turns']}")]
    counts += [(f"{task} samples", n) for task, n in result.get("downstream_counts", {}).items()]
    if result.get("skipped_downstream"):
        counts.append(("downstream lines skipped (no --downstream)", result["skipped_downstream"]))
    counts.append(("threshold", result["threshold"]))
    if "rules" in result:  # docs/upstream.md: streamvlm's or upstream's evaluation rules
        counts.append(("rules", f"{result['rules']} (timed turns: {result['timing']}, "
                                f"conversation lacking a metric: {result['missing_metric']})"))
    width = max(len(label) for label, _ in rows + counts)
    for label, value in rows + counts:
        print(f"{label:<{width}}  {value}")


def run(options: Options) -> int:
    from ...evaluation.data import read_eval_jsonl
    from ...evaluation.files import evaluate_records
    from ...model.loading import load_model

    records = read_eval_jsonl(options.data)  # a malformed file fails before the model loads
    # with its tower: the features' record of how their frames were made is checked against it
    model = load_model(options.model, decoding=False)
    result = evaluate_records(model, records, options.data, options.features, options.evaluation,
                              progress=not options.no_progress)
    if options.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0
