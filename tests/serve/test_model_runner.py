"""The model runner advances its streams with one batched step, each with the result it gets alone;
the images of a plan are decoded on the runner's pool, never on the model's thread."""

from __future__ import annotations

import threading

import numpy as np

from streamvlm.engine import GenerationConfig, batch
from streamvlm.engine.defaults import resolve_stream
from streamvlm.engine.options import TimedQuery
from streamvlm.serve.images import encode_png
from streamvlm.serve.protocol import AssistantMessage, UserMessage
from tests.helpers import serving_parts


def frames_of(seed: int, n: int, side: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (side, side, 3), dtype=np.uint8) for _ in range(n)]


def test_runner_steps_streams_in_one_batch_with_their_results_alone(tiny_model, monkeypatch):
    sizes = []
    forward = batch._forward_batch

    def spy(sessions, prefixes, frames):
        sizes.append(len(sessions))
        return forward(sessions, prefixes, frames)

    monkeypatch.setattr(batch, "_forward_batch", spy)
    generation = GenerationConfig(threshold=0.9)  # speaks at some frames
    scheduler, runner = serving_parts(tiny_model, generation)  # no thread started: its plans are run here
    outboxes = [[] for _ in range(3)]
    streams = [runner.open(box.append) for box in outboxes]
    images = [frames_of(seed, 6) for seed in range(3)]
    scheduler.submit_query(streams[1], TimedQuery(1.0, "What am I doing?"))
    for k in range(6):
        for stream, frames in zip(streams, images):
            assert scheduler.submit_frame(stream, k * 0.5, frames[k]) is None
    for _ in range(6):
        plan = scheduler.plan()
        assert len(plan) == 3
        runner.run(plan)
    assert sizes and max(sizes) == 3  # frames (and replies) of the three streams went through one forward

    transcripts = []
    for box, frames, query in zip(outboxes, images, [None, TimedQuery(1.0, "What am I doing?"), None]):
        alone = resolve_stream(tiny_model, generation=generation).assistant()
        expected = []
        for k, image in enumerate(frames):
            if query is not None and query.time <= k * 0.5:
                alone.ask(query.text, k * 0.5)
                query = None
            expected += [(e.role, e.time, e.text) for e in alone.push_frame(image, k * 0.5)]
        said = [("user" if isinstance(m, UserMessage) else "assistant", m.time, m.text) for m in box
                if isinstance(m, (UserMessage, AssistantMessage))]
        assert said == expected
        transcripts.append(said)
    assert [role for role, _, _ in transcripts[1]].count("user") == 1
    assert sum(role == "assistant" for said in transcripts for role, _, _ in said) > 1


def test_images_are_decoded_off_the_model_thread(tiny_model, monkeypatch):
    """Every client image of a plan is decoded on the runner's pool (in parallel), not on the thread
    that runs the model."""
    from streamvlm.serve import model_runner

    scheduler, runner = serving_parts(tiny_model)
    decoders, decode = [], model_runner.decode_image

    def spy(data, **kwargs):
        decoders.append(threading.current_thread().name)
        return decode(data, **kwargs)

    monkeypatch.setattr(model_runner, "decode_image", spy)
    streams = [runner.open([].append) for _ in range(3)]
    for stream, image in zip(streams, frames_of(5, 3)):
        assert scheduler.submit_frame(stream, 0.0, encode_png(image)) is None
    runner.run(scheduler.plan())
    assert len(decoders) == 3 and threading.current_thread().name not in decoders
    assert all(name.startswith("streamvlm-decode") for name in decoders)
    assert all(stream.processed == 1 for stream in streams)
