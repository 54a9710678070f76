"""``streamvlm data refine``: Ego4D narrations -> second-person sentences (``{annotation_uid: text}``)."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated

from pydantic import FilePath

from ...data.generate.options import BackendOptions
from ...outputs import check_output
from ...settings import Arg, NonNegativeInt, settings


@settings
class Options:
    """Options of ``streamvlm data refine``."""

    narration_json: Annotated[FilePath, Arg(positional=True, metavar="NARRATION_JSON")]
    """Ego4D narration.json."""
    out: Path
    """Output JSON {annotation_uid: refined text}."""
    prompt: FilePath | None = None
    """Prompt template file replacing streamvlm/prompts/refine_narration.txt."""
    limit: NonNegativeInt | None = None
    """Refine only the first N narrations (videos in file order, each pass by time)."""
    backend: BackendOptions = field(default_factory=BackendOptions)
    """Who rewrites the narrations."""

    def __post_init__(self) -> None:
        check_output(self.out, name="--out", inputs=[self.narration_json, self.prompt])


def run(options: Options) -> int:
    from ...data.generate.narration import REFINE_PLACEHOLDERS, refine_file
    from ...data.generate.options import make_backend
    from ...data.generate.prompts import load_prompt

    template = load_prompt(options.prompt).require(REFINE_PLACEHOLDERS) if options.prompt else None
    count = refine_file(options.narration_json, options.out, make_backend(options.backend), template=template,
                        limit=options.limit)
    print(f"refined {count} narrations ({options.backend.backend}) -> {options.out}")
    return 0
