"""The broker's tables (SPEC §4): requests, their queues and the worker table; dispatch by credit, and loss.

`BacktestClient` (swimmy/backtest/client.py) speaks the work protocol on top of this: it submits, handles
READY, BUSY and results, and judges liveness and timeouts. Here a request waits in the queue of its priority
and universe until the worker with the most free credit whose data for that universe has the daemon's hash
takes it; when a worker is lost, the requests it held go back to the front of the queue
(`backtest.requeued`), and one that `max_attempts` workers died holding is poison (`backtest.quarantined`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swimmy.clock import Clock
from swimmy.telemetry.queue import Emit
from swimmy.wire.messages import BacktestResultMsg

HIGH, LOW = 0, 1  # queue priorities: qualification and manual work first, then the IS search


@dataclass(frozen=True)
class Outcome:
    """How a request ended: ok / error (the worker's answer), timeout, or quarantined (it kept killing workers)."""

    request_id: str
    purpose: str
    strategy: str
    status: str
    metrics: dict[str, float | int | None] | None = None
    error: str | None = None
    result: BacktestResultMsg | None = None
    attempts: int = 1


@dataclass
class _Request:
    request_id: str
    payload: bytes
    purpose: str
    strategy: str
    universe: str
    on_done: Callable[[Outcome], None] | None
    deadline: float
    attempts: int = 1  # 2 after the timeout resend
    deaths: int = 0  # workers that died holding it
    worker: bytes | None = None  # the identity holding it now; None while queued
    queued: bool = False
    recovered: bool = False  # re-queued at start-up: a worker of the earlier run may still be running it
    data_hash: str | None = None  # the data it must be answered on


@dataclass
class _Worker:
    identity: bytes
    worker_id: str
    credit: int
    data: dict[str, str]
    last_seen: float
    last_beat: float  # BUSY, a result, or READY while holding nothing
    # request_id -> None, in the order they were sent: the worker runs them in that order, so the first one
    # is the one running (the one a death is blamed on); the rest were only waiting in the worker.
    held: dict[str, None] = field(default_factory=dict)
    mismatch_reported: set[tuple[str, str]] = field(default_factory=set)

    @property
    def free(self) -> int:
        return self.credit - len(self.held)


class WorkQueue:
    """The requests, their queues and the worker table of the broker; `BacktestClient` is the whole broker."""

    def __init__(self, send: Callable[[bytes, bytes], bool], emit: Emit, clock: Clock, *, max_attempts: int = 3,
                 universe_hash: Callable[[str], str | None] | None = None) -> None:
        self._send = send
        self._emit = emit
        self._clock = clock
        self.max_attempts = max_attempts
        self._universe_hash = universe_hash or (lambda universe: None)
        self._requests: dict[str, _Request] = {}
        self._queues: dict[tuple[int, str], deque[str]] = {}
        self._workers: dict[bytes, _Worker] = {}
        self.requeued = 0
        self.quarantined = 0
        self.workers_lost = 0

    # -- figures -----------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Requests submitted and not yet answered or timed out (queued or held by a worker)."""
        return len(self._requests)

    def queued(self, purpose: str | None = None) -> int:
        """Requests waiting in the queue (of one purpose, when given)."""
        return sum(1 for r in self._requests.values() if r.queued and (purpose is None or r.purpose == purpose))

    def workers(self) -> list[dict[str, Any]]:
        """The worker table, for status and metrics."""
        now = self._clock.monotonic()
        return [{"worker": w.worker_id, "credit": w.credit, "held": len(w.held),
                 "silent_sec": round(now - w.last_seen, 3), "data": dict(w.data)} for w in self._workers.values()]

    def live_workers(self) -> int:
        """Workers that have sent READY and are not (yet) declared dead."""
        return len(self._workers)

    def holds_worker(self, source: str) -> bool:
        """Whether a heartbeat source (`worker-<id>`) is a live worker of the broker's table."""
        if not source.startswith("worker-"):
            return False
        worker_id = source[len("worker-"):]
        return any(w.worker_id == worker_id for w in self._workers.values())

    def free_credit(self, universe: str | None = None) -> int:
        """Free credit of the workers that can serve `universe` (all of them when None), minus what is queued.

        The school keeps this at zero with IS work: as many requests in the pipe as the workers may hold.
        """
        want = self._universe_hash(universe) if universe is not None else None
        free = sum(max(0, w.free) for w in self._workers.values()
                   if universe is None or (want is not None and w.data.get(universe) == want))
        queued = sum(len(q) for (_, u), q in self._queues.items() if universe is None or u == universe)
        return max(0, free - queued)

    def can_serve(self, universe: str) -> bool:
        """A live worker has this universe's data with our hash."""
        want = self._universe_hash(universe)
        return want is not None and any(w.data.get(universe) == want for w in self._workers.values())

    def is_inflight(self, request_id: str) -> bool:
        """Whether this request is still waiting for its answer."""
        return request_id in self._requests

    # -- dispatch ----------------------------------------------------------------------------

    def _enqueue(self, req: _Request, *, front: bool = False) -> None:
        req.worker = None
        req.queued = True
        queue = self._queues.setdefault((LOW if req.purpose == "is" else HIGH, req.universe), deque())
        if front:
            queue.appendleft(req.request_id)
        else:
            queue.append(req.request_id)

    def pump(self) -> None:
        """Hand queued requests to workers with free credit, qualification work first."""
        if not self._workers:
            return
        for priority in (HIGH, LOW):
            for (p, universe), queue in list(self._queues.items()):
                if p != priority or not queue:
                    continue
                want = self._universe_hash(universe)
                while queue:
                    worker = self._pick(universe, want)
                    if worker is None:
                        break
                    req = self._requests.get(queue[0])
                    if req is None or not req.queued:
                        queue.popleft()  # answered or re-routed meanwhile
                        continue
                    if not self._deliver(worker, req):
                        break
                    queue.popleft()

    def _pick(self, universe: str, want: str | None) -> _Worker | None:
        best: _Worker | None = None
        for w in self._workers.values():
            if w.free > 0 and want is not None and w.data.get(universe) == want and (
                    best is None or w.free > best.free):
                best = w
        return best

    def _deliver(self, worker: _Worker, req: _Request) -> bool:
        try:
            ok = self._send(worker.identity, req.payload)
        except Exception as exc:  # noqa: BLE001 - unroutable (the peer is gone): that worker is lost
            self._lose(worker, f"send failed: {exc}")
            return False
        if not ok:
            return False  # its pipe is full: try again on the next pump
        req.queued = False
        req.worker = worker.identity
        worker.held[req.request_id] = None
        if len(worker.held) == 1:
            worker.last_beat = self._clock.monotonic()  # BUSY beats are due from now on
        return True

    # -- loss, requeue, quarantine -----------------------------------------------------------

    def _lose(self, worker: _Worker, reason: str) -> None:
        """A dead worker: out of the table, and every request it held back to the front of the queue."""
        if self._workers.pop(worker.identity, None) is None:
            return
        self.workers_lost += 1
        self._emit("worker.lost", service="engine", severity="warning", correlation_id=worker.worker_id,
                   data={"worker": worker.worker_id, "reason": reason, "held": len(worker.held)})
        for position, request_id in enumerate(worker.held):
            req = self._requests.get(request_id)
            if req is not None and req.worker == worker.identity:
                # Only the request it was running (the oldest it held) may have killed it; the others waited.
                self._requeue(req, worker.worker_id, f"worker {worker.worker_id} lost: {reason}",
                              count_death=position == 0)
        worker.held.clear()
        self.pump()

    def _requeue(self, req: _Request, worker: str | None, reason: str, *, count_death: bool) -> None:
        if count_death:
            req.deaths += 1
        data = {"request_id": req.request_id, "strategy": req.strategy, "purpose": req.purpose, "worker": worker,
                "attempts": req.deaths, "reason": reason}
        if count_death and req.deaths >= self.max_attempts:
            del self._requests[req.request_id]
            req.worker = None
            req.queued = False
            self.quarantined += 1
            self._emit("backtest.quarantined", service="school", severity="error", correlation_id=req.request_id,
                       data={**data, "max_attempts": self.max_attempts})
            self._finish(req, Outcome(req.request_id, req.purpose, req.strategy, "quarantined",
                                      error=f"quarantined: {req.deaths} workers died holding it ({reason})",
                                      attempts=req.deaths))
            return
        self.requeued += 1
        self._emit("backtest.requeued", service="school", severity="warning", correlation_id=req.request_id,
                   data=data)
        self._enqueue(req, front=True)

    def _finish(self, req: _Request, outcome: Outcome) -> None:
        if req.on_done is not None:
            req.on_done(outcome)
