"""Feature files record how their frames were made (data/features.py ``FrameRecord``): encode writes
it and redoes files made another way; eval and train refuse features made otherwise than their
model takes frames, in one line naming both; files written before the record are accepted with
one warning line."""

from __future__ import annotations

import json

import pytest
import torch

from streamvlm.cli import main
from streamvlm.data.encode import encode_folder
from streamvlm.data.features import read_info, write_features
from streamvlm.model.checkpoint import save_pretrained
from streamvlm.model.config import VisionConfig
from streamvlm.model.frame_encoder import FrameEncoder
from streamvlm.model.frame_record import FrameRecord
from streamvlm.model.presets import tiny_tower_config
from tests.helpers import tiny_model, write_textured_video

STREAM = {"version": 1, "id": "s1", "video": "clips/a.mp4", "fps": 2.0, "start": 0.0,
          "conversation": [{"role": "stream", "num_frames": 2, "learn": True},
                           {"role": "assistant", "content": "You pick up the cup.", "learn": True}]}


def encoder(seed: int = 0, resize: str = "streamvlm") -> FrameEncoder:
    torch.manual_seed(seed)
    return FrameEncoder.from_config(VisionConfig(tower_config=tiny_tower_config(), resize=resize)).eval()


def test_encode_records_frames_and_redoes_files_made_another_way(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_textured_video(videos / "a.mp4", 24, 40, frames=2)
    out = tmp_path / "features"
    first = encoder(0)
    assert encode_folder(first, videos, out, fps=2.0, progress=False).encoded == ["a.mp4"]
    assert read_info(out / "a.mp4.safetensors").frames == first.frame_record()
    again = encode_folder(first, videos, out, fps=2.0, progress=False)
    assert (again.encoded, again.skipped) == ([], ["a.mp4"])
    other = encoder(1)  # another tower: the file is encoded again
    redone = encode_folder(other, videos, out, fps=2.0, progress=False)
    assert (redone.encoded, redone.redone) == (["a.mp4"], ["a.mp4"])
    assert not read_info(out / "a.mp4.safetensors").frames.differs(other.frame_record())


def test_records_compare_the_same_tower_in_any_float_dtype_and_tell_others_apart():
    tower = encoder(0)
    record = tower.frame_record()
    assert not record.differs(encoder(0).to(torch.bfloat16).frame_record())
    assert not record.differs(encoder(0).to(torch.float16).frame_record())
    assert record.differs(encoder(1).frame_record())  # same shapes, other weights
    assert record.differs(encoder(0, resize="upstream").frame_record())
    partial = FrameRecord("streamvlm", record.image_size)  # a model loaded without its tower
    assert not partial.differs(record) and partial.differs(FrameRecord("streamvlm", 384))
    assert FrameRecord.from_json(record.to_json(), "f") == record


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("record")
    model = tiny_model()
    save_pretrained(model, root / "ckpt")
    (root / "data.jsonl").write_text(json.dumps(STREAM) + "\n")
    return root, model


def eval_with(root, model, frames: FrameRecord | None, capsys):
    features = root / f"features-{abs(hash(frames))}"
    feats = torch.randn(4, model.config.tokens_per_frame, model.config.vision_hidden_size,
                        generator=torch.Generator().manual_seed(0))
    write_features(features / "clips" / "a.mp4.safetensors", feats, 2.0, "clips/a.mp4", frames)
    capsys.readouterr()
    code = main(["eval", str(root / "data.jsonl"), "--model", str(root / "ckpt"), "--features", str(features),
                 "--no-progress", "--json", "--threads", "1"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_refuses_features_made_another_way(checkpoint, capsys):
    root, model = checkpoint
    ours = model.frame_encoder.frame_record()
    code, out, err = eval_with(root, model, ours, capsys)
    assert code == 0 and err == "" and json.loads(out)["conversations"] == 1
    for frames in (encoder(1).frame_record(), FrameRecord("upstream", 384)):
        code, out, err = eval_with(root, model, frames, capsys)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert "a.mp4.safetensors, field 'frames': features made with " + frames.describe() in err
        assert "the model takes " + ours.describe() in err


def test_features_without_a_record_are_accepted_with_one_warning(checkpoint, capsys):
    root, model = checkpoint
    code, out, err = eval_with(root, model, None, capsys)
    assert code == 0 and json.loads(out)["conversations"] == 1
    assert err.count("\n") == 1 and "without a record of how their frames were made" in err


def test_train_refuses_features_made_another_way(tmp_path, capsys):
    from tests.train.conftest import tiny_overrides, write_dataset

    data = write_dataset(tmp_path / "data", frames=FrameRecord("upstream", 32))
    config = tmp_path / "train.json"
    config.write_text("{}")
    capsys.readouterr()
    code = main(["train", str(config), *tiny_overrides(data, tmp_path / "out", **{"optim.max_steps": 1})])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "field 'frames': features made with upstream resize to 32 px; the model takes " \
           "streamvlm resize to 32 px" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.safetensors"))


def test_model_without_its_tower_knows_its_resize_and_size():
    model = tiny_model()
    model.frame_encoder = None
    assert model.frame_record() == FrameRecord("streamvlm", 32)
