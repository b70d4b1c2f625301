"""Test doubles that ship with the product: a fake clock, a capturing emitter, recording senders for the work
ROUTER and the PUB socket, and a stand-in for systemd's notify socket. Imports nothing of swimmy."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson


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


class RecordingRouter:
    """A work ROUTER's send `(identity, payload) -> bool` that records each decoded request; an identity in
    `full` refuses, as a full pipe does."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, Any]]] = []
        self.full: set[bytes] = set()

    def __call__(self, identity: bytes, payload: bytes) -> bool:
        if identity in self.full:
            return False
        self.sent.append((identity, orjson.loads(payload)))
        return True

    def bodies(self) -> list[dict[str, Any]]:
        """Every request sent, in order."""
        return [body for _, body in self.sent]

    def to(self, identity: bytes) -> list[dict[str, Any]]:
        """The requests sent to one worker."""
        return [body for ident, body in self.sent if ident == identity]


class RecordingPub:
    """A PUB socket's send `(frames) -> bool` that records the frames; `accept = False` refuses them."""

    def __init__(self, accept: bool = True) -> None:
        self.frames: list[list[bytes]] = []
        self.accept = accept

    def __call__(self, frames: list[bytes]) -> bool:
        if self.accept:
            self.frames.append(frames)
        return self.accept


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket (`NOTIFY_SOCKET=<path>`).

    The datagrams wait in the kernel until read: `recv` takes the next (waiting up to `timeout_sec`),
    `pending` takes every one waiting now, and `count` reads what is waiting into `messages` first.
    """

    def __init__(self, path: str | os.PathLike[str], timeout_sec: float = 2.0) -> None:
        self.path = str(path)
        self.timeout_sec = timeout_sec
        self.messages: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(timeout_sec)

    def recv(self) -> bytes:
        """The next datagram (socket.timeout when none comes in time)."""
        return self.sock.recv(65536)

    def pending(self) -> list[bytes]:
        """Every datagram waiting now, without waiting for more (also kept, decoded, in `messages`)."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(65536))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(self.timeout_sec)
        self.messages.extend(m.decode(errors="replace") for m in out)
        return out

    def count(self, prefix: str) -> int:
        """How many datagrams so far carry a line starting with `prefix` (e.g. "WATCHDOG=1")."""
        self.pending()
        return sum(1 for m in self.messages if m.startswith(prefix) or f"\n{prefix}" in m)

    def close(self) -> None:
        self.sock.close()
