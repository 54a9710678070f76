"""``streamvlm data refine``: Ego4D narrations -> second-person sentences (``{annotation_uid: text}``)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

NAME = "refine"
GROUP = "data"
HELP = "Rewrite Ego4D narrations ('#C C picks up the knife') as 'You pick up the knife.' with an LLM or rules."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.generate.options import add_backend_arguments

    parser.add_argument("narration_json", metavar="NARRATION_JSON", help="Ego4D narration.json")
    parser.add_argument("--out", required=True, metavar="REFINED_JSON", help="output JSON {annotation_uid: refined text}")
    parser.add_argument("--prompt", help="prompt template file replacing streamvlm/prompts/refine_narration.txt")
    parser.add_argument("--limit", type=int, help="refine only the first N narrations (videos in file order, each pass by time)")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..data.formats import read_narration
    from ..data.generate.narration import REFINE_PLACEHOLDERS, narrations_by_uid, refine_narrations
    from ..data.generate.options import backend_from_args
    from ..data.generate.prompts import load_prompt
    from ..errors import UserError

    if args.limit is not None and args.limit < 0:
        raise UserError("--limit must be >= 0")
    narrations = narrations_by_uid(read_narration(args.narration_json), args.narration_json)
    if args.limit is not None:
        narrations = narrations[: args.limit]
    template = load_prompt(args.prompt).require(REFINE_PLACEHOLDERS) if args.prompt else None
    backend = backend_from_args(args)
    refined = refine_narrations(narrations, backend, template=template)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(refined, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"refined {len(refined)} narrations ({args.backend}) -> {out}")
    return 0
