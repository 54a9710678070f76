"""Config loading: strict keys and types, dotted overrides, path checks before any model loads."""

from __future__ import annotations

import json

import pytest

from streamvlm.errors import ConfigError, UserError
from streamvlm.train.config import TrainConfig, apply_overrides, load_train_config, parse_value

from .conftest import tiny_overrides


def test_overrides_parse_json_values_and_dotted_paths():
    data = apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=1e-4", "data.train=foo.jsonl", "lora.enabled=true",
                                                    "optim.max_grad_norm=null", "output_dir=runs/x"])
    assert data == {"optim": {"lr": 1e-4, "max_grad_norm": None}, "data": {"train": "foo.jsonl"},
                    "lora": {"enabled": True}, "output_dir": "runs/x"}
    assert parse_value("[1, 2]") == [1, 2] and parse_value("abc") == "abc"


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        load_train_config(None, ["optim.lrr=1e-4"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"optim\.batch_size: expected an integer"):
        load_train_config(None, ["optim.batch_size=two"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        load_train_config(None, ["optim.lr"])


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"preset": "tiny"}, "optim": {"epochs": "many"}}))
    with pytest.raises(ConfigError, match=r"bad\.json: optim\.epochs"):
        load_train_config(str(bad))
    with pytest.raises(ConfigError, match="no such config file"):
        load_train_config(str(tmp_path / "missing.json"))


def test_missing_data_path_fails_in_validate(tmp_path):
    cfg = load_train_config(None, tiny_overrides({"train": str(tmp_path / "nope.jsonl"),
                                                  "features": str(tmp_path)}, tmp_path / "out"))
    with pytest.raises(UserError, match=r"data\.train: no such file"):
        cfg.validate()


def test_model_needs_exactly_one_source():
    cfg = TrainConfig()
    with pytest.raises(ConfigError, match="exactly one of 'config', 'init_from', 'preset'"):
        cfg.model.validate()
    cfg = load_train_config(None, ["model.preset=tiny", "model.init_from=x"])
    with pytest.raises(ConfigError, match="exactly one"):
        cfg.model.validate()


def test_value_checks():
    cfg = load_train_config(None, ["model.preset=tiny", "data.train=x", "data.features=y", "optim.warmup_ratio=1.5"])
    with pytest.raises(ConfigError, match="warmup_ratio"):
        cfg.validate(check_paths=False)
    cfg = load_train_config(None, ["model.preset=tiny", "data.train=x"])
    with pytest.raises(ConfigError, match="exactly one of 'features'"):
        cfg.validate(check_paths=False)


def test_cli_reports_config_errors_in_one_line(capsys):
    from streamvlm.cli import main

    assert main(["train", "tiny-synth", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "optim.lrr" in err
    assert main(["train", "tiny-synth", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["method"] == "streaming"
