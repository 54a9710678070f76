"""Connector-alignment samples: frames inside an action, then that action's narration, learned."""

from __future__ import annotations

import pytest

from streamvlm.data.convert.timeline import frame_at
from streamvlm.data.generate import rule_refine
from streamvlm.data.jsonl import read_jsonl
from streamvlm.data.synth import generate_world
from streamvlm.model.conversation import IGNORE_INDEX
from streamvlm.train.align import CONTEXT_FRAMES, alignment_records, write_alignment


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_world(tmp_path_factory.mktemp("align") / "world", 2, 11, duration=20.0, size=64, fps=4.0,
                          workers=1, progress=False)


def test_every_frame_inside_an_action_says_that_action(world):
    records = list(alignment_records(world.root, fps=2.0))
    by_video = {v.uid: v for v in world.videos}
    expected = sum(len(range(frame_at(a.start, 2.0), min(int(a.end * 2.0 + 1e-6), frame_at(v.duration, 2.0) - 1) + 1))
                   for v in world.videos for a in v.actions)
    assert len(records) == expected > 0
    for record in records:
        stream, reply = record.conversation
        assert stream.role == "stream" and stream.learn is False and 1 <= stream.num_frames <= CONTEXT_FRAMES
        first, stop = record.frame_range()
        shown = (stop - 1) / 2.0  # the time of the last frame, the one the reply is about
        action = by_video[record.meta["video_uid"]].actions[record.meta["action"]]
        assert action.start - 1e-6 <= shown <= action.end + 1e-6
        assert reply.role == "assistant" and reply.learn is True and reply.content == rule_refine(action.narration)
        assert stream.num_frames == min(CONTEXT_FRAMES, stop)  # fewer frames only at the video's start
        assert record.video == f"{record.meta['video_uid']}.mp4"


def test_written_file_round_trips_and_learns_only_the_reply(world, tmp_path):
    from streamvlm.model import StreamVLM
    from streamvlm.model.presets import tiny_config, train_tokenizer

    out = tmp_path / "align.jsonl"
    count = write_alignment(world.root, out, fps=2.0, stride=3)
    records = read_jsonl(out)
    assert len(records) == count == len(list(alignment_records(world.root, 2.0, stride=3)))
    model = StreamVLM.from_config(tiny_config(), train_tokenizer())
    rendered = model.renderer.render(records[0].conversation)
    learned = [i for i, label in enumerate(rendered.labels) if label != IGNORE_INDEX]
    assert learned and all(i > rendered.frame_positions[-1][-1] for i in learned)  # no frame decision learned
