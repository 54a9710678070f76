"""The decode/encode/LLM pipeline: order, batching when behind, drops in real time, errors."""

import threading
import time

import numpy as np
import pytest
import torch

from streamvlm.engine.pipeline import StreamPipeline, TimedQuery
from streamvlm.video.frames import Frame


class FakeConsumer:
    def __init__(self, llm_delay=0.0, encode_delay=0.0):
        self.llm_delay, self.encode_delay = llm_delay, encode_delay
        self.log = []
        self.batches = []
        self.threads = set()

    def encode_images(self, images):
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(images))
        time.sleep(self.encode_delay)
        return torch.stack([torch.full((2, 4), float(img[0, 0, 0])) for img in images])

    def ask(self, text, t):
        self.log.append(("ask", text, t))

    def push_frame(self, embeds, t):
        time.sleep(self.llm_delay)
        self.log.append(("frame", int(embeds[0, 0]), t))
        return [f"event@{t}"] if int(embeds[0, 0]) % 5 == 0 else []


def frames(n, fps=2.0, delay=0.0):
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield Frame(time=i / fps, index=i, image=np.full((4, 4, 3), i % 256, dtype=np.uint8))


def test_offline_keeps_every_frame_in_order_and_asks_queries_at_the_boundary():
    consumer = FakeConsumer()
    pipe = StreamPipeline(consumer, frames(20), queries=[TimedQuery(2.2, "what now?"), TimedQuery(0.0, "hi")])
    steps = list(pipe)
    assert [s.index for s in steps] == list(range(20))
    assert sum(len(s.events) for s in steps) == 4
    frames_fed = [e for e in consumer.log if e[0] == "frame"]
    assert [e[1] for e in frames_fed] == list(range(20))
    # "hi" before frame 0; "what now?" (2.2 s) before the frame at 2.5 s
    assert consumer.log[0] == ("ask", "hi", 0.0)
    ask = consumer.log.index(("ask", "what now?", 2.2))
    assert consumer.log[ask + 1] == ("frame", 5, 2.5)
    assert pipe.stats.frames == 20 and pipe.stats.dropped == 0
    assert consumer.threads == {"streamvlm-encoder"}


def test_encoder_batches_when_the_llm_is_behind():
    consumer = FakeConsumer(llm_delay=0.01)
    list(StreamPipeline(consumer, frames(40), encode_batch=8, queue_size=8))
    assert max(consumer.batches) > 1 and sum(consumer.batches) == 40


def test_realtime_drops_and_counts_instead_of_queueing():
    consumer = FakeConsumer(llm_delay=0.02)
    pipe = StreamPipeline(consumer, frames(200, delay=0.001), realtime=True, queue_size=4, encode_batch=2)
    steps = list(pipe)
    assert pipe.stats.dropped > 0
    assert len(steps) + pipe.stats.dropped == 200
    times = [s.time for s in steps]
    assert times == sorted(times)


def test_source_error_is_raised_after_the_decoded_frames():
    def broken():
        yield from frames(3)
        raise RuntimeError("stalled")

    consumer = FakeConsumer()
    pipe = StreamPipeline(consumer, broken())
    seen = []

    def consume():
        for step in pipe:
            seen.append(step.index)

    with pytest.raises(RuntimeError, match="stalled"):
        consume()
    assert seen == [0, 1, 2]


def test_leaving_early_stops_the_threads():
    consumer = FakeConsumer()
    pipe = StreamPipeline(consumer, frames(10_000), queue_size=4)
    for step in pipe:
        if step.index == 3:
            break
    pipe.close()
    assert not any(t.is_alive() for t in pipe._threads)


def test_queries_after_the_last_frame_are_reported():
    pipe = StreamPipeline(FakeConsumer(), frames(4), queries=[TimedQuery(99.0, "late")])
    list(pipe)
    assert pipe.pending_queries == [TimedQuery(99.0, "late")]
