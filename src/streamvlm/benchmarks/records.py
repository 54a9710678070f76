"""The JSON-lines file of a run: a header line with the run's settings, then one line per probe and
pass, appended (and flushed) the moment the probe is scored.

A re-run with the same settings resumes: the probes already in the file are skipped. A line cut
short by a crash is dropped; an interrupted run (Ctrl-C) keeps every line it finished. A file
holding a run with other settings is refused, never overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from ..errors import UserError
from ..jsonfiles import loads
from ..outputs import OutputError


class RecordFile:
    """Append-only records of one run (see the module doc)."""

    def __init__(self, path: str | Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.header = header
        self.records: list[dict[str, Any]] = []
        good = 0
        if self.path.exists():
            good = self._read_existing()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle: IO[bytes] = open(self.path, "r+b" if self.path.exists() else "wb")  # noqa: SIM115
            self.handle.truncate(good)
            self.handle.seek(good)
            if good == 0:
                self._write({"header": header})
        except OSError as exc:
            raise OutputError(f"--out {self.path}: cannot write ({exc.strerror})") from None

    def _read_existing(self) -> int:
        """Read the records of an earlier run; return the byte length of its complete lines."""
        raw = self.path.read_bytes()
        good, lines = 0, raw.split(b"\n")
        for number, line in enumerate(lines[:-1], start=1):  # the last piece has no newline: cut short
            try:
                value = loads(line, file=str(self.path), record=f"line {number}")
            except UserError:
                if number == len(lines) - 1:
                    break  # a last line cut short: written again
                raise
            if number == 1:
                if not isinstance(value, dict) or "header" not in value:
                    raise UserError(f"--out {self.path}: not a run of `streamvlm benchmark` (no header line); "
                                    "name another file")
                if value["header"] != self.header:
                    changed = sorted(k for k in set(value["header"]) | set(self.header)
                                     if value["header"].get(k) != self.header.get(k))
                    raise UserError(f"--out {self.path}: holds a run with other settings ({', '.join(changed)}); "
                                    "name another file to keep it")
            else:
                self.records.append(value)
            good += len(line) + 1
        return good

    def done(self) -> set[tuple[str, str]]:
        """``(pass, probe key)`` of every probe already scored."""
        return {(r["pass"], r["key"]) for r in self.records}

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._write(record)

    def _write(self, value: dict[str, Any]) -> None:
        try:
            self.handle.write((json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8"))
            self.handle.flush()
        except OSError as exc:
            raise OutputError(f"--out {self.path}: cannot write ({exc.strerror})") from None

    def close(self) -> None:
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
        except OSError:
            pass
        self.handle.close()


def read_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the records of a run's file (for tables and figures)."""
    from ..jsonfiles import iter_jsonl

    header, records = None, []
    for number, value in iter_jsonl(path):
        if number == 1:
            if not isinstance(value, dict) or "header" not in value:
                raise UserError(f"{path}: not a run of `streamvlm benchmark` (no header line)")
            header = value["header"]
        else:
            records.append(value)
    if header is None:
        raise UserError(f"{path}: empty file")
    return header, records
