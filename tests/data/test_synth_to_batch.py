"""`streamvlm synth` -> `data refine` -> `data convert narration` -> `streamvlm encode` -> dataset ->
collated batch: the labels of a real synthetic narration are where the annotations say."""

from __future__ import annotations

import json

import pytest
import torch

from streamvlm.cli import main
from streamvlm.data.dataset import StreamingDataset, make_collator
from streamvlm.model.checkpoint import load_pretrained, save_pretrained
from streamvlm.model.conversation import IGNORE_INDEX
from streamvlm.model.presets import tiny_config, train_tokenizer
from streamvlm.model.vlm import StreamVLM


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_e2e")
    world, ckpt = root / "world", root / "model"
    assert main(["synth", "--out", str(world), "--videos", "2", "--seed", "5", "--duration", "12",
                 "--size", "64", "--workers", "1", "--split", "train"]) == 0
    ann = world / "annotations" / "narration.json"
    assert main(["data", "refine", str(ann), "--out", str(root / "refined.json"), "--backend", "rule"]) == 0
    assert main(["data", "convert", "narration", str(ann), "--videos-root", str(world / "videos"),
                 "--refined", str(root / "refined.json"), "--out", str(root / "narr.jsonl")]) == 0
    torch.manual_seed(0)
    save_pretrained(StreamVLM.from_config(tiny_config(), train_tokenizer()), ckpt)
    assert main(["encode", str(world / "videos"), "--model", str(ckpt), "--out", str(root / "features"),
                 "--fps", "2"]) == 0
    return root, world, load_pretrained(ckpt)


def test_batch_labels_follow_the_annotations(pipeline):
    root, world, model = pipeline
    data = StreamingDataset(root / "narr.jsonl", root / "features", model.renderer)
    samples = [data[i] for i in range(len(data))]
    assert len(samples) == 2 and not data.skipped
    narrations = json.loads((world / "annotations" / "narration.json").read_text())
    records = [json.loads(line) for line in (root / "narr.jsonl").read_text().splitlines()]
    ids = model.token_ids
    batch = make_collator(ids.pad_id)(samples)
    for row, (sample, record) in enumerate(zip(samples, records)):
        rendered = sample.rendered
        # every learned frame decision speaks exactly at the frames of the (later) narrations
        fps, start = record["fps"], record["start"]
        times = sorted(n["timestamp_sec"] for n in narrations[record["video"][:-4]]["narration_pass_1"]["narrations"])
        speaking = {round(start * fps) + d.frame for d in rendered.decisions if d.learned and d.speaks}
        expected = {int(-(-t * fps // 1)) for t in times if t > start + 1 / fps}  # first frame at or after t
        assert speaking and speaking <= expected
        for d in rendered.decisions:
            label = batch.labels[row, d.position].item()
            if d.learned:
                assert label == (ids.speak_id if d.speaks else ids.silence_id)
            else:
                assert label == IGNORE_INDEX
        # replies read "You ..." and end with eos
        reply = next(s for s in rendered.spans if s.role == "assistant")
        text = model.tokenizer.decode(batch.input_ids[row, reply.reply_start:reply.end - 1])
        assert text.strip().startswith("You ")
        assert batch.labels[row, reply.end - 2].item() == ids.eos_id
    out = model(batch.input_ids, batch.attention_mask, frame_tokens=batch.frames, labels=batch.labels)
    assert torch.isfinite(out.loss) and out.stream_loss > 0
