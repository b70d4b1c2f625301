"""Test doubles that ship with the product: a fake clock and a capturing emitter."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class FakeClock:
    """A Clock whose time moves only by advance(); sleepers due by then are woken."""

    def __init__(self, start: float = 1_800_000_000.0, monotonic_start: float = 1000.0) -> None:
        self._wall = start
        self._mono = monotonic_start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def time(self) -> float:
        """Fake Unix seconds."""
        return self._wall

    def now_utc(self) -> datetime:
        """Fake aware UTC datetime."""
        return datetime.fromtimestamp(self._wall, UTC)

    def monotonic(self) -> float:
        """Fake monotonic seconds."""
        return self._mono

    async def sleep(self, seconds: float) -> None:
        """Wait until advance() moves the clock past now + seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(seconds, 0.0), next(self._ids), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move both clocks forward and wake the sleepers that are due."""
        self._wall += seconds
        self._mono += seconds
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)


@dataclass
class Event:
    """One captured emit call."""

    event_type: str
    service: str
    severity: str
    correlation_id: Any
    data: dict[str, Any] = field(default_factory=dict)


class CapturingEmitter:
    """An `emit` that records calls in memory, for unit tests of services."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(
        self,
        event_type: str,
        *,
        service: str,
        severity: str = "info",
        correlation_id: Any = None,
        data: dict[str, Any] | None = None,
        log_type: str = "telemetry",
    ) -> None:
        """Record the call."""
        self.events.append(Event(event_type, service, severity, correlation_id, dict(data or {})))

    def of_type(self, event_type: str) -> list[Event]:
        """The captured events of one type, in order."""
        return [e for e in self.events if e.event_type == event_type]
