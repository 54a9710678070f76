"""``streamvlm serve``: the live service: WebSocket streams, uploads, a browser app (docs/serve.md)."""

from __future__ import annotations

import os
import sys
from dataclasses import field
from typing import Annotated

from pydantic import Field

from ...engine.options import GenerationConfig, StreamOptions
from ...errors import UserError
from ...model.loading import ModelSource
from ...serve.limits import ServeLimits, check_access
from ...settings import settings


@settings
class Options:
    """Options of ``streamvlm serve``."""

    model: ModelSource = field(default_factory=ModelSource)
    """The model (the same flags as narrate)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decisions and replies (each stream may change its threshold)."""
    stream: StreamOptions = field(default_factory=StreamOptions)
    """Streaming (--fps is what clients are asked to send; --kv-budget bounds each session's cache)."""
    limits: ServeLimits = field(default_factory=ServeLimits)
    """Caps and timeouts."""
    host: str = "127.0.0.1"
    """Address to listen on; anything but a loopback address needs --api-key-env."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    """Port to listen on (0: any free one; the URL printed names it)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key clients must send (header
    'Authorization: Bearer KEY' or 'X-API-Key', or ?key= on the WebSocket URL); a blank, short or
    spaced key is refused (docs/serve.md, Limits)."""

    def __post_init__(self) -> None:
        if self.stream.realtime:
            raise UserError("--realtime: every stream is live already; not an option of serve")
        key = None
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if key is None:
                raise UserError(f"--api-key-env {self.api_key_env}: that environment variable is not set")
        check_access(self.host, key, where=f"--api-key-env {self.api_key_env}")


def run(options: Options) -> int:
    try:
        from ...serve.app import create_app
        from ...serve.server import bind, raise_open_files, serve_forever, url_of
    except ImportError as exc:
        raise UserError(f"streamvlm serve needs the serve extra ({exc.name} is missing): "
                        f"pip install 'streamvlm[serve]'") from None
    from ...model.loading import load_model

    sock = bind(options.host, options.port)  # a taken port fails before the model loads
    short = raise_open_files(options.limits.max_connections)
    if short:
        print(f"streamvlm serve: {short}", file=sys.stderr, flush=True)
    model = load_model(options.model)
    key = os.environ[options.api_key_env] if options.api_key_env else None
    note = None
    if options.model.model is None:  # the embedded model: clients and the console hear what it knows
        from ...data.synth.marker import EMBEDDED_MODEL_NOTE

        note = EMBEDDED_MODEL_NOTE
        print(f"streamvlm serve: {note}", file=sys.stderr, flush=True)
    app = create_app(model, generation=options.generation, stream=options.stream, limits=options.limits,
                     api_key=key, note=note)
    print(f"streamvlm serve: open {url_of(sock)}/ (WebSocket {url_of(sock).replace('http', 'ws', 1)}/v1/stream)"
          f"{'; clients must send the API key' if key else ''}", flush=True)
    try:
        serve_forever(app, sock, say=lambda line: print(f"streamvlm serve: {line}", file=sys.stderr, flush=True))
    finally:
        sock.close()
    print("streamvlm serve: stopped", file=sys.stderr, flush=True)
    return 0
