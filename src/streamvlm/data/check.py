"""Validating a conversation JSONL file line by line (``streamvlm data check``).

Every problem becomes one line ``FILE:LINE: field 'x': message``; checking goes on after an
error so that one run lists them all.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..jsonfiles import loads
from .features import FeatureStore
from .jsonl import check_video_path, parse_record


@dataclass
class CheckReport:
    conversations: int = 0
    frames: int = 0
    errors: list[str] = field(default_factory=list)


def _where(file: str, line: int, fld: str | None) -> str:
    return f"{file}:{line}: " + (f"field '{fld}': " if fld else "")


def _bare(exc: DataError) -> str:
    """The message of a DataError without its ``file, record, field:`` prefix."""
    parts = [str(p) for p in (exc.file, f"record {exc.record}" if exc.record is not None else None,
                              f"field '{exc.field}'" if exc.field else None) if p is not None]
    text = str(exc)
    prefix = ", ".join(parts) + ": "
    return text[len(prefix):] if parts and text.startswith(prefix) else text


def check_file(path: str | Path, videos_root: str | Path | None = None,
               features_dir: str | Path | None = None) -> CheckReport:
    """Check every line of ``path`` (see ``docs/data-format.md``)."""
    file = str(path)
    report = CheckReport()
    store = FeatureStore(features_dir) if features_dir is not None else None
    with ExitStack() as stack:
        try:
            handle = stack.enter_context(open(path, "rb"))
        except OSError as exc:  # only the open: an unreadable file is reported, not raised
            report.errors.append(f"{file}: cannot read: {exc.strerror or exc}")
            return report
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = parse_record(loads(raw, file=file, record=f"line {number}"), file, number)
            except DataError as exc:
                report.errors.append(_where(file, number, exc.field) + _bare(exc))
                continue
            errors_before = len(report.errors)
            if videos_root is not None:
                try:
                    resolved = check_video_path(record.video, videos_root)
                    if not resolved.is_file():
                        report.errors.append(f"{_where(file, number, 'video')}"
                                             f"no such file under {videos_root}: {record.video}")
                except ValueError as exc:
                    report.errors.append(f"{_where(file, number, 'video')}{exc}")
                except OSError as exc:  # a name too long, permission denied: this record's problem
                    report.errors.append(f"{_where(file, number, 'video')}cannot access under {videos_root}: "
                                         f"{exc.strerror or exc}")
            if store is not None:
                try:
                    store.frames(record)  # eval's and train's own check, the values included
                except DataError as exc:
                    field = {"num_frames": "conversation"}.get(exc.field or "", exc.field or "video")
                    report.errors.append(f"{_where(file, number, field)}features: {_bare(exc)}")
                except OSError as exc:
                    report.errors.append(f"{_where(file, number, 'video')}features: cannot access its file: "
                                         f"{exc.strerror or exc}")
            if len(report.errors) == errors_before:
                report.conversations += 1
                report.frames += record.num_frames
    return report
