"""Validating a conversation JSONL file line by line (``streamvlm data check``).

Every problem becomes one line ``FILE:LINE: field 'x': message``; checking goes on after an
error so that one run lists them all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .features import FeatureInfo, feature_path, read_info
from .jsonl import check_video_path, parse_record

FPS_TOLERANCE = 1e-6


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
    infos: dict[str, FeatureInfo | DataError] = {}
    try:
        handle = open(path, "rb")
    except OSError as exc:
        report.errors.append(f"{file}: cannot read: {exc.strerror or exc}")
        return report
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                report.errors.append(f"{_where(file, number, None)}not valid UTF-8 at byte {exc.start}")
                continue
            if not text.strip():
                continue
            try:
                record = parse_record(json.loads(text), file, number)
            except json.JSONDecodeError as exc:
                report.errors.append(f"{_where(file, number, None)}invalid JSON (column {exc.colno}): {exc.msg}")
                continue
            except DataError as exc:
                report.errors.append(_where(file, number, exc.field) + _bare(exc))
                continue
            errors_before = len(report.errors)
            if videos_root is not None:
                try:
                    resolved = check_video_path(record.video, videos_root)
                except ValueError as exc:
                    report.errors.append(f"{_where(file, number, 'video')}{exc}")
                else:
                    if not resolved.is_file():
                        report.errors.append(f"{_where(file, number, 'video')}no such file under {videos_root}: {record.video}")
            if features_dir is not None:
                if record.video not in infos:
                    try:
                        infos[record.video] = read_info(feature_path(features_dir, record.video))
                    except DataError as exc:
                        infos[record.video] = exc
                info = infos[record.video]
                first, stop = record.frame_range()
                if isinstance(info, DataError):
                    report.errors.append(f"{_where(file, number, 'video')}features: {info}")
                elif abs(info.fps - record.fps) > FPS_TOLERANCE:
                    report.errors.append(f"{_where(file, number, 'fps')}{record.fps} but the features are at {info.fps} fps")
                elif stop > info.num_frames:
                    report.errors.append(f"{_where(file, number, 'conversation')}needs frames {first}..{stop - 1} "
                                         f"but the features hold {info.num_frames}")
            if len(report.errors) == errors_before:
                report.conversations += 1
                report.frames += record.num_frames
    return report
