"""The training config: strict keys, types and ranges, dotted overrides, ``base`` chains, path
checks before any model loads, all reported on one line naming the file and the key."""

from __future__ import annotations

import json

import pytest

from streamvlm.errors import ConfigError, UserError
from streamvlm.settings import apply, parse_value
from streamvlm.train.config import load_train_config

from .conftest import tiny_overrides


def test_overrides_parse_json_values_and_dotted_paths():
    data = apply({"optim": {"lr": 1.0}}, ["optim.lr=1e-4", "data.train=foo.jsonl", "lora.enabled=true",
                                          "optim.max_grad_norm=null", "output_dir=runs/x"])
    assert data == {"optim": {"lr": 1e-4, "max_grad_norm": None}, "data": {"train": "foo.jsonl"},
                    "lora": {"enabled": True}, "output_dir": "runs/x"}
    assert parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc" and parse_value("1e999") == "1e999"
    assert load_train_config("tiny-synth", ["optim.lr=1e-4"]).optim.lr == 1e-4


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match=r"^tiny-synth\.json \(with overrides\): optim\.lrr: unknown key$"):
        load_train_config("tiny-synth", ["optim.lrr=1e-4"])


@pytest.mark.parametrize("override, message", [
    ("optim.batch_size=two", r"optim\.batch_size: should be a valid integer, got 'two'"),
    ("optim.batch_size=2.0", r"optim\.batch_size: should be a valid integer"),
    ("optim.lr=0", r"optim\.lr: should be greater than 0"),
    ("optim.warmup_ratio=1.5", r"optim\.warmup_ratio: should be less than 1"),
    ("optim.betas=[0.9]", r"optim\.betas"),
    ("loss.focal_gamma=-5", r"loss\.focal_gamma: should be greater than or equal to 0, got -5"),
    ("loss.kind=hinge", r"loss\.kind: should be 'ce', 'focal' or 'ohem'"),
    ("lora.enabled=1", r"lora\.enabled: should be a valid boolean"),
    ("model.preset=huge", r"model\.preset: should be 'tiny', 'tiny-qwen2' or 'videollm-online-8b'"),
    ("tokenizer.vocab_size=10", r"tokenizer\.vocab_size: should be greater than or equal to 300"),
    ("seed=-1", r"seed: should be greater than or equal to 0"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config("tiny-synth", [override])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        load_train_config("tiny-synth", ["optim.lr"])
    with pytest.raises(ConfigError, match="is not an object"):
        load_train_config("tiny-synth", ["seed.x=1"])


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"preset": "tiny"}, "optim": {"epochs": "many"}}))
    with pytest.raises(ConfigError, match=r"bad\.json: optim\.epochs"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_train_config(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_train_config(tmp_path)


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{}", "not valid UTF-8 at byte 0"),
    (b"{", "invalid JSON at line 1"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"seed": 1e999}', "number 1e999 is out of range"),
    (b'{"seed": NaN}', "NaN is not a JSON number"),
    (b'{"seed": ' + b"9" * 5000 + b"}", "too large"),
    (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    (b'{"model": ' * 80 + b"1" + b"}" * 80, "nested more than"),
])
def test_hostile_config_files_are_one_line_errors(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_train_config(bad)
    assert str(info.value).startswith(str(bad)) and "\n" not in str(info.value)


def test_base_chains_merge_and_loops_are_refused(tmp_path):
    (tmp_path / "child.json").write_text(json.dumps({"base": "tiny-synth", "loss": {"tau": 2.0}}))
    cfg = load_train_config(tmp_path / "child.json")
    assert cfg.loss.tau == 2.0 and cfg.optim.lr == load_train_config("tiny-synth").optim.lr
    (tmp_path / "self.json").write_text(json.dumps({"base": str(tmp_path / "self.json")}))
    with pytest.raises(ConfigError, match="loops back"):
        load_train_config(tmp_path / "self.json")
    (tmp_path / "a.json").write_text(json.dumps({"base": str(tmp_path / "b.json")}))
    (tmp_path / "b.json").write_text(json.dumps({"base": str(tmp_path / "a.json")}))
    with pytest.raises(ConfigError, match="loops back"):
        load_train_config(tmp_path / "a.json")
    (tmp_path / "num.json").write_text(json.dumps({"base": 3}))
    with pytest.raises(ConfigError, match="base: should name a config"):
        load_train_config(tmp_path / "num.json")


def test_missing_data_path_fails_in_check_paths(tmp_path):
    cfg = load_train_config(None, tiny_overrides({"train": str(tmp_path / "nope.jsonl"),
                                                  "features": str(tmp_path)}, tmp_path / "out"))
    with pytest.raises(UserError, match=r"data\.train: no such file"):
        cfg.check_paths()


def test_model_needs_exactly_one_source():
    with pytest.raises(ConfigError, match="model: is required"):
        load_train_config(None, ["data.train=x"])
    with pytest.raises(ConfigError,
                       match="model: set exactly one of 'config', 'init_from', 'preset' .got init_from, preset"):
        load_train_config(None, ["model.preset=tiny", "model.init_from=x"])


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="set only one of 'features'"):
        load_train_config(None, ["model.preset=tiny", "data.train=x", "data.features=y", "data.videos=z"])
    cfg = load_train_config(None, ["model.preset=tiny", "data.train=x"])
    with pytest.raises(ConfigError, match="set one of 'features'"):
        cfg.check_paths()
    with pytest.raises(ConfigError, match="train_vision: needs with_vision"):
        load_train_config(None, ["model.preset=tiny", "model.with_vision=false", "model.train_vision=true"])


def test_cli_reports_config_errors_in_one_line(capsys):
    from streamvlm.cli import main

    assert main(["train", "tiny-synth", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "optim.lrr" in err
    assert main(["train", "tiny-synth", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"]["method"] == "streaming" and printed["data"]["val"] is None
    assert main(["train", "tiny-synth", "loss.focal_gamma=-5"]) == 2
    assert "loss.focal_gamma" in capsys.readouterr().err
    assert main(["train", "tiny-synth", "--print-config", "optim.lr=1e-4"]) == 0  # overrides after a flag too
    assert json.loads(capsys.readouterr().out)["optim"]["lr"] == 1e-4


def test_a_fresh_run_never_overwrites_an_earlier_one(tmp_path):
    data = {"train": str(tmp_path / "t.jsonl"), "features": str(tmp_path)}
    (tmp_path / "t.jsonl").write_text("")
    (tmp_path / "out" / "checkpoint-000010").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds checkpoints of an earlier run; continue it with resume=true"):
        load_train_config(None, tiny_overrides(data, tmp_path / "out")).check_paths()
    load_train_config(None, tiny_overrides(data, tmp_path / "out", resume=True)).check_paths()
