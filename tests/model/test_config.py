"""The model config: JSON round trip, and bad values named by their field (strict JSON types)."""

import json

import pytest

from streamvlm.errors import ConfigError
from streamvlm.model.config import LoraSettings, StreamVLMConfig, VisionConfig
from streamvlm.model.presets import tiny_config
from streamvlm.settings import from_dict, load_json, save_json, to_dict


def test_round_trip(tmp_path):
    config = tiny_config("qwen2", "clip")
    config.lora = LoraSettings(r=8, alpha=16)
    config.vision.image_mean = [0.1, 0.2, 0.3]
    save_json(config, tmp_path / "c.json")
    assert load_json(StreamVLMConfig, tmp_path / "c.json") == config
    assert json.loads((tmp_path / "c.json").read_text()) == to_dict(config)


@pytest.mark.parametrize("data, message", [
    ({"llm_name_or_path": "x", "frame_tokn": "<v>"}, "^frame_tokn: unknown key$"),
    ({"llm_name_or_path": "x", "vision": {"pool_sise": 3}}, "^vision.pool_sise: unknown key$"),
    ({"llm_name_or_path": "x", "vision": {"pool_size": "3"}}, "^vision.pool_size: should be a valid integer, got '3'$"),
    ({"llm_name_or_path": "x", "vision": {"pool_size": -1}}, "vision.pool_size: should be greater than or equal to 0"),
    ({"llm_name_or_path": "x", "stream_loss_weight": "high"}, "stream_loss_weight: should be a valid number"),
    ({"llm_name_or_path": "x", "stream_loss_weight": -1}, "stream_loss_weight: should be greater than or equal to 0"),
    ({"llm_name_or_path": "x", "lora": {"r": 1.5}}, "lora.r: should be a valid integer"),
    ({"llm_name_or_path": "x", "lora": {"dropout": 1.0}}, "lora.dropout: should be less than 1"),
    ({"llm_name_or_path": "x", "vision": {"use_pooled": 1}}, "vision.use_pooled: should be a valid boolean"),
    ({"llm_name_or_path": "x", "vision": {"image_std": [0.5, 0, 0.5]}},
     r"vision.image_std\[1\]: should be greater than 0"),
    ({"llm_name_or_path": "x", "frame_fps": 0}, "frame_fps: should be greater than 0"),
    ({"llm_name_or_path": "x", "frame_token": ""}, "frame_token: string should have at least 1 character"),
    ({}, "set exactly one of 'llm_name_or_path' and 'llm_config'"),
    ({"llm_name_or_path": "x"}, "vision: set one of 'name_or_path' and 'tower_config'"),
    ({"llm_name_or_path": "x", "vision": {"name_or_path": "v", "pool_size": 0, "use_pooled": False}},
     "no token per frame"),
    ({"llm_name_or_path": "x", "vision": {"name_or_path": "v", "tower_config": {}}}, "set only one of"),
])
def test_bad_values_are_named(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(StreamVLMConfig, data)


def test_constructing_in_code_validates_too():
    with pytest.raises(ValueError, match="exactly one"):
        StreamVLMConfig()
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        VisionConfig(pool_size=-1)


def test_bad_json_file_names_the_file(tmp_path):
    f = tmp_path / "broken.json"
    f.write_text('{"llm_name_or_path": ')
    with pytest.raises(ConfigError, match="broken.json: invalid JSON at line 1"):
        load_json(StreamVLMConfig, f)
    with pytest.raises(ConfigError, match="absent.json: cannot read"):
        load_json(StreamVLMConfig, tmp_path / "absent.json")


def test_to_dict_is_json():
    json.dumps(to_dict(tiny_config()))
