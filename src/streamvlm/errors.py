"""Typed errors. A :class:`UserError` is an expected failure caused by input the user gave
(a file, a flag, a config key); the CLI prints its message on one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; its message names the file, record or field at fault."""

    exit_code = 2


class StreamvlmWarning(UserWarning):
    """Something the user asked for works, but not as they may expect (the CLI prints it on one line)."""


class ConfigError(UserError, ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, bad value)."""


class ConversationError(UserError, ValueError):
    """A conversation is malformed (unknown role, negative frame count, reply before any frame)."""


class CheckpointError(UserError):
    """A checkpoint folder is missing files, has unexpected keys or wrong tensor shapes."""


class DataError(UserError, ValueError):
    """An annotation or data file is malformed. Names the file, the record and the field."""

    def __init__(self, message: str, *, file: str | None = None, record: str | int | None = None,
                 field: str | None = None) -> None:
        self.file, self.record, self.field = file, record, field
        where = []
        if file is not None:
            where.append(str(file))
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class VideoError(UserError):
    """A video source cannot be opened or decoded."""
