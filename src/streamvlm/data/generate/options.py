"""Command-line options shared by ``streamvlm data refine`` and ``streamvlm data livechat``:
which backend, which model, where the cache lives."""

from __future__ import annotations

import argparse

from ...errors import UserError
from .backend import ChatBackend

BACKENDS = ("rule", "transformers", "openai")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("generation backend")
    g.add_argument("--backend", choices=BACKENDS, default="rule",
                   help="rule: deterministic, no model; transformers: a local Hugging Face model; "
                        "openai: an OpenAI-compatible /v1/chat/completions endpoint (default: rule)")
    g.add_argument("--model", help="model name or folder (transformers), or the served model name (openai)")
    g.add_argument("--base-url", help="API root including /v1, e.g. http://127.0.0.1:8000/v1 (openai)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (openai; '' sends no key) [OPENAI_API_KEY]")
    g.add_argument("--batch-size", type=int, default=8,
                   help="prompts per generate call (transformers) or requests in flight (openai) [8]")
    g.add_argument("--max-new-tokens", type=int, default=64, help="reply length limit in tokens [64]")
    g.add_argument("--device", help="torch device for transformers (default: cuda if available, else cpu)")
    g.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="weights dtype for transformers [auto]")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (openai) [60]")
    g.add_argument("--max-retries", type=int, default=5, help="retries on 429/5xx/timeouts (openai) [5]")
    g.add_argument("--cache", help="JSONL reply cache: a rerun reuses it and only asks for what is missing")


def backend_from_args(args: argparse.Namespace) -> ChatBackend | None:
    """The backend chosen on the command line (wrapped in the cache when ``--cache`` is given);
    None for ``--backend rule``."""
    if args.batch_size < 1 or args.max_new_tokens < 1 or args.max_retries < 0 or args.timeout <= 0:
        raise UserError("--batch-size and --max-new-tokens must be >= 1, --max-retries >= 0, --timeout > 0")
    if args.backend == "rule":
        return None
    if not args.model:
        raise UserError(f"--backend {args.backend} needs --model")
    backend: ChatBackend
    if args.backend == "transformers":
        from .transformers_backend import TransformersBackend

        try:
            backend = TransformersBackend(args.model, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                          device=args.device, dtype=args.dtype)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load model {args.model!r}: {str(exc).splitlines()[0]}") from None
    else:
        from .openai_backend import OpenAIBackend

        if not args.base_url:
            raise UserError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        backend = OpenAIBackend(args.base_url, args.model, api_key_env=args.api_key_env, max_tokens=args.max_new_tokens,
                                timeout=args.timeout, max_retries=args.max_retries, concurrency=args.batch_size)
    if args.cache:
        from .cache import CachedBackend

        backend = CachedBackend(backend, args.cache)
    return backend
