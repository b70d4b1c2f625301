"""The daemon's side of the work protocol (SPEC §4): a load-balancing broker with Paranoid-Pirate liveness.

The ZeroMQ guide's load-balancing broker, with credit: each worker's DEALER
announces itself with READY (`credit` = how many requests it may hold, `data` =
the hash of each universe's file it has); the daemon's ROUTER sends a BACKTEST
only to a worker with free credit whose data for that universe has the daemon's
hash, and records which worker holds which request_id. A result returns the
credit. A worker beats BUSY from the thread that runs the backtest while it holds
work, and READY while idle; a worker silent for `backtest.worker_timeout_sec` (or
holding work without a BUSY for that long) is dead, and its requests go back to
the front of the queue at once (`backtest.requeued`). A request whose worker died
`backtest.max_attempts` times is poison (`backtest.quarantined`): its owner hears
`quarantined` and it is never sent again.

Results are routed by `request_id`, never by name. A request unanswered after
`backtest.timeout_sec` is re-queued once with the same request_id; after the second
timeout it is `backtest.timeout` and its owner hears `timeout`. A result answered
after its timeout still goes to its owner (marked `late`), who decides what it is
worth; a duplicate is ignored. A `data mismatch` error is a lost request, never the
strategy's fault: re-queued, and that worker gets no more of that universe until a
READY says its data matches again.

Priorities: OOS, walk-forward and manual requests go before IS requests, so the
school's search slows down by itself when qualification work is waiting. The
queues, the worker table, dispatch by credit and requeue or quarantine of a lost
worker's requests are swimmy/backtest/workqueue.py.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from swimmy.backtest.workqueue import Outcome as Outcome  # re-exported: the school imports it from here
from swimmy.backtest.workqueue import WorkQueue, _Request, _Worker
from swimmy.clock import Clock
from swimmy.config import Config
from swimmy.telemetry.queue import Emit
from swimmy.wire.messages import (
    BacktestResultMsg,
    Message,
    Rejected,
    backtest_body,
    encode_work,
    parse_backtest_result,
    parse_busy,
    parse_ready,
)

TICK_SEC = 0.2  # liveness checks; request timeouts are checked every tick too (a dict walk)
MAX_INFLIGHT = 10_000  # a bound on queued + held requests; past it, submit refuses (the caller's error path)
MAX_WORKERS = 1024  # a bound on the worker table; READY from more is refused
INCOMPATIBLE_AFTER_SEC = 10.0  # a heartbeat peer named worker-* that sends no READY this long is an old v1 worker
DATA_MISMATCH = "data mismatch"


def universe_of(strategy: dict[str, Any]) -> str:
    """`<SYMBOL>_<TF>` of a wire strategy object."""
    return f"{strategy.get('symbol')}_{strategy.get('timeframe')}"


class BacktestClient(WorkQueue):
    """Queues BACKTEST requests, hands them to workers by credit, and matches their results."""

    def __init__(self, send: Callable[[bytes, bytes], bool], emit: Emit, clock: Clock, *, timeout_sec: float,
                 worker_timeout_sec: float = 5.0, max_attempts: int = 3,
                 universe_hash: Callable[[str], str | None] | None = None,
                 costs_for: Callable[[str], dict[str, float]] | None = None,
                 on_progress: Callable[[], None] | None = None, debug_events: bool = False,
                 universes: tuple[str, ...] = ()) -> None:
        super().__init__(send, emit, clock, max_attempts=max_attempts, universe_hash=universe_hash)
        self.timeout_sec = timeout_sec
        self.worker_timeout_sec = worker_timeout_sec
        self._costs_for = costs_for or (lambda symbol: {"spread_pips": 0.0, "slippage_pips": 0.0, "pip": 0.0001})
        self._on_progress = on_progress or (lambda: None)
        self.debug_events = debug_events  # IS backtest.completed is debug: written only at log_level debug
        self.universes = universes  # the configured universes (what a READY's data is checked against)
        self.on_credit: Callable[[], None] = lambda: None  # the school tops up its IS work when credit frees
        self._peers_first_heard: dict[str, float] = {}
        self._incompatible_reported: set[str] = set()
        self._ever_ready: set[str] = set()  # `worker-<id>` of every worker that has sent READY (bounded below)
        # Requests that timed out, so a late answer still reaches its owner (who judges it: the OOS
        # requester takes the latest request's result and calls anything older stale). Bounded.
        self._timed_out: OrderedDict[str, _Request] = OrderedDict()
        self.sent = 0
        self.refused = 0
        self.completed = 0
        self.timeouts = 0
        self.resends = 0
        self.ignored = 0

    # -- submitting --------------------------------------------------------------------------

    def submit(self, purpose: str, strategy: dict[str, Any], *, start_ts: int | None, end_ts: int | None,
               include_trades: bool = False, on_done: Callable[[Outcome], None] | None = None,
               request_id: str | None = None, debug: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None, recover: bool = False) -> str | None:
        """Queue a request; its request_id, or None when refused.

        Refused: the universe has no data here, no live worker has its data (unless `recover`: a request
        of an earlier run, re-queued at start-up before the workers are back), or the queue is full.
        """
        universe = universe_of(strategy)
        data_hash = self._universe_hash(universe)
        if data_hash is None or len(self._requests) >= MAX_INFLIGHT or (not recover and not self.can_serve(universe)):
            self.refused += 1
            return None
        request_id = request_id or str(uuid.uuid4())
        if request_id in self._requests:
            return request_id  # already queued or held (a recovered request submitted twice)
        body = backtest_body(request_id=request_id, purpose=purpose, strategy=strategy, start_ts=start_ts,
                             end_ts=end_ts, include_trades=include_trades, data_hash=data_hash,
                             costs=self._costs_for(str(strategy.get("symbol"))))
        if debug:
            body["debug"] = debug
        if extra:
            body.update(extra)
        req = _Request(request_id, encode_work(body), purpose, str(strategy.get("name", "")), universe, on_done,
                       self._clock.monotonic() + self.timeout_sec, recovered=recover, data_hash=data_hash)
        self._requests[request_id] = req
        self.sent += 1
        self._enqueue(req)
        self.pump()
        return request_id

    # -- restart recovery ---------------------------------------------------------------------

    def adopt(self, request_id: str, purpose: str, strategy: str, on_done: Callable[[Outcome], None]) -> None:
        """Track a request of an earlier run whose body can't be rebuilt, so its late result is accepted.

        Prefer `submit(..., request_id=..., recover=True)`, which re-sends it; this only waits one
        `timeout_sec` for an answer from a worker that may still hold it.
        """
        req = _Request(request_id, b"", purpose, strategy, "", on_done, self._clock.monotonic() + self.timeout_sec,
                       attempts=2)
        self._requests[request_id] = req

    # -- inbound -----------------------------------------------------------------------------

    def handle_ready(self, identity: bytes, msg: Message) -> Rejected | None:
        """READY: a worker (re)announces its credit and data; a new one joins the table."""
        ready = parse_ready(msg)
        if isinstance(ready, Rejected):
            return ready
        now = self._clock.monotonic()
        worker = self._workers.get(identity)
        if worker is None:
            for other in list(self._workers.values()):
                if other.worker_id == ready.worker:  # the same worker on a new connection: it restarted
                    self._lose(other, "reconnected under a new connection (restarted)")
            if len(self._workers) >= MAX_WORKERS:
                return Rejected("worker_table_full", msg.size, msg.type, None, detail=ready.worker)
            worker = _Worker(identity, ready.worker, ready.credit, ready.data, now, now)
            self._workers[identity] = worker
            if len(self._ever_ready) < MAX_WORKERS * 4:
                self._ever_ready.add(f"worker-{ready.worker}")
            self._emit("worker.ready", service="engine", correlation_id=ready.worker,
                       data={"worker": ready.worker, "credit": ready.credit, "data": ready.data})
        worker.credit = ready.credit
        worker.data = dict(ready.data)
        worker.last_seen = now
        if not worker.held:
            worker.last_beat = now
        self._check_data(worker)
        self.pump()
        self.on_credit()
        return None

    def _check_data(self, worker: _Worker) -> None:
        """One `worker.data_mismatch` per worker, universe and hash of theirs that differs from ours."""
        for universe in self._known_universes():
            ours = self._universe_hash(universe)
            theirs = worker.data.get(universe)
            if ours is None or theirs == ours:
                continue
            key = (universe, theirs or "")
            if key in worker.mismatch_reported:
                continue
            worker.mismatch_reported.add(key)
            self._emit("worker.data_mismatch", service="engine", severity="warning", correlation_id=worker.worker_id,
                       data={"worker": worker.worker_id, "universe": universe, "data_hash": ours, "theirs": theirs})

    def _known_universes(self) -> set[str]:
        return {u for (_, u) in self._queues} | set(self.universes)

    def handle_busy(self, identity: bytes, msg: Message) -> Rejected | None:
        """BUSY: the worker's backtest thread is alive; a request it holds from an earlier run is claimed."""
        busy = parse_busy(msg)
        if isinstance(busy, Rejected):
            return busy
        now = self._clock.monotonic()
        req = self._requests.get(busy.request_id or "")
        # Only a request re-queued at start-up can be claimed: a worker of the earlier run still runs it. A late
        # beat of a worker already declared lost claims nothing (its result is still taken by request_id).
        claim = req is not None and req.queued and req.recovered
        worker = self._workers.get(identity)
        if worker is None:
            if not claim:
                return None  # not READY yet, or declared dead
            # It joins the table holding that one request, with no data (no more work) until its READY.
            worker = _Worker(identity, busy.worker, 1, {}, now, now)
            self._workers[identity] = worker
        worker.last_seen = worker.last_beat = now
        if claim and req is not None:
            req.queued = False
            req.recovered = False
            req.worker = identity
            worker.held[req.request_id] = None
        return None

    def handle_result(self, identity: bytes, msg: Message) -> Rejected | None:
        """BACKTEST_RESULT: the credit comes back; the answer goes to the request's owner."""
        result = parse_backtest_result(msg)
        if isinstance(result, Rejected):
            return result
        now = self._clock.monotonic()
        worker = self._workers.get(identity)
        if worker is not None:
            worker.held.pop(result.request_id, None)
            worker.last_seen = worker.last_beat = now
        req = self._requests.get(result.request_id)
        mismatch = result.status == "error" and (result.error or "").startswith(DATA_MISMATCH)
        if req is not None and mismatch:
            self._data_mismatch(worker, req, result)
        elif mismatch:
            if worker is not None and result.request_id in self._timed_out:
                worker.data.pop(self._timed_out[result.request_id].universe, None)
            self.ignored += 1  # a late answer from other data: never the owner's result
        else:
            self._answer(result, worker)
        self.pump()
        self.on_credit()
        return None

    def _data_mismatch(self, worker: _Worker | None, req: _Request, result: BacktestResultMsg) -> None:
        """Results from different data are never mixed: re-queue, and that worker waits for a new READY."""
        if worker is not None:
            worker.data.pop(req.universe, None)
        if req.worker is not None and req.worker != (worker.identity if worker else None):
            return  # another worker holds it now: its answer decides
        self._requeue(req, worker.worker_id if worker else result.worker, f"{result.error}", count_death=False)

    def _answer(self, result: BacktestResultMsg, worker: _Worker | None) -> None:
        req = self._requests.pop(result.request_id, None)
        late = False
        if req is None:
            req = self._timed_out.pop(result.request_id, None)
            late = req is not None
        if req is None:
            self.ignored += 1  # a duplicate: the request was answered already
            self._emit("backtest.result_ignored", service="school", severity="debug", correlation_id=result.request_id,
                       data={"request_id": result.request_id, "status": result.status, "worker": result.worker,
                             "reason": "already answered: a duplicate"})
            return
        if req.worker is not None and req.worker != (worker.identity if worker else None):
            other = self._workers.get(req.worker)
            if other is not None:
                other.held.pop(req.request_id, None)  # its later answer is the duplicate
        self.completed += 1
        sharpe = result.metrics.get("sharpe") if result.metrics else None
        trades = result.metrics.get("trades") if result.metrics else None
        if req.purpose != "is" or self.debug_events or result.status != "ok":
            data: dict[str, Any] = {
                "request_id": result.request_id, "strategy": req.strategy, "purpose": req.purpose,
                "status": result.status, "sharpe": sharpe, "trades": trades, "elapsed_ms": result.elapsed_ms,
                "worker": result.worker, "attempts": req.attempts,
            }
            if late:
                data["late"] = True
            if result.error is not None:
                data["error"] = result.error
            severity = "error" if result.status != "ok" else ("debug" if req.purpose == "is" else "info")
            self._emit("backtest.completed", service="school", severity=severity, correlation_id=result.request_id,
                       data=data)
        self._finish(req, Outcome(result.request_id, req.purpose, req.strategy, result.status, result.metrics,
                                  result.error, result, req.attempts))

    # -- liveness and timeouts ---------------------------------------------------------------

    def note_peer(self, source: str) -> None:
        """A heartbeat from `source`: a `worker-*` peer that never sends READY is an old, incompatible worker."""
        if (source.startswith("worker-") and source not in self._peers_first_heard
                and source not in self._ever_ready and len(self._peers_first_heard) < MAX_WORKERS * 4):
            self._peers_first_heard[source] = self._clock.monotonic()

    def worker_gone(self, worker_id: str, reason: str) -> None:
        """An embedded worker's process exited: its requests are re-queued now, not after the liveness timeout."""
        for worker in list(self._workers.values()):
            if worker.worker_id == worker_id:
                self._lose(worker, reason)

    def check(self) -> None:
        """Declare silent workers dead, resend or give up timed-out requests, report incompatible peers."""
        now = self._clock.monotonic()
        for worker in list(self._workers.values()):
            silent = now - worker.last_seen
            if worker.held and now - worker.last_beat > self.worker_timeout_sec:
                self._lose(worker, f"no BUSY beat for {now - worker.last_beat:.1f}s while holding "
                                   f"{len(worker.held)} request(s): its backtest thread is stuck or it died")
            elif silent > self.worker_timeout_sec:
                self._lose(worker, f"silent for {silent:.1f}s (worker_timeout_sec {self.worker_timeout_sec:g})")
        for req in list(self._requests.values()):
            if now < req.deadline:
                continue
            if req.queued and self._universe_hash(req.universe) is None:
                req.deadline = now + self.timeout_sec  # its universe is paused (bad data): it waits, untimed
                continue
            if req.attempts == 1:
                req.attempts = 2
                req.deadline = now + self.timeout_sec
                self.resends += 1
                if req.worker is not None:
                    holder = self._workers.get(req.worker)
                    if holder is not None:
                        holder.held.pop(req.request_id, None)
                if not req.queued:
                    self._enqueue(req, front=True)
                continue
            self._give_up(req, now)
        self._check_incompatible(now)
        self.pump()

    def retire_stale(self, universe: str, data_hash: str) -> int:
        """The universe's data is now `data_hash`: end its requests made on other data as `stale`.

        Their answers could never be stored (the figures would be of the old data) and no worker with the
        new file can serve them (each would answer `data mismatch`). The owners ask again on the new data;
        a late answer of a worker still running one is ignored. Returns how many ended.
        """
        stale = [r for r in self._requests.values() if r.universe == universe and r.data_hash != data_hash]
        for req in stale:
            del self._requests[req.request_id]
            if req.worker is not None and (holder := self._workers.get(req.worker)) is not None:
                holder.held.pop(req.request_id, None)
            req.queued = False
            self._finish(req, Outcome(req.request_id, req.purpose, req.strategy, "stale",
                                      error=f"data changed: {universe} is now {data_hash}, the request was made "
                                            f"on {req.data_hash}", attempts=req.attempts))
        if stale:
            self.pump()
        return len(stale)

    def _give_up(self, req: _Request, now: float) -> None:
        del self._requests[req.request_id]
        if req.worker is not None and (holder := self._workers.get(req.worker)) is not None:
            holder.held.pop(req.request_id, None)
        req.queued = False
        self._timed_out[req.request_id] = req
        while len(self._timed_out) > MAX_INFLIGHT:
            self._timed_out.popitem(last=False)
        self.timeouts += 1
        self._emit("backtest.timeout", service="school", severity="warning", correlation_id=req.request_id,
                   data={"request_id": req.request_id, "strategy": req.strategy, "purpose": req.purpose,
                         "attempts": req.attempts, "timeout_sec": self.timeout_sec})
        self._finish(req, Outcome(req.request_id, req.purpose, req.strategy, "timeout",
                                  error=f"no answer after {req.attempts} attempts", attempts=req.attempts))

    def _check_incompatible(self, now: float) -> None:
        for source, first in list(self._peers_first_heard.items()):
            if source in self._ever_ready:
                del self._peers_first_heard[source]
                continue
            if now - first >= INCOMPATIBLE_AFTER_SEC and source not in self._incompatible_reported:
                self._incompatible_reported.add(source)
                del self._peers_first_heard[source]
                self._emit("worker.incompatible", service="engine", severity="warning", correlation_id=source,
                           data={"source": source, "worker": source.removeprefix("worker-"),
                                 "reason": f"answers heartbeats but sent no READY within {INCOMPATIBLE_AFTER_SEC:g}s:"
                                           " an old (v1) worker; upgrade it"})

    def update_config(self, cfg: Config) -> None:
        """A reload: whether IS results are written as events (only at telemetry.log_level debug)."""
        self.debug_events = cfg.telemetry.log_level == "debug"

    async def run(self) -> None:
        """Check liveness and timeouts five times a second."""
        while True:
            self._on_progress()
            self.check()
            await self._clock.sleep(TICK_SEC)
