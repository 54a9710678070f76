"""``streamvlm serve``: the live service (FastAPI + uvicorn, the ``serve`` extra).

* :mod:`.protocol`: the versioned WebSocket / HTTP message schema (pydantic models);
* :mod:`.limits`: the caps and timeouts (a settings dataclass, flags of ``streamvlm serve``);
* :mod:`.images`: frame bytes -> RGB, with the pixel cap checked on the header before decoding;
* :mod:`.scheduler`: which streams step next, from their states and queues alone (no model);
* :mod:`.model_runner`: the one thread that owns the model and runs the scheduler's plans
  (images decoded on a pool, frames encoded, the batched step);
* :mod:`.app`: the FastAPI application (``/v1/stream``, ``/v1/narrate``, health, metrics, the app);
* :mod:`.server`: run it with uvicorn (blocking, or in a background thread for tests and bench).

Only :mod:`.protocol` and :mod:`.limits` import without the ``serve`` extra; :mod:`.scheduler`
needs only its prometheus_client (no model, no torch).
"""
