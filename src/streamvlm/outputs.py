"""Output files that never lose anything.

* :func:`check_output` refuses, before any work starts, an output path that is a folder, a
  device (``/dev/full``), a FIFO or a socket, one whose folder cannot be created, and one that is
  also an input of the run (the source video, the annotations being converted).
* :class:`AtomicFile` writes into a temporary file beside the target and renames it over the
  target only when the run succeeded (``commit``): a run that fails leaves an existing file as it
  was, and two runs writing one path never interleave (each has its own temporary file; the last
  to finish wins, whole).
* :func:`write_text_atomic` / :func:`write_bytes_atomic`: the same for a file written in one go.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from .errors import UserError


class OutputError(UserError):
    """An output path cannot be used (names the flag or field and the path)."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, *, name: str = "output", inputs: Iterable[str | os.PathLike | None] = (),
                 folder: bool = False) -> Path:
    """Refuse an unusable output path early (see module doc); return it as a Path.

    ``folder``: the output is a folder (it may exist; it must not be a file or an input).
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode if path.exists() or path.is_symlink() else None
    except OSError as exc:
        raise OutputError(f"{name} {path}: cannot use ({exc.strerror})") from None
    if mode is not None:
        if folder:
            if not stat.S_ISDIR(mode):
                raise OutputError(f"{name} {path}: exists and is not a folder")
        elif stat.S_ISDIR(mode):
            raise OutputError(f"{name} {path}: is a folder (expected a file name)")
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
            raise OutputError(f"{name} {path}: is a device, FIFO or socket, not a regular file")
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        if _same_file(path, source) or path.resolve() == source.resolve():
            raise OutputError(f"{name} {path}: is also an input of this run; choose another path")
    parent = path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{name} {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{name} {path}: folder {existing} is not writable")
    return path


class AtomicFile:
    """A text file written beside ``path`` and renamed over it by :meth:`commit`.

    Use as a context manager: leaving the block by an exception discards the temporary file
    (an existing ``path`` is untouched); :meth:`commit` must be called for the file to appear.
    """

    def __init__(self, path: str | os.PathLike, *, name: str = "output", encoding: str = "utf-8") -> None:
        self.path = Path(path)
        self.name = name
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as exc:
            raise OutputError(f"{name} {self.path}: cannot write ({exc.strerror})") from None
        self.tmp = Path(tmp)
        self.file: IO[str] = os.fdopen(fd, "w", encoding=encoding)
        self.committed = False

    def write(self, text: str) -> None:
        try:
            self.file.write(text)
        except OSError as exc:
            self.discard()
            raise OutputError(f"{self.name} {self.path}: cannot write ({exc.strerror})") from None

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as exc:
            self.discard()
            raise OutputError(f"{self.name} {self.path}: cannot write ({exc.strerror})") from None

    def commit(self) -> Path:
        """Close the temporary file and rename it over ``path``."""
        if self.committed:
            return self.path
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if self.path.exists():
                os.chmod(self.tmp, stat.S_IMODE(self.path.stat().st_mode))
            else:
                os.chmod(self.tmp, 0o666 & ~_umask())
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise OutputError(f"{self.name} {self.path}: cannot write ({exc.strerror})") from None
        self.committed = True
        return self.path

    def discard(self) -> None:
        """Drop the temporary file (the target keeps its previous content)."""
        try:
            self.file.close()
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self.discard()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str, *, name: str = "output") -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it."""
    with AtomicFile(path, name=name) as out:
        out.write(text)
        return out.commit()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, name: str = "output") -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name_tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name_tmp)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"{name} {path}: cannot write ({exc.strerror})") from None
    return path
