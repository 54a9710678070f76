"""Batches the serve worker cannot choose: frames of any size and format side by side, and sessions
whose frame fails (undecodable, unprocessable, unencodable, a step that raises) next to good ones.
Each good session must end with exactly the narration it gets alone; a failing one ends alone.

The scheduler's plans are run here directly (no worker thread, no server): every batch is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamvlm.engine import GenerationConfig
from streamvlm.engine.defaults import resolve_stream
from streamvlm.engine.narration import frame_fit
from streamvlm.engine.options import TimedQuery
from streamvlm.serve.images import decode_image
from streamvlm.serve.limits import QUESTIONS_PER_FRAME
from streamvlm.serve.protocol import AssistantDeltaMessage, AssistantMessage, CloseCode, ErrorMessage, UserMessage
from streamvlm.serve.scheduler import Close
from tests.helpers import serving_parts

from .conftest import REPLY_TOKENS, alone_default, encode_image, noise, write_video

SIZES = [(64, 64), (64, 48), (32, 32), (100, 75), (30, 30), (53, 17)]
"""(width, height) of the frames clients send; after downscaling to the model's frame side these
still differ (64x48, 64x36 ...): a batch of them cannot be stacked as they are."""
FAULTS = [None, None, "undecodable", "unprocessable", "unencodable", "step_raises"]
GENERATION = GenerationConfig(threshold=0.9, max_new_tokens=6)  # speaks at some frames, not all; short replies
FRAMES = 3


class StepRaises(RuntimeError):
    pass


def said(box: list) -> list[tuple[str, float, str]]:
    return [("user" if isinstance(m, UserMessage) else "assistant", m.time, m.text) for m in box
            if isinstance(m, (UserMessage, AssistantMessage))]


def alone(model, images: list[np.ndarray | None], query: TimedQuery | None) -> list[tuple[str, float, str]]:
    """The events of one session fed ``images`` (None: a rejected frame) by itself, as narrate would."""
    assistant = resolve_stream(model, generation=GENERATION).assistant()
    events = []
    for k, image in enumerate(images):
        if image is None:
            continue
        if query is not None and query.time <= k * 0.5:
            assistant.ask(query.text, k * 0.5)
            query = None
        events += [(e.role, e.time, e.text) for e in assistant.push_frame(image, k * 0.5)]
    return events


def run_batch(model, clients: list[tuple[tuple[int, int], str, str | None, bool]]) -> None:
    """Open one session per client (size, format, fault, asks a question), queue all their frames,
    step the scheduler until every frame is done, and check each session's outcome."""
    side = frame_fit(model)
    scheduler, runner = serving_parts(model, GENERATION, fit=side)
    boxes, expected = [], []
    for i, ((width, height), fmt, fault, asks) in enumerate(clients):
        box: list = []
        if fault == "step_raises":
            def emit(m, box=box):  # a client whose reply fails while it is decoded (inside the step)
                if isinstance(m, AssistantDeltaMessage):
                    raise StepRaises("the reply cannot be streamed")
                box.append(m)
        else:
            emit = box.append
        session = runner.open(emit)
        query = TimedQuery(0.0, "What is this?") if asks or fault == "step_raises" else None
        if query is not None:
            scheduler.submit_query(session, query)
        images: list[np.ndarray | None] = []
        for k, image in enumerate(noise(i, height, width, FRAMES)):
            payload: bytes | np.ndarray = encode_image(image, fmt)
            decoded = decode_image(payload, max_pixels=10**6, fit=side)
            if k == 1 and fault == "undecodable":
                payload, decoded = payload[: len(payload) // 3] + b"\x00" * 7, None
            elif k == 1 and fault == "unprocessable":
                payload = np.zeros((8, 8, 4), np.uint8)  # stands for a frame preprocessing fails on
            elif k == 1 and fault == "unencodable":
                payload = np.full((8, 8, 3), np.nan, np.float32)  # the encoder below refuses NaN pixels
            images.append(decoded)
            assert scheduler.submit_frame(session, k * 0.5, payload) is None
        boxes.append(box)
        expected.append(alone(model, images, query) if fault in (None, "undecodable") else None)
    steps = 0
    while any(s.frames for s in scheduler.streams()):
        runner.run(scheduler.plan())
        steps += 1
        assert steps <= FRAMES + 1
    for (size, fmt, fault, _), box, events in zip(clients, boxes, expected):
        where = f"{size} {fmt} {fault}"
        errors = [m for m in box if isinstance(m, ErrorMessage)]
        if events is not None:  # a good session (or one with an undecodable frame, refused alone)
            assert said(box) == events, where
            assert [e.code for e in errors] == (["bad_frame"] if fault == "undecodable" else []), where
            assert not any(isinstance(m, Close) for m in box), where
        else:  # its frame failed: it ended, alone, with an internal error and 1011
            assert errors[-1].code == "internal" and box[-1] == Close(CloseCode.INTERNAL, "internal error"), where
    assert scheduler.count == sum(e is not None for e in expected)


@pytest.fixture
def nan_refusing_encoder(tiny_model, monkeypatch):
    """The model's frame encoding raises on NaN pixels (a frame it cannot encode), batch or not."""
    import torch

    embed = tiny_model.embed_frames

    def refusing(pixels):
        if torch.isnan(pixels).any():
            raise RuntimeError("cannot encode NaN pixels")
        return embed(pixels)

    monkeypatch.setattr(tiny_model, "embed_frames", refusing)
    return tiny_model


def test_frames_of_every_size_and_format_in_one_batch(tiny_model):
    """Six sizes in three formats in one batch: each session gets what it gets alone."""
    clients = [(size, fmt, None, k % 2 == 0) for k, (size, fmt) in
               enumerate(zip(SIZES, ["png", "jpeg", "webp", "png", "jpeg", "webp"]))]
    run_batch(tiny_model, clients)


def test_each_failure_ends_only_its_session(nan_refusing_encoder):
    clients = [((64, 64), "png", None, True), ((64, 48), "jpeg", "undecodable", False),
               ((32, 32), "webp", "unprocessable", False), ((100, 75), "png", "unencodable", False),
               ((30, 30), "jpeg", "step_raises", False), ((53, 17), "webp", None, True)]
    run_batch(nan_refusing_encoder, clients)


@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SIZES), st.sampled_from(sorted(["png", "jpeg", "webp"])),
                          st.sampled_from(FAULTS), st.booleans()), min_size=2, max_size=4))
def test_random_batches_of_sizes_formats_and_failures(nan_refusing_encoder, clients):
    run_batch(nan_refusing_encoder, clients)


def test_one_sessions_questions_never_hold_the_others(tiny_model):
    """A session with 10 questions due at its first frame gets at most QUESTIONS_PER_FRAME answered
    per step while another session's frames go on, one per step; all 10 are answered, those left
    after its last frame one step each (while the other session's frames still go on)."""
    scheduler, runner = serving_parts(tiny_model, GENERATION)
    flood_box, other_box = [], []
    flood, other = runner.open(flood_box.append), runner.open(other_box.append)
    for q in range(10):
        scheduler.submit_query(flood, TimedQuery(0.0, f"Question {q}?"))
    frames = noise(0, 32, 32, 2)
    others = noise(1, 32, 32, 10)
    for k, image in enumerate(frames):
        assert scheduler.submit_frame(flood, k * 0.5, image, last=k == 1) is None
    asked_per_step = []
    for k in range(10):
        assert scheduler.submit_frame(other, k * 0.5, others[k]) is None
        before = len(said(flood_box))
        batch = scheduler.plan()
        assert {id(step.stream) for step in batch} == {id(flood), id(other)}  # the other session's frame goes on
        runner.run(batch)
        asked_per_step.append(sum(role == "user" for role, _, _ in said(flood_box)[before:]))
    assert asked_per_step == [QUESTIONS_PER_FRAME] * 10
    assert said(other_box) == alone(tiny_model, others, None)
    runner.run(scheduler.plan())  # the finish
    assert flood_box[-1].code == 1000 and not [m for m in flood_box if getattr(m, "code", None) == "ended"]
    events = said(flood_box)
    asked = [text for role, _, text in events if role == "user"]
    assert asked == [f"Question {q}?" for q in range(10)]
    for k, (role, _, _) in enumerate(events):  # every question answered right after it
        if role == "user":
            assert events[k + 1][0] == "assistant"


# ---------------------------------------------------------------------------- over a real server
def test_mixed_sizes_and_an_upload_on_one_server(hostile_server, tiny_model, tiny_checkpoint, cli, tmp_path,
                                                 monkeypatch):
    """Five WebSocket sessions of five frame sizes and an upload of a 64x48 video, their frames
    held until all are queued (so the worker batches them together): each finishes (1000 / 200)
    with exactly its own narration (the upload's: narrate's, its question and instruction both at
    0 s, one answered per frame)."""
    import json
    import threading
    import time

    httpx = pytest.importorskip("httpx")
    from websockets.sync.client import connect

    from streamvlm.serve.protocol import frame_message
    from tests.serve.test_serve import read_all

    video = write_video(tmp_path / "upload.mp4", noise(99, 48, 64, 8))
    narrated = tmp_path / "narrate.jsonl"
    assert cli("narrate", video, "--model", tiny_checkpoint, "--device", "cpu", "--no-progress", "--query",
               "0:What is this?", "--max-new-tokens", REPLY_TOKENS, "--output", narrated).code == 0

    serve = hostile_server.server.config.app.state.serve
    scheduler, runner = serve.scheduler, serve.runner
    gate, run = threading.Event(), runner.run

    def held_run(plan):
        gate.wait(10)
        run(plan)

    monkeypatch.setattr(runner, "run", held_run)
    sizes = [(64, 64), (64, 48), (32, 32), (100, 75), (30, 30)]
    side = frame_fit(tiny_model)
    streams = [noise(10 + i, h, w, 4) for i, (w, h) in enumerate(sizes)]
    results: dict = {}

    def client(i: int) -> None:
        with connect(hostile_server.ws_url + "/v1/stream") as ws:
            ws.recv(timeout=10)
            ws.send(json.dumps({"type": "config", "drop_frames": False}))
            for k, image in enumerate(streams[i]):
                ws.send(frame_message(k * 0.5, encode_image(image, "png")))
            ws.send(json.dumps({"type": "end"}))
            results[i] = read_all(ws, timeout=30)

    def upload() -> None:
        results["upload"] = httpx.post(hostile_server.url + "/v1/narrate", params={"query": "0:What is this?"},
                                       content=video.read_bytes(), timeout=30)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sizes))]
    threads.append(threading.Thread(target=upload))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while not (scheduler.count == 6 and all(s.frames for s in scheduler.streams())):
        assert time.monotonic() < deadline, "the clients' frames were not all queued"
        time.sleep(0.01)
    gate.set()
    for thread in threads:
        thread.join(60)
    for i, images in enumerate(streams):
        messages, code = results[i]
        assert code == CloseCode.NORMAL, (sizes[i], messages[-3:])
        got = [(m["type"], m["time"], m["text"]) for m in messages if m["type"] in ("user", "assistant")]
        decoded = [decode_image(encode_image(im, "png"), max_pixels=10**6, fit=side) for im in images]
        assert got == alone_default(tiny_model, decoded), sizes[i]
    assert results["upload"].status_code == 200
    assert results["upload"].text == narrated.read_text()  # exactly what narrate --output writes

