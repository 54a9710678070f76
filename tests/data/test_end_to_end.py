"""Tiny videos -> ``streamvlm encode`` (2 processes) -> StreamingDataset -> batch -> finite loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from streamvlm.data.collate import Sample
from streamvlm.data.dataset import RawFrameDataset, StreamingDataset, make_collator
from streamvlm.data.encode import encode_folder
from streamvlm.data.features import feature_path, read_info
from streamvlm.model.checkpoint import save_pretrained
from streamvlm.model.conversation import IGNORE_INDEX
from streamvlm.model.presets import tiny_config, train_tokenizer
from streamvlm.model.vlm import StreamVLM


def write_video(path, seconds: float, fps: int = 8, size=(48, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(int(seconds * fps)):
            image = np.full((size[1], size[0], 3), (i * 9) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    videos = root / "videos"
    write_video(videos / "a.mp4", 3.0)
    write_video(videos / "b.mp4", 2.0, size=(32, 48))
    write_video(videos / "deep" / "c.mp4", 1.5)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(200))
    torch.manual_seed(0)
    model = StreamVLM.from_config(tiny_config(), train_tokenizer()).eval()
    save_pretrained(model, root / "model")
    return root, model


def test_shards_cover_every_video_once(world, tmp_path):
    root, model = world
    reports = [encode_folder(model.frame_encoder, root / "videos", tmp_path, fps=2.0, rank=r, world_size=2,
                             progress=False)
               for r in range(2)]
    encoded = sorted(v for rep in reports for v in rep.encoded)
    assert encoded == ["a.mp4", "b.mp4", "deep/c.mp4"] and len(set(encoded)) == 3
    assert [v for rep in reports for v, _ in rep.failed] == ["broken.mp4"]


@pytest.mark.slow
def test_encode_two_ranks_each_video_once_and_resumable(world):
    """Two ``streamvlm encode`` processes (RANK/WORLD_SIZE as torchrun sets them); ~30 s of imports."""
    root, _ = world
    out = root / "features"
    env = {**os.environ, "WORLD_SIZE": "2", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "streamvlm.cli", "encode", str(root / "videos"), "--model", str(root / "model"),
           "--out", str(out), "--fps", "2", "--device", "cpu"]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for r in range(2)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(code == 0 for _, _, code in results), results
    stdout = "".join(o for o, _, _ in results)
    assert "failed: broken.mp4" in stdout and stdout.count("encoded ") == 2
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["a.mp4.safetensors", "b.mp4.safetensors", "deep/c.mp4.safetensors"]
    info = read_info(out / "a.mp4.safetensors")
    assert (info.fps, info.num_frames, info.tokens_per_frame, info.video) == (2.0, 6, 10, "a.mp4")
    assert read_info(out / "deep" / "c.mp4.safetensors").num_frames == 3
    _, model = world
    again = encode_folder(model.frame_encoder, root / "videos", out, fps=2.0, progress=False)
    assert (again.encoded, len(again.skipped), [v for v, _ in again.failed]) == ([], 3, ["broken.mp4"])


def conversation_file(root):
    def rec(key, video, start, turns):
        return json.dumps({"version": 1, "id": key, "video": video, "fps": 2.0, "start": start, "conversation": turns})
    lines = [
        rec("a0", "a.mp4", 0.5, [
            {"role": "system", "content": "S"}, {"role": "stream", "num_frames": 1, "time": 0.5},
            {"role": "user", "content": "narrate", "time": 0.5},
            {"role": "assistant", "content": "You pick up the cup.", "time": 0.5, "learn": True},
            {"role": "stream", "num_frames": 3, "time": 1.0, "learn": True},
            {"role": "assistant", "content": "So cool.", "time": 2.0, "learn": True}]),
        rec("gone", "broken.mp4", 0.0, [{"role": "stream", "num_frames": 2, "learn": True}]),
        rec("b0", "b.mp4", 0.0, [{"role": "stream", "num_frames": 4, "learn": 2}]),
    ]
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dataset_batch_labels_and_loss(world, caplog):
    root, model = world
    out = root / "features2"
    report = encode_folder(model.frame_encoder, root / "videos", out, fps=2.0, progress=False)
    assert report.failed and report.failed[0][0] == "broken.mp4" and len(report.encoded) == 3
    data = StreamingDataset(conversation_file(root), out, model.renderer)
    samples = [data[i] for i in range(len(data))]
    assert [s.key for s in samples] == ["a0", "b0", "b0"]  # the sample without features is skipped
    assert list(data.skipped) == ["gone"] and "skipping sample gone" in caplog.text
    reference = load_file(str(feature_path(out, "a.mp4")))["frame_tokens"]
    assert torch.equal(samples[0].frames, reference[1:5])  # start 0.5 s at 2 fps -> frames 1..4
    batch = make_collator(model.token_ids.pad_id)([samples[0], samples[1]])
    ids = model.token_ids
    labels, input_ids = batch.labels, batch.input_ids
    rendered = samples[0].rendered
    decisions = rendered.decisions
    assert [(d.learned, d.speaks) for d in decisions] == [(False, False), (True, False), (True, False), (True, True)]
    for d in decisions:
        assert input_ids[0, d.position] == ids.frame_id and input_ids[0, d.position + 1] != ids.frame_id
        expected = (ids.speak_id if d.speaks else ids.silence_id) if d.learned else IGNORE_INDEX
        assert labels[0, d.position] == expected
    reply = rendered.spans[-1]
    targets = labels[0, reply.reply_start - 1:reply.end - 1].tolist()
    assert targets == input_ids[0, reply.reply_start:reply.end].tolist() and targets[-1] == ids.eos_id
    assert (labels[1] != IGNORE_INDEX).sum() == 2  # b0: the first 2 of 4 frame decisions are learned
    assert batch.frames.shape == (8, 10, model.config.vision_hidden_size)
    out_model = model(batch.input_ids, batch.attention_mask, frame_tokens=batch.frames, labels=batch.labels)
    assert torch.isfinite(out_model.loss) and out_model.stream_loss is not None


def test_feature_fps_mismatch_and_short_files_are_skipped(world, tmp_path):
    root, model = world
    out = tmp_path / "features"
    encode_folder(model.frame_encoder, root / "videos", out, fps=1.0, progress=False)
    data = StreamingDataset(conversation_file(root), out, model.renderer)
    with pytest.raises(Exception, match="no sample could be loaded"):
        data[0]
    assert "features are at 1.0 fps, the conversation at 2.0 fps" in data.skipped["a0"]


def test_raw_frame_dataset_decodes_pixels(world):
    root, model = world
    data = RawFrameDataset(conversation_file(root), root / "videos", model.renderer, model.frame_encoder)
    sample: Sample = data[0]
    size = model.frame_encoder.image_size
    assert sample.frames.shape == (4, 3, size, size)
    out = model(torch.tensor([sample.rendered.input_ids]), pixel_values=sample.frames,
                labels=torch.tensor([sample.rendered.labels]))
    assert torch.isfinite(out.loss)
    assert data[1].key == "b0" and "gone" in data.skipped
