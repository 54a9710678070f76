"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM, TGI, llama.cpp server,
SGLang) as a chat backend, using only the standard library.

Requests run on a small thread pool; 429, 5xx, timeouts and connection errors are retried with
exponential backoff (``Retry-After`` honoured); 401/403/404 and other 4xx stop the run with a
:class:`BackendError` that says what to check.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from typing import Any

from ...jsonfiles import loads
from .backend import BackendError, ChatBackend, Prompt

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 60.0


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), None if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class OpenAIBackend(ChatBackend):
    """Chat completions over HTTP.

    ``base_url`` is the API root including ``/v1`` (e.g. ``http://127.0.0.1:8000/v1``); the key
    is read from the environment variable ``api_key_env`` (``None`` or ``""``: send no key, for
    local servers). ``batch_size`` equals ``concurrency``, the number of requests in flight.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 max_tokens: int = 64, temperature: float = 0.0, timeout: float = 60.0,
                 max_retries: int = 5, backoff: float = 1.0, concurrency: int = 4,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise BackendError(f"--base-url must start with http:// or https://, got {base_url!r}")
        if concurrency < 1 or max_retries < 0 or max_tokens < 1:
            raise ValueError("concurrency and max_tokens must be >= 1, max_retries >= 0")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env or None
        self.api_key: str | None = None
        if self.api_key_env:
            self.api_key = os.environ.get(self.api_key_env)
            if not self.api_key:
                raise BackendError(f"environment variable {self.api_key_env} is not set: it must hold the API key "
                                   f"for {self.url} (choose another variable with --api-key-env, or pass "
                                   "--api-key-env '' for a server without keys)")
        self.max_tokens, self.temperature = max_tokens, temperature
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.batch_size = concurrency
        self._sleep = sleep

    def identity(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.model, "max_tokens": self.max_tokens,
                "temperature": self.temperature}

    def request_body(self, prompt: Prompt) -> dict[str, Any]:
        """The JSON body of one chat-completions request."""
        return {"model": self.model, "messages": [dict(m) for m in prompt],
                "max_tokens": self.max_tokens, "temperature": self.temperature}

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return loads(resp.read(), file=self.url, error=BackendError)

    def complete_one(self, prompt: Prompt) -> str:
        """One request, retried on transient failures; the reply text."""
        body = json.dumps(self.request_body(prompt)).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            wait_s = min(MAX_BACKOFF_S, self.backoff * 2 ** attempt)
            try:
                return self._reply_text(self._post(body))
            except urllib.error.HTTPError as exc:
                detail = exc.read(500).decode("utf-8", "replace").strip()
                if exc.code in (401, 403):
                    raise BackendError(f"{self.url} refused the API key (HTTP {exc.code}); "
                                       f"check ${self.api_key_env}: {detail}") from None
                if exc.code == 404:
                    raise BackendError(f"{self.url} answered 404 Not Found; check --base-url (it must include /v1) "
                                       f"and --model {self.model!r}: {detail}") from None
                if exc.code not in RETRY_STATUSES:
                    raise BackendError(f"{self.url} rejected the request (HTTP {exc.code}): {detail}") from None
                last = f"HTTP {exc.code}"
                hinted = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
                if hinted is not None:
                    wait_s = min(MAX_BACKOFF_S, hinted)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.max_retries:
                self._sleep(wait_s)
        raise BackendError(f"{self.url} failed after {self.max_retries + 1} attempts (last: {last})")

    def _reply_text(self, payload: Any) -> str:
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.url} answered without choices[0].message.content: "
                               f"{str(payload)[:200]}") from None
        if content is None:
            return ""
        if not isinstance(content, str):
            raise BackendError(f"{self.url} answered a non-string message content: {str(content)[:200]}")
        return content.strip()

    def iter_complete(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, str]]:
        if not prompts:
            return
        pending: dict[Future[str], int] = {}
        todo = iter(range(len(prompts)))
        with ThreadPoolExecutor(max_workers=self.batch_size, thread_name_prefix="chat") as pool:
            try:
                for i in todo:
                    pending[pool.submit(self.complete_one, prompts[i])] = i
                    if len(pending) >= self.batch_size:
                        break
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i = pending.pop(fut)
                        yield i, fut.result()
                        nxt = next(todo, None)
                        if nxt is not None:
                            pending[pool.submit(self.complete_one, prompts[nxt])] = nxt
            finally:
                for fut in pending:
                    fut.cancel()
