"""Reading evaluation JSONL files and their frame features.

Each line is a conversation record (``docs/data-format.md``); a line with a ``task`` field is a
downstream question (its conversation ends with the question) with ``answer`` and, for ``lta``,
``future_verbs`` / ``future_nouns``. Fields this reader does not know are ignored. Frames come
from ``FEATURES_DIR/<video>.safetensors``: frame ``i`` of a conversation is feature frame
``round(start * fps) + i``. Built on :mod:`streamvlm.data.jsonl` and :mod:`streamvlm.data.features`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.features import FeatureStore
from ..data.jsonl import FIELDS, ConversationRecord, parse_record
from ..errors import DataError
from ..jsonfiles import iter_jsonl
from .downstream import TASKS, DownstreamSample
from .stream_eval import EvalSample


@dataclass
class EvalRecord:
    """One line: the conversation record and, for a downstream question, its gold."""

    record: ConversationRecord
    task: str | None = None
    answer: str = ""
    future_verbs: list[str] = field(default_factory=list)
    future_nouns: list[str] = field(default_factory=list)


def _string_list(obj: dict[str, Any], key: str, fail) -> list[str]:
    value = obj.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        fail(f"must be a non-empty list of strings, got {value!r}", key)
    return value


def read_eval_jsonl(path: str | Path) -> list[EvalRecord]:
    """Validate every line; a malformed one is a DataError naming file, line and field."""
    file = str(path)
    out = []
    for number, obj in iter_jsonl(path):
        def fail(message: str, fld: str | None = None, line: str = f"line {number}") -> None:
            raise DataError(message, file=file, record=line, field=fld)

        if not isinstance(obj, dict):
            fail(f"expected an object, got {type(obj).__name__}")
        record = parse_record({k: v for k, v in obj.items() if k in FIELDS}, file, number)
        item = EvalRecord(record)
        if "task" in obj:
            item.task = obj["task"]
            if item.task not in TASKS:
                fail(f"unknown task {item.task!r} (expected one of {', '.join(TASKS)})", "task")
            if item.task == "lta":
                item.future_verbs = _string_list(obj, "future_verbs", fail)
                item.future_nouns = _string_list(obj, "future_nouns", fail)
                if len(item.future_verbs) != len(item.future_nouns):
                    fail("future_verbs and future_nouns differ in length", "future_nouns")
            else:
                if not isinstance(obj.get("answer"), str) or not obj["answer"].strip():
                    fail("must be a non-empty string", "answer")
                item.answer = obj["answer"]
            if record.num_frames == 0:
                fail("a downstream question needs frames before it", "conversation")
        out.append(item)
    return out


class FeatureReader(FeatureStore):
    """A :class:`~streamvlm.data.features.FeatureStore` that makes evaluation samples."""

    def stream_sample(self, item: EvalRecord) -> EvalSample:
        r = item.record
        return EvalSample(r.conversation, self.frames(r), r.fps, r.id)

    def downstream_sample(self, item: EvalRecord) -> DownstreamSample:
        r = item.record
        return DownstreamSample(item.task, r.conversation, self.frames(r), item.answer, item.future_verbs,
                                item.future_nouns, r.id)
