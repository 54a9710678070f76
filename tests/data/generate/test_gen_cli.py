"""``streamvlm data refine`` and ``streamvlm data livechat`` end to end (rule and HTTP backends)."""

from __future__ import annotations

import json

import pytest

from streamvlm.cli import main

NARRATIONS = {
    "vid1": {
        "status": "complete",
        "narration_pass_1": {"narrations": [
            {"timestamp_sec": 1.2, "timestamp_frame": 36, "narration_text": "#C C picks up the knife",
             "annotation_uid": "u1"},
            {"timestamp_sec": 3.4, "timestamp_frame": 102, "narration_text": "#C C washes the plate",
             "annotation_uid": "u2"},
        ], "summaries": [{"start_sec": 0.0, "end_sec": 5.0, "summary_text": "C cooks"}]},
        "narration_pass_2": {"narrations": [
            {"timestamp_sec": 2.0, "timestamp_frame": 60, "narration_text": "#C C carries a box",
             "annotation_uid": "u3"},
        ]},
    },
}
REQUEST = {"video_uid": "v", "time": 6.3, "kind": "now", "goal": "make a salad", "question": "What am I doing?",
           "steps": [{"start": 0.0, "end": 135.9, "text": "Slice tomatoes"}]}


@pytest.fixture
def narration_file(tmp_path):
    path = tmp_path / "narration.json"
    path.write_text(json.dumps(NARRATIONS))
    return path


def test_refine_rule_backend(narration_file, tmp_path):
    out = tmp_path / "refined.json"
    assert main(["data", "refine", str(narration_file), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"u1": "You pick up the knife.", "u2": "You wash the plate.",
                                           "u3": "You carry a box."}


def test_refine_http_backend_with_cache_and_limit(openai_server, narration_file, tmp_path):
    openai_server.reply = lambda body: {"#C C picks up the knife": "You grab the knife.",
                                        "#C C washes the plate": "#C C washes"}[body["messages"][-1]["content"]]
    out, cache = tmp_path / "refined.json", tmp_path / "cache.jsonl"
    argv = ["data", "refine", str(narration_file), "--out", str(out), "--backend", "openai", "--model", "tiny-chat",
            "--base-url", openai_server.base_url, "--cache", str(cache), "--limit", "2"]
    assert main(argv) == 0
    # an unusable reply (still tagged) falls back to the rule-based rewrite
    assert json.loads(out.read_text()) == {"u1": "You grab the knife.", "u2": "You wash the plate."}
    assert openai_server.hits == 2 and openai_server.bodies[0]["model"] == "tiny-chat"
    assert main(argv) == 0
    assert openai_server.hits == 2  # everything came from the cache


def test_refine_transformers_backend(model_dir, narration_file, tmp_path):
    out, cache = tmp_path / "refined.json", tmp_path / "cache.jsonl"
    argv = ["data", "refine", str(narration_file), "--out", str(out), "--backend", "transformers", "--model",
            str(model_dir), "--device", "cpu", "--dtype", "float32", "--max-new-tokens", "4", "--cache", str(cache)]
    assert main(argv) == 0
    refined = json.loads(out.read_text())
    assert sorted(refined) == ["u1", "u2", "u3"] and all(t.strip() for t in refined.values())
    assert len(cache.read_text().splitlines()) == 3
    assert main(argv) == 0 and json.loads(out.read_text()) == refined


def test_refine_http_backend_missing_key(openai_server, narration_file, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY")
    code = main(["data", "refine", str(narration_file), "--out", str(tmp_path / "o.json"), "--backend", "openai",
                 "--model", "m", "--base-url", openai_server.base_url])
    assert code == 2 and "environment variable OPENAI_API_KEY is not set" in capsys.readouterr().err
    assert openai_server.hits == 0


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["vid1"]["narration_pass_1"]["narrations"][1].update(narration_text=7),
     "vid1/narration_pass_1/narrations[1], field 'narration_text'"),
    (lambda d: d["vid1"]["narration_pass_2"]["narrations"][0].update(timestamp_sec=-1),
     "vid1/narration_pass_2/narrations[0], field 'timestamp_sec'"),
    (lambda d: d["vid1"]["narration_pass_2"]["narrations"][0].update(annotation_uid="u1"),
     "vid1/narration_pass_2, field 'annotation_uid'"),
])
def test_refine_bad_narration_file_names_file_record_field(tmp_path, capsys, mutate, expected):
    data = json.loads(json.dumps(NARRATIONS))
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert main(["data", "refine", str(path), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()


def test_refine_truncated_json(tmp_path, capsys):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(NARRATIONS)[:50])
    assert main(["data", "refine", str(path), "--out", str(tmp_path / "o.json")]) == 2
    assert "cut.json" in capsys.readouterr().err


def test_livechat_http_backend(openai_server, tmp_path):
    openai_server.reply = lambda body: "You are slicing tomatoes."
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(REQUEST) + "\n" + json.dumps({**REQUEST, "time": 7.0}) + "\n")
    out = tmp_path / "replies.jsonl"
    assert main(["data", "livechat", str(requests), "--out", str(out), "--backend", "openai", "--model", "tiny-chat",
                 "--base-url", openai_server.base_url]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["reply"] for r in rows] == ["You are slicing tomatoes."] * 2
    assert rows[1]["time"] == 7.0 and rows[0]["steps"] == REQUEST["steps"]
    assert "Slice tomatoes" in openai_server.bodies[0]["messages"][1]["content"]


def test_livechat_bad_request_line(tmp_path, capsys):
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(REQUEST) + "\n" + json.dumps({**REQUEST, "kind": "later"}) + "\n")
    assert main(["data", "livechat", str(requests), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "requests.jsonl, record line 2" in err and "kind" in err
