"""Output files that never lose anything.

* :func:`check_output` refuses, before any work starts, an output path that is a folder, a
  device (``/dev/full``), a FIFO or a socket, one whose folder cannot be created, and one that is
  also an input of the run (the source video, the annotations being converted).
* :class:`AtomicFile` writes into a temporary file beside the target and renames it over the
  target only when the run succeeded (``commit``): a run that fails leaves an existing file as it
  was, and two runs writing one path never interleave (each has its own temporary file; the last
  to finish wins, whole).
* :func:`write_text_atomic` / :func:`write_bytes_atomic`: the same for a file written in one go.
* :func:`run_scope` (opened by the command line around an options check): the files a run reads
  (its ``--config``, its model's files) are inputs of every :func:`check_output` inside it, and
  two outputs of one run must differ.
* :func:`exclusive`: one writer at a time for an output folder (a lock file held with ``flock``,
  released by the kernel when its process dies, so a crashed run leaves no stale lock).
* :func:`os_error` turns a safetensors write error into the ``OSError`` it wraps, naming the file.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .errors import UserError


class OutputError(UserError):
    """An output path cannot be used (names the flag or field and the path)."""


@dataclass
class _Scope:
    inputs: list[Path] = field(default_factory=list)
    outputs: dict[Path, tuple[str, Path]] = field(default_factory=dict)
    """Resolved output path -> (its flag, the path as given)."""


_SCOPE: ContextVar[_Scope | None] = ContextVar("streamvlm_run_scope", default=None)


@contextmanager
def run_scope(inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[None]:
    """Within this block :func:`check_output` also refuses ``inputs`` and whatever
    :func:`note_inputs` adds, and an output that another output of the block already named."""
    token = _SCOPE.set(_Scope([Path(p) for p in inputs if p is not None]))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def note_inputs(paths: Iterable[str | os.PathLike]) -> None:
    """Files the run being checked reads (e.g. a model's files); no-op outside :func:`run_scope`."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.inputs.extend(Path(p) for p in paths)


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
    scope = _SCOPE.get()
    for source in [*inputs, *(scope.inputs if scope is not None else ())]:
        if source is None:
            continue
        source = Path(source)
        if _same_file(path, source) or path.resolve() == source.resolve():
            raise OutputError(f"{name} {path}: is also an input of this run; choose another path")
    existing = path if folder and mode is not None else path.parent  # where files will be created
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{name} {path}: {existing} is not a folder")
    try:  # really create a file there: permission bits say nothing to root, nor of /proc or a read-only mount
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputError(f"{name} {path}: cannot write in folder {existing} ({exc.strerror})") from None
    if scope is not None:
        key = path.resolve()
        other = scope.outputs.setdefault(key, (name, path))
        if other[0] != name:
            raise OutputError(f"{name} {path}: is also {other[0]} {other[1]}; two outputs of a run must differ")
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

    def commit(self, target: str | os.PathLike | None = None) -> Path:
        """Close the temporary file and rename it over ``path`` (or ``target``, e.g. the
        ``.partial`` file of an interrupted run); returns where it went."""
        if self.committed:
            return self.path
        target = self.path if target is None else Path(target)
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if target.exists():
                os.chmod(self.tmp, stat.S_IMODE(target.stat().st_mode))
            else:
                follow_umask(self.tmp)
            os.replace(self.tmp, target)
        except OSError as exc:
            self.discard()
            raise OutputError(f"{self.name} {target}: cannot write ({exc.strerror})") from None
        self.committed = True
        return target

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


STDOUT = "standard output"
"""The name :func:`stdout_error` gives stdout."""


def stdout_error(exc: OSError) -> OSError:
    """``exc``, raised by a write to stdout, as an OSError naming stdout (see ``streamvlm.cli``)."""
    return OSError(exc.errno, exc.strerror, STDOUT)


def partial_of(path: str | os.PathLike) -> Path:
    """Where an interrupted run keeps what it wrote for ``path``: ``PATH.partial``."""
    return Path(f"{os.fspath(path)}.partial")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give a file written through a private temporary file (mode 0600) the mode a new file gets
    (0666 less the umask), as every other output has."""
    os.chmod(path, 0o666 & ~_umask())


_OS_ERROR = re.compile(r"os error (\d+)")


def os_error(exc: Exception, path: str | os.PathLike) -> OSError | None:
    """The ``OSError`` (naming ``path``) that a safetensors ``SafetensorError`` reports in its text
    (``... I/O error: No space left on device (os error 28)``); None when it wraps none."""
    match = _OS_ERROR.search(str(exc))
    if match is None:
        return None
    number = int(match.group(1))
    return OSError(number, os.strerror(number), os.fspath(path))


@contextmanager
def exclusive(folder: str | os.PathLike, *, what: str) -> Iterator[None]:
    """Hold the lock of output ``folder`` (``.NAME.lock`` beside it) for the block; another process
    holding it makes this raise OutputError naming ``what`` it is doing. The lock file is removed
    on release (the inode check on taking it keeps that race-free)."""
    import fcntl

    folder = Path(folder)
    lock = folder.parent / f".{folder.name}.lock"
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(f"{folder}: another process is {what} there (it holds {lock}); "
                                  "wait for it to end or choose another folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:  # its holder removed it just before we locked it
                same = False
            if same:
                break
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot lock ({lock}: {exc.strerror})") from None
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


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
        follow_umask(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"{name} {path}: cannot write ({exc.strerror})") from None
    return path
