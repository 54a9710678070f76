"""The browser app at / in a real headless Chromium, its camera fed from a Y4M clip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from .conftest import NOTE  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def write_y4m(clip: Path, out: Path, seconds: float = 6.0) -> Path:
    """The clip's frames as a raw YUV4MPEG file (what Chromium's fake camera plays, looped)."""
    import av

    with av.open(str(clip)) as source, av.open(str(out), "w", format="yuv4mpegpipe") as sink:
        stream = source.streams.video[0]
        rate = int(round(float(stream.average_rate or 8)))
        video = sink.add_stream("rawvideo", rate=rate)
        video.width, video.height, video.pix_fmt = stream.width, stream.height, "yuv420p"
        for frame in source.decode(stream):
            if frame.time is not None and frame.time > seconds:
                break
            for packet in video.encode(frame.reformat(format="yuv420p")):
                sink.mux(packet)
        for packet in video.encode(None):
            sink.mux(packet)
    return out


SCREENSHOT = os.environ.get("STREAMVLM_APP_SCREENSHOT")
"""Where to save the screenshot; set, the app runs the embedded default model (docs/serve.md's
figure: ``STREAMVLM_APP_SCREENSHOT=docs/images/serve-app.png python -m pytest tests/serve/test_browser.py``)."""


@pytest.fixture(scope="module")
def app_server(request):
    """The noted tiny server, or for the docs' screenshot the embedded model with its note."""
    if not SCREENSHOT:
        yield request.getfixturevalue("noted_server"), NOTE
        return
    from streamvlm.data.synth.marker import EMBEDDED_MODEL_NOTE
    from streamvlm.model.default import load_default_model

    from .conftest import _server

    with _server(load_default_model(), note=EMBEDDED_MODEL_NOTE) as running:
        yield running, EMBEDDED_MODEL_NOTE


def test_browser_app_captions_and_question(app_server, short_clip, tmp_path):
    server, note = app_server
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    y4m = write_y4m(short_clip, tmp_path / "camera.y4m")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(server.url + "/")
            assert page.is_hidden("#note")  # nothing said before the server speaks
            page.click("#camera")
            page.wait_for_function("!document.querySelector('#note').hidden", timeout=30_000)
            assert page.text_content("#note") == note  # the server's note about its model, shown once
            page.wait_for_function("document.querySelector('#transcript li.assistant') !== null", timeout=60_000)
            page.wait_for_function("document.querySelector('#caption').textContent.trim().length > 0",
                                   timeout=30_000)
            page.fill("#question", "What am I doing right now?")
            page.click("#send")
            page.wait_for_function(
                """() => { const items = [...document.querySelectorAll('#transcript li')];
                           const asked = items.findIndex(li => li.classList.contains('user')
                                                         && li.textContent.includes('What am I doing right now?'));
                           return asked >= 0
                                  && items.slice(asked + 1).some(li => li.classList.contains('assistant')); }""",
                timeout=60_000)
            page.wait_for_function("!document.querySelector('#stats').textContent.includes('frames/s -')",
                                   timeout=30_000)  # the live stats arrived
            if SCREENSHOT:  # the docs' figure: a few narrations after the answer
                page.wait_for_timeout(4_000)
            shot = Path(SCREENSHOT or tmp_path / "app.png")
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 1000
            page.click("#stop")
        finally:
            browser.close()
