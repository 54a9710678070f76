"""The server's log: one line per event, and at most one line per interval for events a client can
repeat at will (refused connections, accept errors, dropped uploads), so no client floods it."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("streamvlm.serve")


class Throttled:
    """A warning logged at most once per ``interval`` seconds; the next line counts those held back."""

    def __init__(self, interval: float = 10.0, logger: logging.Logger = log) -> None:
        self.interval = interval
        self.logger = logger
        self._last = -float("inf")
        self._held = 0
        self._lock = threading.Lock()

    def warning(self, message: str) -> bool:
        """Log ``message`` unless a line went out less than ``interval`` seconds ago; True if logged."""
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                self._held += 1
                return False
            held, self._held, self._last = self._held, 0, now
        self.logger.warning("%s%s", message, f" ({held} more like it held back since the last one)"
                            if held else "")
        return True
