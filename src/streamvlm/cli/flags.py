"""Command-line flags generated from a settings dataclass (see :mod:`streamvlm.settings`).

A command declares its options as one ``@settings`` dataclass; :func:`build_parser` turns every
field into a flag (``max_new_tokens`` -> ``--max-new-tokens``) whose help is the field's docstring
and whose default is the field's own, and :func:`parse` validates what was typed with the same
dataclass, so a bad value fails with one line naming the flag (``--fps: must be a finite
number``). Fields whose type is another settings dataclass (e.g. the model source, the
generation settings) are flattened into the command's flags, in a group of their own.

Per-field command-line details go in ``Annotated[..., Arg(...)]`` (:class:`streamvlm.settings.Arg`):
positional arguments, ``nargs``, a metavar. Booleans become switches: ``--flag`` when the default is
false, ``--no-flag`` when it is true. List fields take repeated flags (``--query A --query B``) or,
positional, several values. Every command also takes ``--config FILE`` (a JSON object of option
values, positional arguments excepted; flags win) and ``--print-config`` (print the resolved options
as JSON and exit). A required flag may come from either; a missing one is reported by the validation
("--out: is required").
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING
from typing import Annotated, Any, Literal, TypeVar

from ..errors import UserError
from ..outputs import run_scope
from ..settings import Arg, dumps, from_dict, merge, read_config_dict, unwrap_type

T = TypeVar("T")


class UsageError(UserError):
    """The command line itself is malformed (unknown flag, missing argument)."""


@dataclasses.dataclass(frozen=True)
class Flag:
    """One generated argument: where its value goes in the options (``path``) and its name."""

    path: tuple[str, ...]
    name: str
    dest: str


class _Parser(argparse.ArgumentParser):
    """argparse without its two-line usage errors: a UsageError the CLI prints on one line."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _arg(tp: Any) -> Arg:
    if typing.get_origin(tp) is Annotated:
        for meta in typing.get_args(tp)[1:]:
            if isinstance(meta, Arg):
                return meta
    return Arg()


def _is_settings(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _metavar(name: str, tp: Any, arg: Arg) -> str:
    if arg.metavar:
        return arg.metavar
    if typing.get_origin(tp) is Literal:
        return "{" + ",".join(map(str, typing.get_args(tp))) + "}"
    return name.upper()


def _default(field: dataclasses.Field) -> Any:
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return MISSING


def _help(doc: str | None, default: Any) -> str:
    text = " ".join((doc or "").split())
    shown = not (default is MISSING or default is None or default is False or default is True
                 or default == [] or default == () or default == "")
    if shown and len(repr(default)) < 40:
        text += f" [default: {default}]"
    return text.replace("%", "%%")


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> docstring of a settings dataclass."""
    fields = getattr(cls, "__pydantic_fields__", {})
    return {name: info.description or "" for name, info in fields.items()}


def _add_fields(parser: argparse.ArgumentParser, group: Any, cls: type, prefix: tuple[str, ...],
                flags: list[Flag]) -> None:
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        tp = hints[field.name]
        arg, base = _arg(tp), unwrap_type(tp)
        path = (*prefix, field.name)
        if _is_settings(base):
            title = (base.__doc__ or base.__name__).strip().splitlines()[0].replace("``", "").rstrip(".")
            _add_fields(parser, parser.add_argument_group(title), base, path, flags)
            continue
        default = _default(field)
        dest = "__".join(path)
        doc = _help(docs.get(field.name), default)
        origin = typing.get_origin(base)
        is_list = origin in (list, tuple)
        if arg.positional:
            name = arg.metavar or field.name.upper()
            nargs = arg.nargs if is_list else (None if default is MISSING else "?")
            if is_list and nargs is None:
                nargs = "+" if default is MISSING else "*"
            group.add_argument(dest, metavar=name, nargs=nargs, help=doc,
                               default=argparse.SUPPRESS if default is not MISSING else None)
            flags.append(Flag(path, name, dest))
            continue
        name = arg.flag or "--" + field.name.replace("_", "-")
        arg = dataclasses.replace(arg, metavar=arg.metavar or (name[2:].replace("-", "_").upper()
                                                                if arg.flag else None))
        if base is bool:
            if default is True:
                name = "--no-" + name[2:]
            group.add_argument(name, dest=dest, action="store_false" if default is True else "store_true",
                               default=argparse.SUPPRESS, help=doc)
        elif is_list:
            item = (typing.get_args(base) or (str,))[0]
            nargs = arg.nargs
            shape = arg if arg.metavar else _arg(item)
            group.add_argument(name, dest=dest, action="extend" if nargs else "append", nargs=nargs,
                               metavar=_metavar(field.name, unwrap_type(item), shape), default=argparse.SUPPRESS,
                               help=doc + (" (repeatable)" if not nargs else ""))
        else:
            group.add_argument(name, dest=dest, metavar=_metavar(field.name, base, arg), default=argparse.SUPPRESS,
                               help=doc + (" (required)" if default is MISSING else ""))
        flags.append(Flag(path, name, dest))


def build_parser(prog: str, description: str, cls: type, *, config_file: bool = True
                 ) -> tuple[argparse.ArgumentParser, list[Flag]]:
    """The argparse parser of a command whose options are ``cls``, and its flags."""
    parser = _Parser(prog=prog, description=description, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    flags: list[Flag] = []
    _add_fields(parser, parser, cls, (), flags)
    if config_file:
        parser.add_argument("--config", dest="__config", metavar="FILE", default=None,
                            help="read option values from this JSON file (flags given here win)")
    parser.add_argument("--print-config", dest="__print_config", action="store_true",
                        help="print the resolved options as JSON and exit")
    return parser, flags


def _parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """``argv`` parsed with positionals allowed after flags; ``--`` ends the flags (``narrate --
    -clip.mp4``). argparse's intermixed parsing drops the ``--`` in its first pass and then reads
    ``-clip.mp4`` as a flag, so the arguments after it stand in as placeholders that cannot look
    like flags (a NUL byte, which no command-line argument holds) and are put back afterwards."""
    if "--" not in argv:
        return vars(parser.parse_intermixed_args(argv))  # positionals after flags too
    end = argv.index("--")
    rest = argv[end + 1:]
    stand_ins = {f"\0{i}\0": arg for i, arg in enumerate(rest)}
    try:
        namespace = vars(parser.parse_intermixed_args([*argv[:end], "--", *stand_ins]))
    except UsageError as exc:
        message = str(exc)
        for stand_in, arg in stand_ins.items():
            message = message.replace(stand_in, arg)
        raise UsageError(message) from None

    def restore(value: Any) -> Any:
        if isinstance(value, list):
            return [restore(v) for v in value]
        return stand_ins.get(value, value) if isinstance(value, str) else value

    return {key: restore(value) for key, value in namespace.items()}


def parse(cls: type[T], argv: Sequence[str], *, prog: str, description: str = "",
          config_file: bool = True, print_config: Callable[[T], None] | None = None) -> T | None:
    """Parse and validate ``argv`` into ``cls``; None when ``--print-config`` printed them (with
    ``print_config(options)`` when given, else as JSON)."""
    parser, flags = build_parser(prog, description, cls, config_file=config_file)
    namespace = _parse_args(parser, list(argv))
    data: dict[str, Any] = {}
    for flag in flags:
        if flag.dest in namespace and namespace[flag.dest] is not None:
            node = data
            for part in flag.path[:-1]:
                node = node.setdefault(part, {})
            node[flag.path[-1]] = namespace[flag.dest]
    source = None
    names = {".".join(f.path): f.name for f in flags}
    with run_scope():  # the config files read are inputs: no output of the run may replace one
        if config_file and namespace.get("__config"):
            file_data, source = read_config_dict(namespace["__config"])
            data = merge(file_data, data)
        options = from_dict(cls, data, strict=False, names=names, source=source)
    if namespace.get("__print_config"):
        if print_config is not None:
            print_config(options)
        else:
            sys.stdout.write(dumps(options))
        return None
    return options
