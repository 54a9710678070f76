"""Fixtures: a protocol-conformant OpenAI-style chat-completions server on 127.0.0.1, a tiny Llama on disk."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

API_KEY = "sk-test-123"


@dataclass
class FakeOpenAI:
    """Answers ``POST /v1/chat/completions``; ``failures`` are ``(status, headers)`` answered first."""

    base_url: str = ""
    reply: Callable[[dict[str, Any]], str] = lambda body: "ok: " + body["messages"][-1]["content"]
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _check_request(content_type: str | None, body: Any) -> str | None:
    """What is wrong with a chat-completions request, or None."""
    if content_type != "application/json":
        return f"Content-Type {content_type!r}"
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        return "model must be a non-empty string"
    if not isinstance(body.get("max_tokens"), int) or body.get("temperature") != 0.0:
        return "max_tokens must be an int and temperature 0.0"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and set(m) == {"role", "content"} and m["role"] in ("system", "user", "assistant")
            and isinstance(m["content"], str) for m in messages):
        return "messages must be a non-empty list of {role, content}"
    return None


def _handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            with state.lock:
                state.hits += 1
                failure = state.failures.pop(0) if state.failures else None
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                return self._send(401, {"error": {"message": "Incorrect API key provided",
                                                  "type": "invalid_request_error"}})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            problem = _check_request(self.headers.get("Content-Type"), body)
            if problem:
                return self._send(400, {"error": {"message": problem, "type": "invalid_request_error"}})
            if failure is not None:
                status, headers = failure
                return self._send(status, {"error": {"message": "try again", "type": "server_error"}}, headers)
            with state.lock:
                state.bodies.append(body)
            content = state.reply(body)
            self._send(200, {
                "id": f"chatcmpl-{state.hits}", "object": "chat.completion", "created": 1700000000,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            })

    return Handler


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, hidden 32) and a trained BPE tokenizer saved in one folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from streamvlm.model.presets import train_tokenizer

    path = tmp_path_factory.mktemp("tiny-llama")
    tok = train_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A running fake server; ``OPENAI_API_KEY`` holds its key."""
    state = FakeOpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
