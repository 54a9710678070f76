"""OpenAIBackend against a local OpenAI-style server: request shape, retries, refusals, keys."""

from __future__ import annotations

import pytest

from streamvlm.data.generate import BackendError
from streamvlm.data.generate.openai_backend import OpenAIBackend, retry_after_seconds

PROMPTS = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {i}"}] for i in range(5)]


def backend(server, sleeps: list[float] | None = None, **kw) -> OpenAIBackend:
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return OpenAIBackend(server.base_url, "tiny-chat", max_tokens=16, backoff=0.5, sleep=record, **kw)


def test_replies_in_order_with_the_api_request_shape(openai_server):
    replies = backend(openai_server, concurrency=3).complete(PROMPTS)
    assert replies == [f"ok: question {i}" for i in range(5)]
    assert openai_server.hits == 5
    body = openai_server.bodies[0]
    assert body["model"] == "tiny-chat" and body["max_tokens"] == 16 and body["temperature"] == 0.0
    assert sorted(b["messages"][1]["content"] for b in openai_server.bodies) == [f"question {i}" for i in range(5)]


def test_retries_429_with_retry_after_then_500_and_succeeds(openai_server):
    openai_server.failures = [(429, {"Retry-After": "3"}), (500, {}), (503, {})]
    sleeps: list[float] = []
    assert backend(openai_server, sleeps, concurrency=1).complete(PROMPTS[:1]) == ["ok: question 0"]
    assert openai_server.hits == 4
    assert sleeps == [3.0, 1.0, 2.0]  # Retry-After honoured, then exponential backoff 0.5 * 2**attempt


def test_gives_up_after_max_retries(openai_server):
    openai_server.failures = [(500, {})] * 10
    with pytest.raises(BackendError, match=r"failed after 3 attempts \(last: HTTP 500\)"):
        backend(openai_server, max_retries=2, concurrency=1).complete(PROMPTS[:1])
    assert openai_server.hits == 3


def test_wrong_key_is_a_clear_error_without_retries(openai_server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-wrong")
    with pytest.raises(BackendError, match=r"refused the API key \(HTTP 401\); check \$MY_KEY"):
        backend(openai_server, api_key_env="MY_KEY").complete(PROMPTS[:1])
    assert openai_server.hits == 1


def test_wrong_path_is_a_clear_error(openai_server):
    b = OpenAIBackend(openai_server.base_url.removesuffix("/v1"), "tiny-chat", sleep=lambda s: None)
    with pytest.raises(BackendError, match="404 Not Found; check --base-url"):
        b.complete(PROMPTS[:1])


def test_missing_key_variable_fails_before_any_request(openai_server, monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with pytest.raises(BackendError, match="environment variable NOT_SET_KEY is not set"):
        backend(openai_server, api_key_env="NOT_SET_KEY")
    assert openai_server.hits == 0


def test_unreachable_server_is_retried_then_reported():
    sleeps: list[float] = []
    b = OpenAIBackend("http://127.0.0.1:9/v1", "m", api_key_env="", max_retries=1, timeout=2, sleep=sleeps.append)
    with pytest.raises(BackendError, match="failed after 2 attempts"):
        b.complete(PROMPTS[:1])
    assert sleeps == [1.0]


def test_retry_after_parsing():
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
