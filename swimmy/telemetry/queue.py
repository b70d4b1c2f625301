"""The bounded event queue and `emit` (SPEC §2.2).

`emit` never raises, never blocks and never awaits: it captures the time and
the arguments in a tuple, gives it the next `seq` and appends it. A full or
closed queue drops the event and counts it per event type; dropped events take
no `seq`, so a gap in a file always means an accepted event was lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from swimmy.telemetry.envelope import Record

_get_ident = threading.get_ident


class Emit(Protocol):
    """The signature every service receives to record an event."""

    def __call__(
        self,
        event_type: str,
        *,
        service: str,
        severity: str = "info",
        correlation_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None: ...


class EventQueue:
    """Bounded FIFO of Records with counted drops; one consumer (the writer) on the loop."""

    def __init__(self, maxsize: int, *, time_fn: Callable[[], float] = time.time) -> None:
        self.maxsize = maxsize
        self._items: deque[Record] = deque()
        self._time = time_fn
        self._seq = 0
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = threading.get_ident()
        self.drops: Counter[str] = Counter()  # since the last telemetry.dropped report
        self.drops_by_type: Counter[str] = Counter()  # since start
        self.dropped_total = 0
        self.dropped_after_close = 0
        self.internal_errors = 0
        # event_type -> callbacks run at acceptance (Discord alerts must not wait for the writer)
        self._listeners: dict[str, list[Callable[[str, str, Any, Any], None]]] = {}

    # -- producer side -----------------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the loop (and its thread) that owns the queue; emits from other threads hop onto it."""
        self._loop = loop
        self._thread_id = threading.get_ident()

    def emit(
        self,
        event_type: str,
        *,
        service: str,
        severity: str = "info",
        correlation_id: Any = None,
        data: Any = None,
        log_type: str = "telemetry",
    ) -> None:
        """Accept an event or count its drop. Takes ownership of `data`: don't mutate it afterwards."""
        try:
            t = self._time()
            if _get_ident() != self._thread_id:
                self._emit_from_thread(t, log_type, event_type, service, severity, correlation_id, data)
                return
            # The common path is inlined (no call to _accept): emit's budget is about a microsecond.
            if self._closed or len(self._items) >= self.maxsize:
                self._count_drop(event_type)
                return
            self._seq += 1
            self._items.append((self._seq, t, log_type, event_type, service, severity, correlation_id, data))
            if self._waiter is not None:
                self._wake()
            if event_type in self._listeners:
                self._notify(event_type, severity, correlation_id, data)
        except Exception:  # noqa: BLE001 - emit must never raise into its caller
            self.internal_errors += 1

    def listen(self, event_types: Iterable[str], callback: Callable[[str, str, Any, Any], None]) -> None:
        """Call `callback(event_type, severity, correlation_id, data)` when one of these is accepted."""
        for event_type in event_types:
            self._listeners.setdefault(event_type, []).append(callback)

    def announce(self, event_type: str, severity: str, correlation_id: Any, data: Any) -> None:
        """Tell the listeners about a line the writer made itself (it never passes through the queue)."""
        if event_type in self._listeners:
            self._notify(event_type, severity, correlation_id, data)

    def _notify(self, event_type: str, severity: str, correlation_id: Any, data: Any) -> None:
        for callback in self._listeners.get(event_type, ()):
            try:
                callback(event_type, severity, correlation_id, data)
            except Exception:  # noqa: BLE001 - a listener's bug must not cost the caller its emit
                self.internal_errors += 1

    def _count_drop(self, event_type: str) -> None:
        self.dropped_total += 1
        if self._closed:
            self.dropped_after_close += 1
        else:
            self.drops[event_type] += 1

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _accept(
        self, t: float, log_type: str, event_type: str, service: str, severity: str, cid: Any, data: Any
    ) -> None:
        """The loop-side half of an emit made on another thread."""
        if self._closed or len(self._items) >= self.maxsize:
            self._count_drop(event_type)
            return
        self._seq += 1
        self._items.append((self._seq, t, log_type, event_type, service, severity, cid, data))
        if self._waiter is not None:
            self._wake()
        if event_type in self._listeners:
            self._notify(event_type, severity, cid, data)

    def _emit_from_thread(
        self, t: float, log_type: str, event_type: str, service: str, severity: str, cid: Any, data: Any
    ) -> None:
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._accept, t, log_type, event_type, service, severity, cid, data)
            except RuntimeError:  # the loop closed: the event cannot be accepted any more
                pass
            else:
                return
        self.dropped_after_close += 1
        self.dropped_total += 1

    # -- consumer side -----------------------------------------------------------------------

    def next_seq(self) -> int:
        """A seq for a line the writer makes itself (telemetry.rotated, telemetry.recovered)."""
        self._seq += 1
        return self._seq

    @property
    def seq(self) -> int:
        """The last seq given."""
        return self._seq

    def take(self, limit: int) -> list[Record]:
        """Up to `limit` records, oldest first."""
        items = self._items
        n = min(limit, len(items))
        if n == len(items):
            batch = list(items)
            items.clear()
            return batch
        return [items.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._items)

    async def wait(self, max_wait_sec: float) -> None:
        """Wait until something is queued, the queue closes, or `max_wait_sec` passes."""
        if self._items or self._closed:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        handle = loop.call_later(max_wait_sec, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            if self._waiter is waiter:
                self._waiter = None

    def take_drops(self) -> Counter[str]:
        """The drop counts since the last call, reset (and added to the totals)."""
        drops, self.drops = self.drops, Counter()
        self.drops_by_type.update(drops)
        return drops

    def close(self) -> None:
        """Accept nothing more; the consumer drains what is queued."""
        self._closed = True
        self._wake()

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
