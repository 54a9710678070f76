"""Options shared by ``streamvlm data refine``, ``data livechat`` and ``data convert livechat``:
which backend writes the text, which model, where the reply cache lives."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ...errors import UserError
from ...settings import Device, PositiveInt, settings
from .backend import ChatBackend

Backend = Literal["rule", "transformers", "openai"]


@settings
class BackendOptions:
    """Generation backend (LLM refinement and responses)."""

    backend: Backend = "rule"
    """rule: deterministic, no model; transformers: a local Hugging Face model; openai: an
    OpenAI-compatible /v1/chat/completions endpoint."""
    model: str | None = None
    """Model name or folder (transformers), or the served model name (openai)."""
    base_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """API root including /v1, e.g. http://127.0.0.1:8000/v1 (openai)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (openai; '' sends no key)."""
    batch_size: Annotated[PositiveInt, Field(le=4096)] = 8
    """Prompts per generate call (transformers) or requests in flight (openai)."""
    max_new_tokens: Annotated[PositiveInt, Field(le=8192)] = 64
    """Reply length limit in tokens."""
    device: Device = "auto"
    """Torch device for transformers (auto: cuda if available, else cpu)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype for transformers."""
    timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Seconds per HTTP request (openai)."""
    max_retries: Annotated[int, Field(ge=0, le=100)] = 5
    """Retries on 429 / 5xx / timeouts (openai)."""
    cache: str | None = None
    """JSONL reply cache: a rerun reuses it and only asks for what is missing."""

    def __post_init__(self) -> None:
        if self.backend != "rule" and not self.model:
            raise ValueError(f"backend {self.backend} needs --model")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")


def make_backend(options: BackendOptions) -> ChatBackend | None:
    """The backend chosen (wrapped in the cache when ``cache`` is set); None for ``rule``."""
    if options.backend == "rule":
        return None
    backend: ChatBackend
    if options.backend == "transformers":
        from .transformers_backend import TransformersBackend

        try:
            backend = TransformersBackend(options.model, max_new_tokens=options.max_new_tokens,
                                          batch_size=options.batch_size,
                                          device=None if options.device == "auto" else options.device,
                                          dtype=options.dtype)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load model {options.model!r}: {str(exc).splitlines()[0]}") from None
    else:
        from .openai_backend import OpenAIBackend

        backend = OpenAIBackend(options.base_url, options.model, api_key_env=options.api_key_env,
                                max_tokens=options.max_new_tokens, timeout=options.timeout,
                                max_retries=options.max_retries, concurrency=options.batch_size)
    if options.cache:
        from .cache import CachedBackend

        backend = CachedBackend(backend, options.cache)
    return backend
