"""``streamvlm data check FILE.jsonl``: validate a conversation JSONL file."""

from __future__ import annotations

import sys
from typing import Annotated

from pydantic import DirectoryPath, FilePath

from ...settings import Arg, settings


@settings
class Options:
    """Options of ``streamvlm data check``."""

    file: Annotated[FilePath, Arg(positional=True, metavar="FILE")]
    """Conversation JSONL file."""
    videos_root: DirectoryPath | None = None
    """Data root: video paths must stay inside it and exist."""
    features: DirectoryPath | None = None
    """Features folder written by `streamvlm encode`: it must cover every frame."""


def run(options: Options) -> int:
    from ...data.check import check_file

    report = check_file(options.file, options.videos_root, options.features)
    for error in report.errors:
        print(error, file=sys.stderr)
    if report.errors:
        print(f"{len(report.errors)} error(s) in {options.file}", file=sys.stderr)
        return 2
    print(f"OK: {report.conversations} conversations, {report.frames} frames")
    return 0
