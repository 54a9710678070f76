"""Hostile messages and keys against a real server, while a good client streams beside them: deeply
nested JSON, loosely typed fields, fuzzed sequences, blank and short API keys."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("websockets", reason="the serve extra is not installed")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from streamvlm.errors import UserError  # noqa: E402
from streamvlm.serve.limits import MIN_KEY_CHARS, check_access  # noqa: E402
from streamvlm.serve.protocol import SERVER_MESSAGE, CloseCode, frame_message  # noqa: E402
from tests.serve.test_serve import read_all  # noqa: E402

from .conftest import GoodClient, encode_image, noise  # noqa: E402


def send_and_read(server, *messages) -> tuple[list[dict], int | None]:
    with connect(server.ws_url + "/v1/stream", max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session"
        for m in messages:
            try:
                ws.send(m)
            except ConnectionClosed:  # an `end` earlier in the batch finished the stream first (a loaded machine)
                break
        return read_all(ws, timeout=10)


def test_deeply_nested_json_is_refused_then_closed(hostile_server, tiny_model):
    with GoodClient(hostile_server, tiny_model) as good:
        for text in ("[" * 100_000, '{"a":' * 50_000):
            messages, code = send_and_read(hostile_server, text)
            assert [m["code"] for m in messages if m["type"] == "error"] == ["bad_json"], messages
            assert code == CloseCode.POLICY
    good.check()


def test_fields_are_strict_types(hostile_server, tiny_model):
    refused = {json.dumps({"type": "query", "time": "5", "text": "hi"}): "bad_time",
               json.dumps({"type": "query", "time": True, "text": "hi"}): "bad_time",
               json.dumps({"type": "config", "drop_frames": "no"}): "bad_message",
               json.dumps({"type": "config", "drop_frames": 0}): "bad_message",
               json.dumps({"type": "config", "threshold": "0.5"}): "bad_message",
               json.dumps({"type": "query", "time": 1, "text": 5}): "bad_message"}
    with GoodClient(hostile_server, tiny_model) as good:
        messages, code = send_and_read(hostile_server, *refused, json.dumps({"type": "end"}))
    good.check()
    assert [m["code"] for m in messages if m["type"] == "error"] == list(refused.values())
    assert code == CloseCode.NORMAL
    # a number field takes an integer: time 0 and threshold 1 are fine
    png = encode_image(noise(1, 32, 32, 1)[0], "png")
    messages, code = send_and_read(hostile_server, json.dumps({"type": "query", "time": 0, "text": "Hi?"}),
                                   json.dumps({"type": "config", "threshold": 1}), frame_message(0.0, png),
                                   json.dumps({"type": "end"}))
    assert code == CloseCode.NORMAL and not [m for m in messages if m["type"] == "error"]
    assert [m["text"] for m in messages if m["type"] == "user"] == ["Hi?"]


# ---------------------------------------------------------------------------- fuzzing
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)
client_messages = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["query", "config", "end", "session", 7])},
                          optional={"time": json_values, "text": json_values, "threshold": json_values,
                                    "drop_frames": json_values}).map(json.dumps),
    json_values.map(json.dumps),
    st.integers(1, 3000).map(lambda n: "[" * n),
    st.tuples(st.floats(0, 100), st.binary(max_size=64)).map(lambda tb: frame_message(*tb)),
)


def test_fuzzed_messages_beside_a_good_client(hostile_server, tiny_model):
    """Fuzzed message sequences (nested values, wrong types, deep brackets, junk frames): each
    stream ends with 1000 or 1008 and messages of the schema, while a good client streams."""
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(client_messages, min_size=1, max_size=5))
    def check(batch):
        messages, code = send_and_read(hostile_server, *batch, json.dumps({"type": "end"}))
        assert code in (CloseCode.NORMAL, CloseCode.POLICY), (code, messages[-2:])
        for m in messages:
            SERVER_MESSAGE.validate_python(m)

    with GoodClient(hostile_server, tiny_model, pause=0.2) as good:
        check()
    good.check()


# ---------------------------------------------------------------------------- keys
@pytest.mark.parametrize("key", ["", " ", " " * 40, "k" * (MIN_KEY_CHARS - 1), "a key with spaces 123",
                                 "tab\tseparated-key-123", "é" * MIN_KEY_CHARS])
def test_blank_short_and_spaced_keys_refused_at_start(key, cli, monkeypatch):
    with pytest.raises(UserError, match=f"at least {MIN_KEY_CHARS} characters"):
        check_access("0.0.0.0", key)
    monkeypatch.setenv("SERVE_HOSTILE_KEY", key)
    result = cli("serve", "--host", "0.0.0.0", "--api-key-env", "SERVE_HOSTILE_KEY", "--print-config")
    assert result.code == 2 and f"at least {MIN_KEY_CHARS} characters" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_key_rule_is_the_apps_too(tiny_model):
    from streamvlm.serve.app import create_app

    with pytest.raises(UserError, match=f"at least {MIN_KEY_CHARS}"):
        create_app(tiny_model, api_key=" ")
    check_access("127.0.0.1", None)  # loopback needs no key
    check_access("0.0.0.0", "k" * MIN_KEY_CHARS)
    with pytest.raises(UserError, match="needs an API key"):
        check_access("0.0.0.0", None)


def test_blank_key_never_authenticates(keyed_server):
    for key in ("%20", "", "+"):
        with connect(keyed_server.ws_url + f"/v1/stream?key={key}") as ws:
            messages, code = read_all(ws)
        assert code == CloseCode.UNAUTHORIZED, key
