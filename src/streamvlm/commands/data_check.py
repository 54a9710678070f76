"""``streamvlm data check FILE.jsonl``: validate a conversation JSONL file."""

from __future__ import annotations

import argparse
import sys

NAME = "check"
GROUP = "data"
HELP = "Validate a conversation JSONL file (fields, turns, times, video paths, feature coverage)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="conversation JSONL file")
    parser.add_argument("--videos-root", help="data root: video paths must stay inside it and exist")
    parser.add_argument("--features", help="features folder written by `streamvlm encode`: must cover every frame")


def run(args: argparse.Namespace) -> int:
    from ..data.check import check_file

    report = check_file(args.file, args.videos_root, args.features)
    for error in report.errors:
        print(error, file=sys.stderr)
    if report.errors:
        print(f"{len(report.errors)} error(s) in {args.file}", file=sys.stderr)
        return 2
    print(f"OK: {report.conversations} conversations, {report.frames} frames")
    return 0
