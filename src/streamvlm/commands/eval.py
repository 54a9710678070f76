"""``streamvlm eval MODEL DATA.jsonl --features DIR``: the paper's streaming metrics (LM-PPL,
TimeDiff, Fluency, LM-correctness) on gold conversations and, with ``--downstream``, the COIN /
Ego4D LTA scores of the lines that carry a ``task``. See ``docs/evaluation.md``."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import UserError

NAME = "eval"
HELP = "evaluate a checkpoint: LM-PPL, TimeDiff, Fluency, LM-correctness (and COIN / Ego4D LTA)"

_LABELS = {
    "lm_ppl": "LM-PPL", "time_diff": "TimeDiff (s)", "fluency": "Fluency", "lm_correctness": "LM-correctness",
    "coin_step": "COIN step", "coin_task": "COIN task", "coin_next": "COIN next", "coin_procedure": "COIN procedure",
    "coin_procedure_goal": "COIN procedure+goal", "lta_verb_ed": "LTA verb ED@20", "lta_noun_ed": "LTA noun ED@20",
    "lta_action_ed": "LTA action ED@20",
}
_PERCENT = {"fluency", "lm_correctness", "coin_step", "coin_task", "coin_next", "coin_procedure", "coin_procedure_goal"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder (written by save_pretrained / streamvlm train)")
    p.add_argument("data", type=Path, help="evaluation conversations, JSONL (lines with a 'task' are downstream questions)")
    p.add_argument("--features", type=Path, required=True, help="folder of frame features (streamvlm encode)")
    p.add_argument("--threshold", type=float, default=0.725,
                   help="theta: the interval token is zeroed below this probability (default 0.725; 0 = argmax)")
    p.add_argument("--limit", type=int, help="evaluate only the first N lines")
    p.add_argument("--downstream", action="store_true", help="also score the COIN / LTA questions (generation)")
    p.add_argument("--lta-beams", type=int, default=5, help="K: sequences generated per LTA question (default 5)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="cap on generated answer length (default: 200 for COIN, 512 for LTA, as upstream)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _check(args: argparse.Namespace) -> None:
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold {args.threshold}: must be between 0 and 1")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be >= 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens}: must be >= 1")
    if args.lta_beams < 1:
        raise UserError(f"--lta-beams {args.lta_beams}: must be >= 1")
    if not args.data.is_file():
        raise UserError(f"{args.data}: data file not found")
    if not args.features.is_dir():
        raise UserError(f"{args.features}: features folder not found")


def _format(name: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{100 * value:.1f}%" if name in _PERCENT else f"{value:.3f}"
    return str(value)


def print_table(result: dict) -> None:
    rows = [(label, _format(key, result.get(key))) for key, label in _LABELS.items() if key in result]
    counts = [("conversations", result["conversations"]), ("turns (LM / timed / fluency)",
              f"{result['lm_turns']} / {result['timed_turns']} / {result['fluency_turns']}")]
    counts += [(f"{task} samples", n) for task, n in result.get("downstream_counts", {}).items()]
    if result.get("skipped_downstream"):
        counts.append(("downstream lines skipped (no --downstream)", result["skipped_downstream"]))
    width = max(len(label) for label, _ in rows + counts)
    for label, value in rows + counts:
        print(f"{label:<{width}}  {value}")


def run(args: argparse.Namespace) -> int:
    _check(args)
    import torch

    from ..evaluation.data import FeatureReader, read_eval_jsonl
    from ..evaluation.downstream import evaluate_downstream
    from ..evaluation.stream_eval import evaluate_dataset
    from ..model import StreamVLM

    items = read_eval_jsonl(args.data)[: args.limit]
    stream_items = [i for i in items if i.task is None]
    task_items = [i for i in items if i.task is not None]
    if not stream_items and not (args.downstream and task_items):
        raise UserError(f"{args.data}: nothing to evaluate (no conversation lines"
                        f"{'' if args.downstream else '; downstream lines need --downstream'})")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    model = StreamVLM.from_pretrained(str(args.model), with_vision=False, device=device)
    reader = FeatureReader(args.features, model.config.tokens_per_frame, model.config.vision_hidden_size)
    progress = not args.no_progress
    result: dict = {"threshold": args.threshold}
    result.update(evaluate_dataset(model, (reader.stream_sample(i) for i in stream_items), args.threshold,
                                   progress=progress, total=len(stream_items)))
    if args.downstream:
        verbs = {v for i in task_items for v in i.future_verbs}
        caps = {} if args.max_new_tokens is None else {"coin_max_new_tokens": args.max_new_tokens,
                                                       "lta_max_new_tokens": args.max_new_tokens}
        result.update(evaluate_downstream(model, (reader.downstream_sample(i) for i in task_items), lta_verbs=verbs,
                                          lta_beams=args.lta_beams, **caps, progress=progress, total=len(task_items)))
    else:
        result["skipped_downstream"] = len(task_items)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0
