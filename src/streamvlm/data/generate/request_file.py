"""JSONL files of live-chat :class:`~streamvlm.data.responder.ResponseRequest` s, one per line.

A line is the request's fields as JSON::

    {"video_uid": "v1", "time": 6.3, "kind": "now", "goal": "make a salad",
     "question": "What am I doing right now?",
     "steps": [{"start": 0.0, "end": 135.9, "text": "Slice tomatoes"}],
     "history": [["user", "What have I done?"], ["assistant", "You have sliced tomatoes."]]}

``goal``, ``question`` (null for a proactive ``update``) and ``history`` are optional; ``kind`` is
one of past, now, next, update.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError, DataError
from ...jsonfiles import iter_jsonl
from ...settings import from_dict
from ..responder import ResponseRequest


def read_requests(path: str | Path) -> list[ResponseRequest]:
    """Every request of a request JSONL; a malformed line is a DataError naming file, line and field."""
    file = str(path)
    requests = []
    for number, obj in iter_jsonl(path):
        record = f"line {number}"
        try:
            request = from_dict(ResponseRequest, obj)
        except ConfigError as exc:
            raise DataError(str(exc), file=file, record=record) from None
        if request.time < 0:
            raise DataError(f"must be >= 0, got {request.time}", file=file, record=record, field="time")
        for i, step in enumerate(request.steps):
            if step.end < step.start:
                raise DataError(f"ends before it starts ({step.end} < {step.start})", file=file, record=record,
                                field=f"steps[{i}].end")
        if any(role not in ("user", "assistant") for role, _ in request.history):
            raise DataError("roles must be user or assistant", file=file, record=record, field="history")
        requests.append(request)
    return requests


def answer_file(requests_jsonl: str | Path, out: str | Path, responder, *, limit: int | None = None) -> int:
    """Answer the requests of ``requests_jsonl`` with ``responder`` into ``out``: each request
    with its ``"reply"``, one JSON object per line, written atomically. Returns how many."""
    import json
    from dataclasses import asdict

    from ...outputs import AtomicFile

    requests = read_requests(requests_jsonl)[:limit]
    replies = responder.respond(requests)
    with AtomicFile(out, name="--out") as file:
        for request, reply in zip(requests, replies):
            file.write(json.dumps({**asdict(request), "reply": reply}, ensure_ascii=False) + "\n")
        file.commit()
    return len(replies)
