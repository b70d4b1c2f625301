"""Progress of long-lived tasks: each beats at least once a second, idle or not (SPEC §7)."""

from __future__ import annotations

import time
from collections.abc import Callable

STALE_AFTER_SEC = 5.0


class Progress:
    """Last-beat times per task name; a task that stops beating is reported stale."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._beats: dict[str, float] = {}

    def beat(self, name: str) -> None:
        """Record that `name` went round its loop."""
        self._beats[name] = self._monotonic()

    def beater(self, name: str) -> Callable[[], None]:
        """A zero-argument callable that beats for `name`."""
        return lambda: self.beat(name)

    def forget(self, name: str) -> None:
        """Stop tracking a task that ended on purpose."""
        self._beats.pop(name, None)

    def stale(self, max_age_sec: float = STALE_AFTER_SEC) -> dict[str, float]:
        """Tasks whose last beat is older than `max_age_sec`, with their age in seconds."""
        now = self._monotonic()
        return {name: round(now - t, 3) for name, t in self._beats.items() if now - t > max_age_sec}
