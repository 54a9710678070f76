"""The one configuration system: typed dataclasses validated by pydantic, for config files, the
command line and library calls alike.

Every config and every command's options is a dataclass declared with :func:`settings` (a
pydantic dataclass). A field's type says what is valid, with ranges and finiteness declared
beside it (``Annotated[float, Field(gt=0)]`` or the aliases below), and the docstring under the
field is its documentation: ``--help`` prints it. Values are checked once, when the object is
built, whoever builds it:

* a JSON config file: :func:`load_file` (``base`` inheritance, ``key=value`` overrides), strict
  (``"1e-4"`` is not a number, ``1`` is not ``true``);
* the command line: :mod:`streamvlm.cli.flags` builds the flags from the same fields and
  validates what was typed with :func:`from_dict` (text converted to the field's type);
* Python code: the dataclass constructor itself.

Failures raise :class:`~streamvlm.errors.ConfigError` with one line naming the file and the
field path (``tiny.json: optim.lr: should be greater than 0, got -1``).

Why pydantic: it validates plain dataclasses (``dataclasses.fields``/``asdict`` still work),
reads the attribute docstrings we already write, rejects NaN and infinities, checks paths
(``FilePath``, ``DirectoryPath``), exports JSON schemas, and imports in about 60 ms, so the CLI
stays fast. The command line itself is the standard library's argparse, generated from the fields.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from .errors import ConfigError
from .jsonfiles import loads, read_json
from .outputs import note_inputs

T = TypeVar("T")

SETTINGS_CONFIG = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False,
                             arbitrary_types_allowed=False)

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
"""A probability or share in [0, 1]."""
Fps = Annotated[float, Field(gt=0, le=120)]
"""Frames per second of a stream (at most 120)."""
def _device(name: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ValueError(f"should be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return name


Device = Annotated[str, AfterValidator(_device)]
"""A torch device: ``auto`` (cuda if available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""


@dataclasses.dataclass(frozen=True)
class Arg:
    """How a settings field appears on the command line (put it in ``Annotated[...]``)."""

    positional: bool = False
    metavar: str | None = None
    nargs: str | None = None
    """For positional list fields: ``"+"`` (one or more) or ``"*"``."""
    flag: str | None = None
    """The flag name when it is not derived from the field name (``--output`` for ``output``)."""


def settings(cls: type[T] | None = None, **kwargs: Any):
    """Declare a settings dataclass (``@settings`` or ``@settings(frozen=True)``)."""
    def wrap(c: type[T]) -> type[T]:
        return _pydantic_dataclass(c, config=SETTINGS_CONFIG, **kwargs)

    return wrap if cls is None else wrap(cls)


_ADAPTERS: dict[Any, TypeAdapter] = {}


def _adapter(cls: Any) -> TypeAdapter:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


# ---------------------------------------------------------------------------- errors
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "unexpected_keyword_argument": "unknown key",
    "finite_number": "must be a finite number",
    "path_not_file": "no such file",
    "path_not_directory": "no such folder",
}


def unwrap_type(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X`` (the first non-None member of a union)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def field_path(cls: Any, loc: Sequence[Any]) -> str:
    """The dotted field path of a pydantic error location (union member tags dropped)."""
    path, tp = "", cls
    for part in loc:
        tp = unwrap_type(tp)
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp, include_extras=True)
            if part in hints:
                path, tp = (f"{path}.{part}" if path else str(part)), hints[part]
            continue
        origin = typing.get_origin(tp)
        if origin in (list, tuple) and isinstance(part, int):
            path, tp = f"{path}[{part}]", (typing.get_args(tp) or (Any,))[0]
        elif origin is dict and isinstance(part, str):
            path, tp = f"{path}.{part}", Any
        elif tp is Any and isinstance(part, (str, int)):
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(cls: Any, error: dict[str, Any], names: dict[str, str] | None) -> tuple[str, str]:
    """``(where, message)`` of one pydantic error; ``names`` maps field paths to flag names."""
    where = field_path(cls, error["loc"])
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument") and error["loc"]:
        where = f"{where}.{error['loc'][-1]}" if where else str(error["loc"][-1])
    if names is not None:
        base = re.sub(r"\[\d+\]$", "", where)
        where = names.get(where, names.get(base, where))
    kind = error["type"]
    message = _MESSAGES.get(kind)
    if message is None:
        message = error["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            if message.startswith(prefix):
                message = message[len(prefix):]
        if message.startswith("Input should be "):
            message = "should be " + message[len("Input should be "):]
        elif message[:1].isupper() and not message[1:2].isupper():
            message = message[0].lower() + message[1:]
    if kind in ("path_not_file", "path_not_directory", "path_type") and "input" in error:
        return f"{where} {error['input']}" if where else str(error["input"]), message
    if kind not in ("missing", "extra_forbidden", "unexpected_keyword_argument", "value_error", "assertion_error",
                    "json_invalid") \
            and "input" in error:
        shown = error["input"]
        text = shown if isinstance(shown, str) else json.dumps(shown, default=str)
        message += f", got {text[:60]!r}" if isinstance(shown, str) else f", got {text[:60]}"
    return where, message


def format_error(cls: Any, exc: ValidationError, *, source: str | None = None,
                 names: dict[str, str] | None = None) -> str:
    """One line for the first error of ``exc`` raised validating ``cls`` (``SOURCE: FIELD: MESSAGE``)."""
    where, message = _describe(cls, exc.errors()[0], names)
    more = len(exc.errors()) - 1
    line = f"{where}: {message}" if where else message
    if more:
        line += f" (and {more} more error{'s' if more > 1 else ''})"
    return f"{source}: {line}" if source else line


# ---------------------------------------------------------------------------- building
def from_dict(cls: type[T], data: Any, *, source: str | None = None, strict: bool = True,
              names: dict[str, str] | None = None) -> T:
    """Build ``cls`` from JSON-like ``data``.

    ``strict``: JSON semantics, as in config files (numbers must be numbers, booleans booleans).
    Otherwise text is converted to the field's type, as typed on the command line. Errors raise
    a ConfigError naming ``source`` and the field (through ``names``, e.g. ``--fps``).
    """
    try:
        if strict:
            return _adapter(cls).validate_json(json.dumps(data, allow_nan=True), strict=True)
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_error(cls, exc, source=source, names=names)) from None


def to_dict(obj: Any) -> Any:
    """A settings object (possibly nested) as plain JSON values (paths as strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _adapter(type(obj)).dump_python(obj, mode="json")
    return json.loads(json.dumps(obj, default=str))


def dumps(obj: Any) -> str:
    """``obj`` as indented JSON text (what ``--print-config`` shows and checkpoints keep)."""
    return json.dumps(to_dict(obj), indent=2, ensure_ascii=False) + "\n"


def save_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file beside it, then a rename)."""
    from .outputs import write_text_atomic

    write_text_atomic(path, dumps(obj))


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON schema of a settings class (field docs included)."""
    return _adapter(cls).json_schema()


# ---------------------------------------------------------------------------- files and overrides
def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (``1e-4``, ``true``, ``null``, ``[1,2]``), else the text."""
    try:
        return loads(text, file="override", error=ConfigError)
    except ConfigError:
        return text


def overrides_to_dict(overrides: Iterable[str]) -> list[tuple[list[str], Any]]:
    """``["optim.lr=1e-4", ...]`` -> ``[(["optim", "lr"], 0.0001), ...]``."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.split(".")
        if not sep or not all(p.isidentifier() for p in parts):
            raise ConfigError(f"override {item!r}: expected key=value with a dotted key (e.g. optim.lr=1e-4)")
        out.append((parts, parse_value(value)))
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge: objects merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``data`` with ``key=value`` overrides set (missing or null parents become objects)."""
    data = json.loads(json.dumps(data))
    for parts, value in overrides_to_dict(overrides):
        node = data
        for i, part in enumerate(parts[:-1]):
            if node.get(part) is None:
                node[part] = {}
            elif not isinstance(node[part], dict):
                raise ConfigError(f"override {'.'.join(parts)}: '{'.'.join(parts[: i + 1])}' is not an object")
            node = node[part]
        node[parts[-1]] = value
    return data


def shipped_configs(folder: str = "configs") -> list[str]:
    """Names of the JSON configs shipped in ``streamvlm/<folder>`` (without ``.json``)."""
    root = resources.files("streamvlm") / folder
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def _resolve(name_or_path: str | os.PathLike, folder: str) -> tuple[Any, str]:
    """The file to read for a config name or path, and how errors name it."""
    path = Path(name_or_path)
    if path.is_file():
        return path, str(path)
    shipped = resources.files("streamvlm") / folder / f"{name_or_path}.json"
    if shipped.is_file():
        return shipped, f"{name_or_path}.json"
    if path.exists():
        raise ConfigError(f"{path}: not a regular file")
    raise ConfigError(f"{name_or_path}: no such config file, and not a shipped config "
                      f"(shipped: {', '.join(shipped_configs(folder))})")


def read_config_dict(name_or_path: str | os.PathLike, *, folder: str = "configs",
                     _chain: Sequence[str] = ()) -> tuple[dict[str, Any], str]:
    """A config file as a dict, its ``base`` (another config it overrides) merged in first. Every
    file of the chain is an input of the run (:func:`~streamvlm.outputs.note_inputs`): no output
    of it may replace one."""
    file, source = _resolve(name_or_path, folder)
    if isinstance(file, Path):
        note_inputs([file])
    key = str(Path(file).resolve()) if isinstance(file, Path) else source
    if key in _chain:
        raise ConfigError(f"{source}: 'base' chain loops back to itself")
    data = read_json(file, error=ConfigError) if isinstance(file, Path) else \
        loads(file.read_bytes(), file=source, error=ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{source}: base: should name a config file or a shipped config")
        if len(_chain) >= 16:
            raise ConfigError(f"{source}: 'base' chain is deeper than 16 files")
        parent, _ = read_config_dict(base, folder=folder, _chain=(*_chain, key))
        data = merge(parent, data)
    return data, source


def load_json(cls: type[T], path: str | os.PathLike) -> T:
    """Read one JSON file (no ``base``, no shipped names) strictly as ``cls``; errors name the file."""
    return from_dict(cls, read_json(path, error=ConfigError), source=str(path))


def load_file(cls: type[T], name_or_path: str | os.PathLike | None, overrides: Iterable[str] = (), *,
              folder: str = "configs") -> T:
    """Read a config file (or a config shipped in ``streamvlm/<folder>``), apply ``key=value``
    overrides and validate it strictly as ``cls``."""
    data, source = ({}, "defaults") if name_or_path is None else read_config_dict(name_or_path, folder=folder)
    overrides = list(overrides)
    data = apply(data, overrides)
    return from_dict(cls, data, source=source if not overrides else f"{source} (with overrides)")
