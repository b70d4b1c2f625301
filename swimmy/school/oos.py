"""The OOS requester (SPEC §5): one queue row per A candidate, throttled, retried, never a stale result.

Pure rules first (`decide_request`, `next_backoff`, `is_mirror`), then the
service that applies them against the store and the backtest client. Every
`oos.*` event of one request carries its request_id as correlation id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from swimmy.backoff import capped_backoff
from swimmy.backtest.client import BacktestClient, Outcome
from swimmy.backtest.strategies import spec_of
from swimmy.clock import Clock
from swimmy.config import Config, OosConfig
from swimmy.errors import SwimmyError
from swimmy.store import OosRow, Store, StrategyRow
from swimmy.telemetry.queue import Emit

OOS_KIND = "a-rank"
CANDIDATES_PER_TICK = 200
# The holdout is spent sparingly: at most this many new looks per universe per school cycle, best DSR first
# (near-duplicate mutants of one good parent would otherwise take hundreds of looks in a minute).
LOOKS_PER_TICK = 1
PRUNE_AGE_FACTOR = 3  # start-up prunes rows older than 3 x request_interval_sec

log = structlog.get_logger(logger_name="swimmy.school.oos")


class UnknownStrategyError(SwimmyError):
    """A manual request names no strategy in the store."""

    exit_code = 2


class AlreadyPendingError(SwimmyError):
    """A manual request for a strategy whose request is still in flight."""

    exit_code = 1


@dataclass(frozen=True)
class RequestDecision:
    """What the requester does for one candidate this tick."""

    action: str  # "request" | "throttled" | "backoff" | "done"
    status: str | None = None  # "sent" | "retry" when requesting
    age_sec: float = 0.0


def decide_request(row: OosRow | None, now: float, *, interval_sec: float) -> RequestDecision:
    """SPEC §5: a young row that is not an error is throttled; an error row waits out its backoff."""
    if row is None:
        return RequestDecision("request", "sent")
    age = now - row.requested_at
    if row.status == "done":
        # Answered: a Sharpe was stored, or the answer can never give one (a mirror, no trades in the
        # window); asking again would get the same. `swimmy oos request` still can.
        return RequestDecision("done", None, age)
    if row.status == "error":
        if age >= (row.backoff_sec or 0.0):
            return RequestDecision("request", "retry", age)
        return RequestDecision("backoff", None, age)
    if age < interval_sec:
        return RequestDecision("throttled", None, age)
    return RequestDecision("request", "retry", age)


def next_backoff(previous_sec: float | None, *, cycle_sec: float, interval_sec: float) -> float:
    """The wait before an errored request is retried: cycle_sec, then doubling, capped at the interval."""
    return capped_backoff(previous_sec, base_sec=cycle_sec, cap_sec=interval_sec)


def is_mirror(is_sharpe: float | None, oos_sharpe: float | None) -> bool:
    """An OOS Sharpe equal to the IS one (and not 0) is a mirrored result, not a measurement."""
    return is_sharpe is not None and oos_sharpe is not None and is_sharpe != 0 and oos_sharpe == is_sharpe


def holdout_verdict(sharpe: float | None, psr: float | int | None, trades: float | int | None,
                    cfg: OosConfig) -> tuple[str, str]:
    """(pass | fail, why): the holdout needs enough trades, a Sharpe and a PSR (against 0) at their minimums."""
    if trades is None or trades < cfg.min_trades:
        return "fail", f"trades {trades or 0} < {cfg.min_trades}"
    if sharpe is None or not sharpe >= cfg.min_sharpe:
        return "fail", f"sharpe {'null' if sharpe is None else f'{sharpe:.3f}'} < {cfg.min_sharpe:g}"
    if psr is None or not psr >= cfg.min_psr:
        return "fail", f"psr {'null' if psr is None else f'{psr:.3f}'} < {cfg.min_psr:g}"
    return "pass", f"trades {trades}, sharpe {sharpe:.3f}, psr {psr:.3f}"


def should_prune(row: OosRow, now: float, *, interval_sec: float) -> bool:
    """Start-up: drop error rows and rows older than 3 x the interval; the rest stay in flight."""
    return row.status == "error" or now - row.requested_at > PRUNE_AGE_FACTOR * interval_sec


class OosRequester:
    """Requests OOS backtests for A candidates and applies their results."""

    def __init__(self, cfg: Config, store: Store, client: BacktestClient, emit: Emit, clock: Clock, *,
                 oos_start: Callable[[str, str], int | None], rerank: Callable[[str, str], None],
                 retire: Callable[[str, str], None] | None = None,
                 dsr_now: Callable[[StrategyRow], float | None] | None = None,
                 look: Callable[[StrategyRow], None] | None = None) -> None:
        self.cfg = cfg
        self._store = store
        self._client = client
        self._emit = emit
        self._clock = clock
        self._oos_start = oos_start
        self._rerank = rerank
        self._retire = retire or (lambda name, reason: None)
        self._dsr_now = dsr_now or (lambda row: row.is_dsr)
        self._look = look or (lambda row: None)
        self._throttled_reported: dict[str, str] = {}  # strategy -> request_id already reported as throttled
        self.requested = 0
        self.results = 0
        self.errors = 0
        self.latencies_sec: list[float] = []

    # -- start-up ----------------------------------------------------------------------------

    def startup(self) -> None:
        """Prune stale rows; re-queue the rest under their request_ids (SPEC §4: in-flight work survives a restart)."""
        now = self._clock.time()
        interval = self.cfg.oos.request_interval_sec
        for row in self._store.list_oos_rows():
            if row.status == "done":
                continue
            strategy = self._store.get_strategy(row.strategy)
            if should_prune(row, now, interval_sec=interval) or strategy is None:
                self._store.delete_oos_row(row.strategy)
                continue
            if self._submit(strategy, row.request_id, recover=True) is None:
                self._client.adopt(row.request_id, "oos", row.strategy, self._on_result)  # no data now: wait

    def _submit(self, strategy: StrategyRow, request_id: str, *, recover: bool = False) -> str | None:
        start_ts = self._oos_start(strategy.symbol, strategy.timeframe)
        if start_ts is None:
            return None
        wire = spec_of(strategy).to_wire(strategy.name)
        return self._client.submit("oos", wire, start_ts=start_ts, end_ts=None, on_done=self._on_result,
                                   request_id=request_id, recover=recover)

    # -- the tick ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Consider every A candidate (A's IS criteria met, no holdout verdict yet).

        The DSR is judged again against the ledger as it is now: more trials since the IS result can
        keep a strategy from the holdout (SPEC §5), so a look is never spent on a stale verdict.
        """
        a = self.cfg.ranks.A
        candidates = self._store.oos_candidates(min_trades=a.min_trades, sharpe=a.sharpe,
                                                profit_factor=a.profit_factor, win_rate=a.win_rate,
                                                max_drawdown=a.max_drawdown, limit=CANDIDATES_PER_TICK, dsr=a.dsr)
        sent: dict[tuple[str, str], int] = {}
        for strategy in candidates:
            universe = (strategy.symbol, strategy.timeframe)
            if sent.get(universe, 0) >= LOOKS_PER_TICK:
                continue
            if a.dsr > 0:
                dsr = self._dsr_now(strategy)
                if dsr is None or dsr < a.dsr:
                    continue
            if self._consider(strategy):
                sent[universe] = sent.get(universe, 0) + 1

    def _consider(self, strategy: StrategyRow) -> bool:
        """Request, throttle or wait; True when a request went out."""
        now = self._clock.time()
        row = self._store.get_oos_row(strategy.name)
        decision = decide_request(row, now, interval_sec=self.cfg.oos.request_interval_sec)
        if decision.action == "throttled":
            assert row is not None
            if self._throttled_reported.get(strategy.name) != row.request_id:  # once per strategy and window
                self._throttled_reported[strategy.name] = row.request_id
                self._emit("oos.throttled", service="school", correlation_id=row.request_id,
                           data={"request_id": row.request_id, "strategy": strategy.name, "oos_kind": OOS_KIND,
                                 "status": "throttled", "age_sec": round(decision.age_sec, 3)})
            return False
        if decision.action == "request":
            assert decision.status is not None
            return self._dispatch(strategy, row, decision.status) is not None
        return False

    def request_now(self, name: str) -> str:
        """`swimmy oos request NAME`: a request now, whatever the throttle; errors say why not."""
        strategy = self._store.get_strategy(name)
        if strategy is None:
            raise UnknownStrategyError(f"unknown strategy {name!r}")
        row = self._store.get_oos_row(name)
        if row is not None and row.status in ("sent", "retry") and self._client.is_inflight(row.request_id):
            raise AlreadyPendingError(f"{name} has an OOS request in flight ({row.request_id}); wait for its result")
        if self._oos_start(strategy.symbol, strategy.timeframe) is None:
            raise SwimmyError(f"no data for {strategy.symbol} {strategy.timeframe}: no OOS window for {name}")
        request_id = self._dispatch(strategy, row, "sent" if row is None else "retry")
        if request_id is None:
            raise SwimmyError(f"the OOS request for {name} was refused: no worker is connected")
        return request_id

    def _dispatch(self, strategy: StrategyRow, row: OosRow | None, status: str) -> str | None:
        now = self._clock.time()
        request_id = str(uuid.uuid4())
        start_ts = self._oos_start(strategy.symbol, strategy.timeframe)
        base: dict[str, Any] = {"request_id": request_id, "strategy": strategy.name, "oos_kind": OOS_KIND}
        attempts = (row.attempts if row else 0) + 1
        error: str | None
        if start_ts is None:
            error = f"no data for {strategy.symbol} {strategy.timeframe}"
        else:
            sent = self._submit(strategy, request_id)
            error = None if sent else "refused: no worker has this universe's data, or the queue is full"
        if error is not None:
            backoff = next_backoff(row.backoff_sec if row and row.status == "error" else None,
                                   cycle_sec=self.cfg.school.cycle_sec, interval_sec=self.cfg.oos.request_interval_sec)
            self._store.put_oos_row(OosRow(strategy.name, request_id, now, "error", attempts, error, backoff))
            self.errors += 1
            self._emit("oos.dispatch_failed", service="school", severity="error", correlation_id=request_id,
                       data={**base, "status": "error", "error": error})
            return None
        self._store.put_oos_row(OosRow(strategy.name, request_id, now, status, attempts, None,
                                       row.backoff_sec if row else None))
        self.requested += 1
        self._emit("oos.requested", service="school", correlation_id=request_id,
                   data={**base, "status": status, "start_ts": start_ts, "end_ts": None})
        return request_id

    # -- results -----------------------------------------------------------------------------

    def _on_result(self, outcome: Outcome) -> None:
        now = self._clock.time()
        name = outcome.strategy
        row = self._store.get_oos_row(name)
        strategy = self._store.get_strategy(name)
        oos_sharpe = outcome.metrics.get("sharpe") if outcome.metrics else None
        base: dict[str, Any] = {"request_id": outcome.request_id, "strategy": name, "oos_kind": OOS_KIND}
        if row is None or strategy is None or row.request_id != outcome.request_id:
            self._emit("oos.stale_ignored", service="school", severity="warning", correlation_id=outcome.request_id,
                       data={**base, "is_sharpe": strategy.is_sharpe if strategy else None, "oos_sharpe": oos_sharpe,
                             "latest_request_id": row.request_id if row else None})
            return
        latency = round(now - row.requested_at, 3)
        if outcome.status == "quarantined":
            self._store.put_oos_row(replace(row, status="done", last_error=outcome.error))
            self.errors += 1
            self._emit("oos.result", service="school", severity="error", correlation_id=outcome.request_id,
                       data={**base, "status": "error", "error": outcome.error, "latency_sec": latency,
                             "oos_sharpe": None, "decision": "error"})
            self._retire(name, f"OOS backtest {outcome.error}")
            return
        error: str | None = None
        if outcome.status != "ok":
            error = outcome.error or outcome.status
        elif is_mirror(strategy.is_sharpe, oos_sharpe):
            self._emit("oos.mirror_rejected", service="school", severity="warning", correlation_id=outcome.request_id,
                       data={**base, "is_sharpe": strategy.is_sharpe, "oos_sharpe": oos_sharpe})
            self._store.put_oos_row(replace(row, status="done", last_error="mirror: the OOS Sharpe equals the IS one"))
            self._store.set_oos_verdict(name, sharpe=None, psr=None, trades=None, decision="mirror", now=now)
            self.errors += 1
            self._emit("oos.result", service="school", severity="error", correlation_id=outcome.request_id,
                       data={**base, "status": "error", "error": "mirror", "latency_sec": latency,
                             "oos_sharpe": None, "decision": "error"})
            return
        if error is not None:
            backoff = next_backoff(row.backoff_sec if row.status == "error" else None,
                                   cycle_sec=self.cfg.school.cycle_sec,
                                   interval_sec=self.cfg.oos.request_interval_sec)
            self._store.put_oos_row(replace(row, requested_at=now, status="error", last_error=error,
                                            backoff_sec=backoff))
            self.errors += 1
            self._emit("oos.result", service="school", severity="error", correlation_id=outcome.request_id,
                       data={**base, "status": "error", "error": error, "latency_sec": latency,
                             "oos_sharpe": None, "decision": "error"})
            return
        metrics = outcome.metrics or {}
        trades = metrics.get("trades")
        psr = metrics.get("psr")
        decision, why = holdout_verdict(oos_sharpe, psr, trades, self.cfg.oos)
        gate = self.cfg.ranks.A.dsr
        if decision == "pass" and gate > 0 and not (self._dsr_now(strategy) or 0.0) >= gate:
            # A look asked by hand for a strategy below the DSR gate: the holdout result is recorded, but a
            # pass that the gate did not let through first can't make an A (it would skip the deflation).
            decision, why = "ungated", f"{why}; DSR below the A gate at the look: recorded, no promotion"
        self._store.set_oos_verdict(name, sharpe=oos_sharpe, psr=psr, trades=int(trades) if trades is not None
                                    else None, decision=decision, now=now)
        self._store.put_oos_row(replace(row, status="done", last_error=None))
        self._look(strategy)
        self.results += 1
        self.latencies_sec.append(latency)
        del self.latencies_sec[:-100]
        self._emit("oos.result", service="school", correlation_id=outcome.request_id,
                   data={**base, "status": "received", "latency_sec": latency, "oos_sharpe": oos_sharpe,
                         "oos_psr": psr, "oos_trades": trades, "decision": decision, "why": why,
                         "min_trades": self.cfg.oos.min_trades, "min_sharpe": self.cfg.oos.min_sharpe,
                         "min_psr": self.cfg.oos.min_psr})
        self._rerank(name, f"holdout {decision} ({why})")

    def queue_stats(self, now: float) -> dict[str, Any]:
        """Pending / errors / oldest age / latency, for snapshots."""
        rows = self._store.list_oos_rows()
        pending = [r for r in rows if r.status in ("sent", "retry")]
        oldest = max((now - r.requested_at for r in pending), default=None)
        lat = sorted(self.latencies_sec)
        return {
            "pending": len(pending),
            "errors": sum(1 for r in rows if r.status == "error"),
            "oldest_age_sec": round(oldest, 3) if oldest is not None else None,
            "latency_p50_sec": lat[len(lat) // 2] if lat else None,
            "requested": self.requested,
            "results": self.results,
        }

