"""Typed configs: JSON round trip and errors that name the field."""

import json

import pytest

from streamvlm.config import LoraSettings, StreamVLMConfig, VisionConfig
from streamvlm.errors import ConfigError
from streamvlm.presets import tiny_config
from streamvlm.typed_json import from_dict, load_json, save_json, to_dict


def test_round_trip(tmp_path):
    config = tiny_config("qwen2", "clip")
    config.lora = LoraSettings(r=8, alpha=16)
    config.vision.image_mean = [0.1, 0.2, 0.3]
    save_json(config, tmp_path / "c.json")
    assert load_json(StreamVLMConfig, tmp_path / "c.json") == config


@pytest.mark.parametrize("data, message", [
    ({"llm_name_or_path": "x", "frame_tokn": "<v>"}, "unknown config key 'frame_tokn'"),
    ({"llm_name_or_path": "x", "vision": {"pool_sise": 3}}, "unknown config key 'vision.pool_sise'"),
    ({"llm_name_or_path": "x", "vision": {"pool_size": "3"}}, "vision.pool_size: expected an integer"),
    ({"llm_name_or_path": "x", "stream_loss_weight": "high"}, "stream_loss_weight: expected a number"),
    ({"llm_name_or_path": "x", "lora": {"r": 1.5}}, "lora.r: expected an integer"),
    ({"llm_name_or_path": "x", "vision": {"use_pooled": 1}}, "vision.use_pooled: expected true/false"),
])
def test_bad_values_are_named(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(StreamVLMConfig, data)


@pytest.mark.parametrize("config, message", [
    (StreamVLMConfig(), "exactly one of 'llm_name_or_path' and 'llm_config'"),
    (StreamVLMConfig(llm_name_or_path="x", vision=VisionConfig()), "vision: set exactly one"),
    (StreamVLMConfig(llm_name_or_path="x", vision=VisionConfig(name_or_path="v", pool_size=0, use_pooled=False)),
     "no token per frame"),
    (StreamVLMConfig(llm_name_or_path="x", vision=VisionConfig(name_or_path="v"), frame_fps=0), "frame_fps"),
])
def test_validation(config, message):
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_bad_json_file_names_the_file(tmp_path):
    f = tmp_path / "broken.json"
    f.write_text('{"llm_name_or_path": ')
    with pytest.raises(ConfigError, match="broken.json: not valid JSON"):
        load_json(StreamVLMConfig, f)
    with pytest.raises(ConfigError, match="no such file"):
        load_json(StreamVLMConfig, tmp_path / "absent.json")


def test_to_dict_is_json():
    json.dumps(to_dict(tiny_config()))
