"""A real server (uvicorn on 127.0.0.1, an ephemeral port) over the tiny checkpoint."""

from __future__ import annotations

import pytest

from tests.cli.conftest import cli, short_clip, tiny_checkpoint  # noqa: F401 (fixtures)

LIMITS = dict(max_sessions=4, queue_frames=4, max_message_bytes=256 * 1024, max_image_pixels=1_000_000,
              max_query_chars=200, max_upload_bytes=2 * 2**20, idle_timeout=2.0, write_timeout=5.0,
              stats_interval=0.5)
KEY = "test-key-0123456789"


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):  # noqa: F811
    from streamvlm.model.loading import ModelSource, load_model

    return load_model(ModelSource(model=str(tiny_checkpoint), device="cpu"))


def _server(model, api_key=None, send_buffer=None, generation=None, note=None, **limits):
    from streamvlm.serve.app import create_app
    from streamvlm.serve.limits import ServeLimits
    from streamvlm.serve.server import BackgroundServer

    lim = ServeLimits(**{**LIMITS, **limits})
    return BackgroundServer(create_app(model, generation=generation, limits=lim, api_key=api_key, note=note),
                            send_buffer=send_buffer)


@pytest.fixture(scope="session")
def server(tiny_model):
    with _server(tiny_model) as running:
        yield running


@pytest.fixture(scope="session")
def keyed_server(tiny_model):
    with _server(tiny_model, api_key=KEY) as running:
        yield running


NOTE = "note: this model knows only the synthetic world"


@pytest.fixture(scope="session")
def noted_server(tiny_model):
    """A server whose session messages carry a note about its model (as the embedded model's do)."""
    with _server(tiny_model, note=NOTE) as running:
        yield running
