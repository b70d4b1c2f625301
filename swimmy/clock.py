"""Time, injected: services take a Clock so tests can move time without sleeping."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time for records, monotonic time for intervals, and a sleep that honours both."""

    def time(self) -> float:
        """Unix seconds (wall clock)."""
        ...

    def now_utc(self) -> datetime:
        """An aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Unix seconds."""
        return time.time()

    def now_utc(self) -> datetime:
        """An aware UTC datetime."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep."""
        await asyncio.sleep(seconds)
