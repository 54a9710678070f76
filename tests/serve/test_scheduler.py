"""The serve worker advances its sessions with one batched step, each with the result it gets alone."""

from __future__ import annotations

import numpy as np

from streamvlm.engine import GenerationConfig, batch
from streamvlm.engine.narration import build_assistant
from streamvlm.engine.options import TimedQuery
from streamvlm.serve.limits import ServeLimits
from streamvlm.serve.metrics import ServeMetrics
from streamvlm.serve.protocol import AssistantMessage, UserMessage
from streamvlm.serve.scheduler import Scheduler


def frames_of(seed: int, n: int, side: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (side, side, 3), dtype=np.uint8) for _ in range(n)]


def test_worker_steps_sessions_in_one_batch_with_their_results_alone(tiny_model, monkeypatch):
    sizes = []
    forward = batch._forward_batch

    def spy(sessions, prefixes, frames):
        sizes.append(len(sessions))
        return forward(sessions, prefixes, frames)

    monkeypatch.setattr(batch, "_forward_batch", spy)
    generation = GenerationConfig(threshold=0.9)  # speaks at some frames
    scheduler = Scheduler(tiny_model, generation, kv_budget=0, limits=ServeLimits(queue_frames=16),
                          metrics=ServeMetrics(), fit=None)  # the worker thread is not started: stepped here
    outboxes = [[] for _ in range(3)]
    sessions = [scheduler.open(box.append) for box in outboxes]
    streams = [frames_of(seed, 6) for seed in range(3)]
    scheduler.submit_query(sessions[1], TimedQuery(1.0, "What am I doing?"))
    for k in range(6):
        for session, frames in zip(sessions, streams):
            assert scheduler.submit_frame(session, k * 0.5, frames[k]) is None
    for _ in range(6):
        with scheduler._cond:
            step = scheduler._next_batch()
        assert len(step) == 3
        scheduler._step(step)
    assert sizes and max(sizes) == 3  # frames (and replies) of the three sessions went through one forward

    transcripts = []
    for box, frames, query in zip(outboxes, streams, [None, TimedQuery(1.0, "What am I doing?"), None]):
        alone = build_assistant(tiny_model, generation)
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
