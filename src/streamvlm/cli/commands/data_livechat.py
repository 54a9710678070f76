"""``streamvlm data livechat``: write the assistant's live-chat replies for a JSONL of requests.

Whole dialogues from GoalStep / COIN annotations are built by ``streamvlm data convert livechat``
(same backend options); this command answers requests one by one, for prompt development and for
pipelines that place their own questions.
"""

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
    """Options of ``streamvlm data livechat``."""

    requests: Annotated[FilePath, Arg(positional=True, metavar="REQUESTS_JSONL")]
    """One request per line: video_uid, time, kind, steps, goal, question, history (docs/generation.md)."""
    out: Annotated[Path, Arg(metavar="REPLIES_JSONL")]
    """Output: each request with its "reply"."""
    prompt: FilePath | None = None
    """Prompt template file replacing streamvlm/prompts/livechat_response.txt."""
    limit: NonNegativeInt | None = None
    """Answer only the first N requests."""
    backend: BackendOptions = field(default_factory=BackendOptions)
    """Who writes the replies."""

    def __post_init__(self) -> None:
        check_output(self.out, name="--out", inputs=[self.requests, self.prompt])


def run(options: Options) -> int:
    from ...data.generate.options import make_backend
    from ...data.generate.prompts import load_prompt
    from ...data.generate.request_file import answer_file
    from ...data.generate.responder import RESPONSE_PLACEHOLDERS, LLMResponder
    from ...data.rule_responder import RuleResponder

    template = load_prompt(options.prompt).require(RESPONSE_PLACEHOLDERS) if options.prompt else None
    backend = make_backend(options.backend)
    responder = RuleResponder() if backend is None else LLMResponder(backend, template)
    count = answer_file(options.requests, options.out, responder, limit=options.limit)
    print(f"wrote {count} replies ({options.backend.backend}) -> {options.out}")
    return 0
