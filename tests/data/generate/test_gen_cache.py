"""CachedBackend: a rerun asks nothing, an interrupted run keeps what it got, keys see parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from streamvlm.data.generate import CachedBackend, ChatBackend, Prompt
from streamvlm.data.generate.cache import cache_key, load_cache
from streamvlm.data.generate.openai_backend import OpenAIBackend
from streamvlm.errors import DataError

PROMPTS = [[{"role": "user", "content": f"item {i}"}] for i in range(6)]


class Counting(ChatBackend):
    """Replies "<content>!"; raises after ``fail_after`` replies when set."""

    def __init__(self, fail_after: int | None = None, max_tokens: int = 8) -> None:
        self.calls, self.fail_after, self.max_tokens = 0, fail_after, max_tokens

    def identity(self):
        return {"backend": "counting", "max_tokens": self.max_tokens}

    def iter_complete(self, prompts: Sequence[Prompt]) -> Iterator[tuple[int, str]]:
        for i, p in enumerate(prompts):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise RuntimeError("interrupted")
            self.calls += 1
            yield i, p[-1]["content"] + "!"


def test_second_run_makes_zero_server_calls(openai_server, tmp_path):
    cache = tmp_path / "replies.jsonl"
    http = OpenAIBackend(openai_server.base_url, "tiny-chat", concurrency=2, sleep=lambda s: None)
    first = CachedBackend(http, cache).complete(PROMPTS)
    assert openai_server.hits == 6
    again = CachedBackend(OpenAIBackend(openai_server.base_url, "tiny-chat", sleep=lambda s: None), cache)
    assert again.complete(PROMPTS) == first
    assert openai_server.hits == 6 and again.hits == 6 and again.misses == 0


def test_interrupted_run_keeps_the_replies_it_got(tmp_path):
    cache = tmp_path / "c.jsonl"
    with pytest.raises(RuntimeError, match="interrupted"):
        CachedBackend(Counting(fail_after=4), cache).complete(PROMPTS)
    assert len(load_cache(cache)) == 4
    resumed_inner = Counting()
    resumed = CachedBackend(resumed_inner, cache)
    assert resumed.complete(PROMPTS) == [f"item {i}!" for i in range(6)]
    assert resumed_inner.calls == 2 and resumed.hits == 4


def test_duplicates_are_asked_once_and_parameters_change_the_key(tmp_path):
    inner = Counting()
    cached = CachedBackend(inner, tmp_path / "c.jsonl")
    assert cached.complete([PROMPTS[0], PROMPTS[1], PROMPTS[0]]) == ["item 0!", "item 1!", "item 0!"]
    assert inner.calls == 2
    assert cache_key(Counting().identity(), PROMPTS[0]) != cache_key(Counting(max_tokens=9).identity(), PROMPTS[0])
    other = Counting(max_tokens=9)
    CachedBackend(other, tmp_path / "c.jsonl").complete(PROMPTS[:1])
    assert other.calls == 1


def test_torn_last_line_is_ignored_and_repaired(tmp_path):
    cache = tmp_path / "c.jsonl"
    CachedBackend(Counting(), cache).complete(PROMPTS[:2])
    with cache.open("a") as f:
        f.write('{"key": "abc", "rep')  # a write cut short
    inner = Counting()
    assert CachedBackend(inner, cache).complete(PROMPTS[:3]) == ["item 0!", "item 1!", "item 2!"]
    assert inner.calls == 1
    assert len(load_cache(cache)) == 3
    assert all(json.loads(line) for line in cache.read_text().splitlines()[-1:])


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    cache = tmp_path / "c.jsonl"
    cache.write_text('{"key": "a", "reply": "x"}\nnot json\n{"key": "b", "reply": "y"}\n')
    with pytest.raises(DataError, match=r"c\.jsonl, record line 2: not a JSON object"):
        load_cache(cache)
