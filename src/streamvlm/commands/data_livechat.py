"""``streamvlm data livechat``: write the assistant's live-chat replies for a JSONL of requests.

Whole dialogues from GoalStep / COIN annotations are built by ``streamvlm data convert livechat``
(same backend options); this command answers requests one by one, for prompt development and for
pipelines that place their own questions.
"""

from __future__ import annotations

import argparse

NAME = "livechat"
GROUP = "data"
HELP = "Write live-chat assistant replies for a JSONL of response requests with rules or an LLM."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.generate.options import add_backend_arguments

    parser.add_argument("requests", metavar="REQUESTS_JSONL",
                        help="one request per line: video_uid, time, kind, steps, goal, question, history (docs/generation.md)")
    parser.add_argument("--out", required=True, metavar="REPLIES_JSONL", help="output: each request with its \"reply\"")
    parser.add_argument("--prompt", help="prompt template file replacing streamvlm/prompts/livechat_response.txt")
    parser.add_argument("--limit", type=int, help="answer only the first N requests")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    from ..data.generate.options import backend_from_args
    from ..data.generate.prompts import load_prompt
    from ..data.generate.request_file import read_requests
    from ..data.generate.responder import RESPONSE_PLACEHOLDERS, LLMResponder
    from ..data.rule_responder import RuleResponder
    from ..errors import UserError
    from ..typed_json import to_dict

    if args.limit is not None and args.limit < 0:
        raise UserError("--limit must be >= 0")
    requests = read_requests(args.requests)[: args.limit]
    template = load_prompt(args.prompt).require(RESPONSE_PLACEHOLDERS) if args.prompt else None
    backend = backend_from_args(args)
    responder = RuleResponder() if backend is None else LLMResponder(backend, template)
    replies = responder.respond(requests)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for request, reply in zip(requests, replies):
            f.write(json.dumps({**to_dict(request), "reply": reply}, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    print(f"wrote {len(replies)} replies ({args.backend}) -> {out}")
    return 0
