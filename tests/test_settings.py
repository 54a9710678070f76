"""The configuration system: one validation for files (strict JSON types), the command line (text
converted) and code; errors on one line naming the field, or the flag it came from."""

from __future__ import annotations

import json
from dataclasses import field
from typing import Annotated

import pytest
from pydantic import Field

from streamvlm.cli.flags import parse
from streamvlm.errors import ConfigError
from streamvlm.jsonfiles import MAX_DEPTH, iter_jsonl, loads
from streamvlm.settings import Arg, Probability, from_dict, json_schema, settings, to_dict


@settings
class Inner:
    """An inner group."""

    rate: Annotated[float, Field(gt=0)] = 1.0
    """A rate."""
    names: list[str] = field(default_factory=list)
    """Some names."""


@settings
class Outer:
    """Options of a test command."""

    path: Annotated[str, Arg(positional=True, metavar="PATH")]
    """A path."""
    share: Probability = 0.5
    """A share."""
    inner: Inner = field(default_factory=Inner)
    """The inner group."""
    flag: bool = False
    """A switch."""

    def __post_init__(self) -> None:
        if self.path == "forbidden":
            raise ValueError("path: may not be 'forbidden'")


def test_files_are_strict_and_the_command_line_converts_text():
    assert from_dict(Outer, {"path": "p", "share": 0.25}).share == 0.25
    with pytest.raises(ConfigError, match="^f.json: share: should be a valid number, got '0.25'$"):
        from_dict(Outer, {"path": "p", "share": "0.25"}, source="f.json")
    assert from_dict(Outer, {"path": "p", "share": "0.25"}, strict=False).share == 0.25
    with pytest.raises(ConfigError, match="flag: should be a valid boolean, got 1"):
        from_dict(Outer, {"path": "p", "flag": 1})


def test_errors_name_nested_fields_list_items_and_flags():
    with pytest.raises(ConfigError, match=r"^inner\.rate: should be greater than 0, got 0$"):
        from_dict(Outer, {"path": "p", "inner": {"rate": 0}})
    with pytest.raises(ConfigError, match=r"^inner\.names\[1\]: should be a valid string, got 3$"):
        from_dict(Outer, {"path": "p", "inner": {"names": ["a", 3]}})
    with pytest.raises(ConfigError, match=r"^inner\.bogus: unknown key$"):
        from_dict(Outer, {"path": "p", "inner": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"^--rate: must be a finite number, got 'nan'$"):
        parse(Outer, ["p", "--rate", "nan"], prog="test")
    with pytest.raises(ConfigError, match=r"^path: may not be 'forbidden'$"):
        parse(Outer, ["forbidden"], prog="test")


def test_flags_nest_into_groups_and_defaults_stay_the_fields_own():
    options = parse(Outer, ["p", "--names", "a", "--names", "b", "--flag", "--share", "1"], prog="test")
    assert options == Outer(path="p", share=1.0, inner=Inner(names=["a", "b"]), flag=True)
    assert parse(Outer, ["p"], prog="test") == Outer(path="p")


def test_round_trip_and_schema():
    options = Outer(path="p", inner=Inner(rate=2.0, names=["x"]))
    assert from_dict(Outer, json.loads(json.dumps(to_dict(options)))) == options
    schema = json_schema(Outer)
    assert schema["properties"]["share"]["description"] == "A share."


def test_json_reader_refuses_what_would_crash_or_mislead(tmp_path):
    assert loads('{"a": [1, 2.5, "NaN"]}', file="f") == {"a": [1, 2.5, "NaN"]}
    for text, fragment in (("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested more than"),
                           ("[" * 10**6, "nested more than"), ('{"x": 1e400}', "out of range"),
                           ("[NaN]", "NaN is not a JSON number"), ("[-Infinity]", "-Infinity is not a JSON number"),
                           ("[" + "1" * 100 + "]", "too large"), ("{", "invalid JSON at line 1 column 2")):
        with pytest.raises(ConfigError, match=fragment) as info:
            loads(text, file="f.json", error=ConfigError)
        assert str(info.value).startswith("f.json: ")
    lines = tmp_path / "a.jsonl"
    lines.write_bytes(b'{"a": 1}\n\n{"b": NaN}\n')
    with pytest.raises(Exception, match=r"a\.jsonl, record line 3: refused JSON at line 1 column 7"):
        list(iter_jsonl(lines))
    assert next(iter_jsonl(lines)) == (1, {"a": 1})


def test_every_shipped_config_round_trips_through_the_schema():
    from streamvlm.settings import shipped_configs
    from streamvlm.train.config import TrainConfig, load_train_config

    for name in shipped_configs():
        config = load_train_config(name)
        assert from_dict(TrainConfig, to_dict(config)) == config

