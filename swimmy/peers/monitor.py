"""Peer liveness (SPEC §3): a pure state machine per source, and a thin task that ticks it.

Heartbeat sources come from the network, unauthenticated on loopback, so the table
is bounded. Known peers (`heartbeat.known_peers`, and the workers that hold credit
in the work broker) are never pushed out by unknown sources: only unknown ones
count against `max_peers`, and a new unknown source beyond it takes the place of
the unknown peer heard least recently (counted in `evicted`, never an event per
source: a flood of forged sources must not become a flood of events).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from swimmy.clock import Clock
from swimmy.config import HeartbeatConfig
from swimmy.telemetry.queue import Emit

MAX_PEERS = 1024  # sources come from the network: bound the table
FORGET_FACTOR = 10  # a peer silent for 10 x peer_timeout_sec is forgotten (it left for good)
TICK_SEC = 1.0


@dataclass(frozen=True)
class Transition:
    """A peer went silent or came back; `silent_sec` is how long it had been quiet."""

    kind: str  # "silent" | "recovered" | "forgotten"
    source: str
    silent_sec: float


@dataclass
class _Peer:
    last_heard: float
    silent: bool = False


class PeerTable:
    """Last-heard times per source; transitions only on a change (one silent, then one recovered)."""

    def __init__(self, timeout_sec: float, max_peers: int = MAX_PEERS, *, known: Iterable[str] = (),
                 protected: Callable[[str], bool] | None = None) -> None:
        self.timeout_sec = timeout_sec
        self.max_peers = max_peers
        self.known_peers = frozenset(known)
        self._protected = protected or (lambda source: False)
        self._peers: dict[str, _Peer] = {}
        self._unknown: dict[str, None] = {}  # the unknown sources, least recently heard first
        self.evicted = 0

    def is_protected(self, source: str) -> bool:
        """A configured peer, or a worker the broker holds: never evicted by unknown sources."""
        return source in self.known_peers or self._protected(source)

    def heard(self, source: str, now: float) -> Transition | None:
        """Record a heartbeat; a recovered transition if the peer had been declared silent.

        A new unknown source beyond `max_peers` unknown ones takes the place of the unknown peer heard
        least recently; known peers are neither counted nor evicted.
        """
        peer = self._peers.get(source)
        if source in self._unknown:
            if self.is_protected(source):  # a worker that has since sent READY, or a reload made it known
                del self._unknown[source]
            else:
                self._unknown[source] = self._unknown.pop(source)  # most recently heard: to the end
        if peer is None:
            if not self.is_protected(source):
                self._make_room()
                self._unknown[source] = None
            self._peers[source] = _Peer(now)
            return None
        transition = None
        if peer.silent:
            transition = Transition("recovered", source, round(now - peer.last_heard, 3))
        peer.last_heard = now
        peer.silent = False
        return transition

    def _make_room(self) -> None:
        """Evict the unknown source heard least recently, when the unknown ones are at `max_peers`.

        One that has become protected since it was heard (a worker whose ack came before its READY) is
        not evicted: it just stops counting as unknown.
        """
        while len(self._unknown) >= self.max_peers:
            oldest = next(iter(self._unknown))
            del self._unknown[oldest]
            if self.is_protected(oldest):
                continue
            del self._peers[oldest]
            self.evicted += 1

    def check(self, now: float) -> list[Transition]:
        """Peers that have just passed the timeout without a word, and silent ones gone long enough to forget.

        Forgetting matters: a peer that left for good (a worker restarted under a new id, a finished
        `swimmy peer`) would otherwise count as silent, and make `swimmy status` fail, for ever.
        """
        out = []
        for source, peer in list(self._peers.items()):
            quiet = now - peer.last_heard
            if not peer.silent and quiet > self.timeout_sec:
                peer.silent = True
                out.append(Transition("silent", source, round(quiet, 3)))
            elif peer.silent and quiet > FORGET_FACTOR * self.timeout_sec:
                del self._peers[source]
                self._unknown.pop(source, None)
                out.append(Transition("forgotten", source, round(quiet, 3)))
        return out

    def known(self, source: str) -> bool:
        """Whether the table tracks this source."""
        return source in self._peers

    def ages(self, now: float) -> dict[str, float]:
        """Seconds since each peer was last heard."""
        return {s: round(now - p.last_heard, 3) for s, p in self._peers.items()}

    def silent(self) -> list[str]:
        """Sources currently declared silent."""
        return [s for s, p in self._peers.items() if p.silent]


class PeerMonitor:
    """Emits peer.silent / peer.recovered from the table; the dispatcher feeds `heard`."""

    def update_config(self, cfg: HeartbeatConfig) -> None:
        """A reload: the silence timeout and the peers that are never evicted."""
        self.table.timeout_sec = cfg.peer_timeout_sec
        self.table.known_peers = frozenset(cfg.known_peers)

    def __init__(self, table: PeerTable, emit: Emit, clock: Clock, *,
                 on_progress: Callable[[], None] | None = None,
                 on_transition: Callable[[Transition], None] | None = None) -> None:
        self.table = table
        self._emit = emit
        self._clock = clock
        self._on_progress = on_progress or (lambda: None)
        self._on_transition = on_transition or (lambda t: None)

    def heard(self, source: str) -> None:
        """A peer spoke."""
        transition = self.table.heard(source, self._clock.monotonic())
        if transition is not None:
            self._report(transition)

    def check(self) -> None:
        """Declare the peers that went quiet."""
        for transition in self.table.check(self._clock.monotonic()):
            self._report(transition)

    def _report(self, t: Transition) -> None:
        self._emit(
            f"peer.{t.kind}",
            service="dispatcher",
            severity="warning" if t.kind == "silent" else "info",  # peer.silent / recovered / forgotten
            correlation_id=t.source,
            data={"source": t.source, "silent_sec": t.silent_sec},
        )
        self._on_transition(t)

    async def run(self) -> None:
        """Tick once a second."""
        while True:
            self._on_progress()
            self.check()
            await self._clock.sleep(TICK_SEC)
