"""Live sources: missing webcams, stalled network streams and pipes end in VideoError after the
read timeout, never a hang; a working stream is read through the background thread."""

import functools
import http.server
import os
import socket
import threading
import time

import pytest

from streamvlm.errors import VideoError
from streamvlm.video import open_source


def test_missing_webcam_fails_quickly():
    for name in ["/dev/video99", "webcam:99"]:
        start = time.monotonic()
        with pytest.raises(VideoError, match="no such webcam device"):
            open_source(name, fps=2)
        assert time.monotonic() - start < 1.0


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/stream.mp4"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_stalled_url_times_out(silent_server):
    start = time.monotonic()
    with pytest.raises(VideoError, match="127.0.0.1"):
        open_source(silent_server, fps=2, read_timeout=0.5)
    assert time.monotonic() - start < 3.0


def test_pipe_without_writer_times_out(tmp_path):
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(VideoError, match="no response within 0.5 s"):
        open_source(fifo, fps=2, read_timeout=0.5)
    assert time.monotonic() - start < 2.0
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # lets the abandoned reader finish


def test_pipe_that_stalls_mid_stream_times_out(tmp_path, make_video):
    data = make_video("v.mkv", [i / 25 for i in range(100)]).read_bytes()
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    writer_done = threading.Event()

    def feed():  # half the stream, then silence with the pipe kept open
        with open(fifo, "wb") as pipe:
            pipe.write(data[: len(data) // 2])
            pipe.flush()
            writer_done.wait(10)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    frames = []

    def read_until_stalled():
        with open_source(fifo, fps=5, read_timeout=0.7) as src:
            assert src.kind == "file"
            for frame in src:
                frames.append(frame)

    start = time.monotonic()
    try:
        with pytest.raises(VideoError, match="stalled"):
            read_until_stalled()
        assert time.monotonic() - start < 4.0
    finally:
        writer_done.set()
        writer.join()
    assert len(frames) >= 3
    assert all(b.time > a.time for a, b in zip(frames, frames[1:]))


@pytest.fixture
def http_server(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_video_is_read_through_the_thread(http_server, make_video):
    make_video("served.mp4", [i / 20 for i in range(40)], rate=20)
    with open_source(f"{http_server}/served.mp4", fps=2, read_timeout=2.0) as src:
        assert src.kind == "url" and src.duration == pytest.approx(2.0, abs=0.06)
        frames = list(src)
    assert [f.time for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert src.stats.dropped == 0


def test_slow_caller_of_a_live_source_gets_fresh_frames_and_drops_are_counted():
    from streamvlm.video.frames import DecodeStats
    from streamvlm.video.live import LiveReader

    stats = DecodeStats()

    def work(reader):
        reader.set_info("header")
        for i in range(20):
            assert reader.put(i, drop_oldest=True)

    reader = LiveReader("fake", work, stats, maxsize=4)
    assert reader.wait_info(1.0) == "header"
    time.sleep(0.3)  # the caller falls behind; the reader keeps only the newest items
    items = []
    while (item := reader.get(1.0)) is not None:
        items.append(item)
    assert items == [16, 17, 18, 19] and stats.dropped == 16
