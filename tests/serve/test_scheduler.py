"""The scheduler alone, without a model: which streams step next (fairness, no starvation), what a
full queue does (drops or waits), the limits, the questions per frame, theta, ending, stopping."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from streamvlm.engine.options import TimedQuery
from streamvlm.serve.limits import ServeLimits
from streamvlm.serve.metrics import ServeMetrics
from streamvlm.serve.scheduler import Scheduler


def scheduler(**limits) -> Scheduler:
    return Scheduler(ServeLimits(**{"queue_frames": 4, "max_sessions": 4, **limits}), ServeMetrics())


def planned(plan) -> list[tuple[int, float | None]]:
    """``(stream number, frame time)`` of each step (the stream number is its position in ``streams``)."""
    return [(step.stream.number, step.frame.time if step.frame else None) for step in plan]


def open_streams(s: Scheduler, count: int, **kwargs):
    streams = [s.open([].append, **kwargs) for _ in range(count)]
    for number, stream in enumerate(streams):
        stream.number = number
    return streams


def test_the_scheduler_imports_without_torch():
    code = "import sys, streamvlm.serve.scheduler; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_every_stream_with_work_steps_once_per_plan():
    """Round robin: a stream with a long queue never holds back the others (one frame each per
    plan, in the order they opened), and streams without work are left out."""
    s = scheduler(queue_frames=8)
    a, b, c = open_streams(s, 3)
    for k in range(6):
        s.submit_frame(a, k * 0.5, b"a")
    s.submit_frame(b, 0.0, b"b")
    assert planned(s.plan()) == [(0, 0.0), (1, 0.0)]  # c has nothing: not planned
    s.submit_frame(c, 0.0, b"c")
    s.submit_frame(b, 0.5, b"b")
    assert planned(s.plan()) == [(0, 0.5), (1, 0.5), (2, 0.0)]
    assert planned(s.plan()) == [(0, 1.0)]
    assert [len(x.frames) for x in (a, b, c)] == [3, 0, 0] and s.queued_frames() == 3


def test_a_full_live_queue_drops_its_oldest_frame_and_counts_it():
    s = scheduler(queue_frames=2)
    (live,) = open_streams(s, 1)
    for k in range(5):
        assert s.submit_frame(live, float(k), b"x") is None
    assert [f.time for f in live.frames] == [3.0, 4.0]
    assert live.dropped == 3 and live.received == 5 and s.metrics.total("frames_dropped") == 3


def test_a_full_lossless_queue_makes_the_sender_wait_until_a_plan_takes_a_frame():
    s = scheduler(queue_frames=1)
    (upload,) = open_streams(s, 1, live=False)
    woken = []
    upload.on_room = lambda: woken.append(True)
    assert s.submit_frame(upload, 0.0, b"x") is None
    sender = threading.Thread(target=s.submit_frame, args=(upload, 0.5, b"y"))
    sender.start()
    time.sleep(0.2)
    assert sender.is_alive() and [f.time for f in upload.frames] == [0.0]  # waiting: nothing dropped
    assert planned(s.plan()) == [(0, 0.0)] and woken  # room made: the waiting sender is woken
    sender.join(5)
    assert not sender.is_alive() and [f.time for f in upload.frames] == [0.5] and upload.dropped == 0


def test_streams_past_the_limit_are_refused_and_a_closed_one_frees_its_place():
    s = scheduler(max_sessions=2)
    first, second = open_streams(s, 2)
    assert s.full and s.open([].append) is None and s.metrics.total("sessions_refused") == 1
    s.submit_frame(second, 0.0, b"x")
    s.close(second)
    assert s.count == 1 and not s.full and second.closed and not second.frames
    assert s.submit_frame(second, 1.0, b"x") == "the stream has ended"
    assert s.open([].append) is not None and planned(s.plan()) == []


def test_times_going_backwards_are_refused():
    s = scheduler()
    (stream,) = open_streams(s, 1)
    assert s.submit_frame(stream, 1.0, b"x") is None
    assert "backwards" in s.submit_frame(stream, 0.5, b"x")


def test_questions_due_at_a_frame_are_capped_even_after_the_last_frame():
    s = scheduler(queue_frames=8)
    (stream,) = open_streams(s, 1)
    for q in range(5):
        s.submit_query(stream, TimedQuery(0.0, f"q{q}"))
    s.submit_query(stream, TimedQuery(5.0, "later"))
    for k in range(2):
        s.submit_frame(stream, k * 0.5, b"x", last=k == 1)
    steps = [s.plan()[0] for _ in range(5)]
    assert [step.frame is not None for step in steps] == [True, True, False, False, False]
    # after the last frame, the questions still due at it: one step each, frameless, not a finish
    assert [[q.text for q in step.questions] for step in steps] == [["q0"], ["q1"], ["q2"], ["q3"], ["q4"]]
    assert not any(step.finish for step in steps)
    (finish,) = s.plan()  # then planned once more, to be finished, with what was never asked
    assert finish.frame is None and finish.finish and [q.text for q in finish.questions] == ["later"]


def test_a_refused_frames_questions_go_back_in_order():
    s = scheduler()
    (stream,) = open_streams(s, 1)
    s.submit_query(stream, TimedQuery(0.0, "first"))
    s.submit_query(stream, TimedQuery(0.2, "second"))
    s.submit_frame(stream, 0.5, b"x")
    (step,) = s.plan()
    assert [q.text for q in step.questions] == ["first"]
    s.requeue(stream, step.questions)
    assert [q.text for q in stream.queries] == ["first", "second"]


def test_theta_is_handed_over_once():
    s = scheduler()
    (stream,) = open_streams(s, 1)
    s.set_threshold(stream, 0.4)
    s.submit_frame(stream, 0.0, b"x")
    s.submit_frame(stream, 0.5, b"x")
    assert [step.threshold for step in (s.plan()[0], s.plan()[0])] == [0.4, None]


def test_next_plan_waits_for_work_and_returns_none_once_stopped():
    s = scheduler()
    (stream,) = open_streams(s, 1)
    assert s.next_plan(timeout=0.05) == []
    plans = []
    waiter = threading.Thread(target=lambda: plans.append(s.next_plan()))
    waiter.start()
    time.sleep(0.1)
    assert waiter.is_alive()  # nothing to do: it waits (no polling of an empty plan)
    s.submit_frame(stream, 0.0, b"x")
    waiter.join(5)
    assert planned(plans[0]) == [(0, 0.0)]
    s.stop()
    assert s.next_plan() is None and stream.closed


@pytest.mark.parametrize("count", [1, 7])
def test_no_stream_waits_more_than_one_plan_behind_another(count):
    """Starvation: over many plans, streams with frames all the time are each stepped once per plan."""
    s = scheduler(queue_frames=64, max_sessions=8)
    streams = open_streams(s, count)
    steps = {stream.number: 0 for stream in streams}
    for k in range(20):
        for stream in streams:
            s.submit_frame(stream, k * 0.5, b"x")
    while plan := s.plan():
        for step in plan:
            steps[step.stream.number] += 1
        assert len(plan) == count
    assert set(steps.values()) == {20}


def test_queue_lag_capacity_readiness_and_drain_in_metrics():
    """What an autoscaler reads moves with the scheduler: the oldest waiting frame's age (0 once it is
    planned), the capacity, readiness at max_sessions and from a drain on (no stream taken then)."""
    import time

    s = scheduler(max_sessions=2)
    value = s.metrics.registry.get_sample_value
    assert value("streamvlm_max_sessions") == 2 and value("streamvlm_ready") == 1
    assert value("streamvlm_queue_lag_seconds") == 0 and value("streamvlm_draining") == 0
    a = s.open(lambda m: None)
    s.submit_frame(a, 0.0, b"x")
    time.sleep(0.05)
    lag = value("streamvlm_queue_lag_seconds")
    assert lag >= 0.05
    time.sleep(0.05)
    assert value("streamvlm_queue_lag_seconds") >= lag + 0.05  # it grows while the frame waits
    s.plan()
    assert value("streamvlm_queue_lag_seconds") == 0
    b = s.open(lambda m: None)
    assert s.full and value("streamvlm_ready") == 0
    s.close(b)
    assert value("streamvlm_ready") == 1
    assert s.drain() == 1
    assert value("streamvlm_ready") == 0 and value("streamvlm_draining") == 1 and s.draining
    assert s.open(lambda m: None) is None and value("streamvlm_sessions_refused_total") == 1
    s.submit_frame(a, 0.5, b"y")  # an open stream goes on while draining
    assert [step.frame.time for step in s.plan()] == [0.5]
