"""Walk-forward validation (SPEC §6): the scheduling guards, the split, the verdict, expiry.

Pure rules first (`required_oos`, `degradation`, `decide`, `split_is_range`,
`pending_stats`, `plan_tick`), then the scheduler that applies them (with SPEC §6's names:
`maybe_run_wfv_qualification()` and `wfv_pending_stats(now)`). Pending
runs live in memory for the tick (O(pending), not O(population)) and in the
store, so they survive a restart; every `wfv.*` event of a run carries its wfv_id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from swimmy.backtest.client import BacktestClient, Outcome
from swimmy.backtest.strategies import spec_of
from swimmy.clock import Clock
from swimmy.config import Config, WfvConfig
from swimmy.errors import SwimmyError
from swimmy.school.oos import AlreadyPendingError, UnknownStrategyError
from swimmy.store import Store, StrategyRow, WfvRow
from swimmy.telemetry.queue import Emit

log = structlog.get_logger(logger_name="swimmy.school.wfv")


def required_oos(generation: int, cfg: WfvConfig) -> float:
    """min(cap, base + step x generation)."""
    return min(cfg.required_oos_cap, cfg.required_oos_base + cfg.required_oos_step * generation)


def degradation(is_sharpe: float, oos_sharpe: float) -> float:
    """(IS - OOS) / IS when IS > 0.1, else 0."""
    return (is_sharpe - oos_sharpe) / is_sharpe if is_sharpe > 0.1 else 0.0


def decide(is_sharpe: float | None, oos_sharpe: float | None, required: float) -> tuple[str, float | None]:
    """(decision, degradation): validated, overfit, weak; error when a part has no Sharpe."""
    if is_sharpe is None or oos_sharpe is None:
        return "error", None
    deg = degradation(is_sharpe, oos_sharpe)
    if oos_sharpe > required and deg < 0.5:
        return "validated", deg
    if deg > 0.7:
        return "overfit", deg
    return "weak", deg


def split_is_range(timestamps: Sequence[int], split_ratio: float) -> tuple[int, int, int, int] | None:
    """The IS range's bars split by count: (is_start, split_ts, is_bars, oos_bars); None when too few bars.

    The newest `split_ratio` of the bars is the OOS part; the IS part ends where it starts.
    """
    n = len(timestamps)
    oos_bars = max(1, round(n * split_ratio))
    is_bars = n - oos_bars
    if is_bars < 2 or oos_bars < 2:
        return None
    return int(timestamps[0]), int(timestamps[is_bars]), is_bars, oos_bars


def pending_stats(started_at: Mapping[str, float], now: float) -> tuple[int, float | None]:
    """(count, oldest_age_sec) of the pending runs."""
    if not started_at:
        return 0, None
    return len(started_at), now - min(started_at.values())


@dataclass(frozen=True)
class TickPlan:
    """A scheduling tick's outcome: how many to start, or why none."""

    start: int
    deferred: str | None  # disabled | interval | max_pending | no_candidates


def plan_tick(cfg: WfvConfig, *, now: float, last_run_at: float | None, pending: int, candidates: int) -> TickPlan:
    """maybe_run_wfv_qualification's guards, in SPEC order."""
    if not cfg.enabled:
        return TickPlan(0, "disabled")
    if last_run_at is not None and now - last_run_at < cfg.interval_sec:
        return TickPlan(0, "interval")
    if pending >= cfg.max_pending:
        return TickPlan(0, "max_pending")
    n = min(cfg.max_per_run, cfg.max_pending - pending, candidates)
    if n <= 0:
        return TickPlan(0, "no_candidates")
    return TickPlan(n, None)


class WfvScheduler:
    """Starts WFV runs, collects their two parts, decides, expires what never finishes."""

    def __init__(self, cfg: Config, store: Store, client: BacktestClient, emit: Emit, clock: Clock, *,
                 is_timestamps: Callable[[str, str], Sequence[int] | None], rerank: Callable[[str, str], None]) -> None:
        self.cfg = cfg
        self._store = store
        self._client = client
        self._emit = emit
        self._clock = clock
        self._is_timestamps = is_timestamps
        self._rerank = rerank
        self.pending: dict[str, WfvRow] = {}
        self.last_run_at: float | None = None
        self._last_deferred: str | None = None
        self.results = 0
        self.timeouts = 0

    def startup(self) -> None:
        """Load pending runs (they survive a restart) and adopt their requests."""
        for row in self._store.list_wfv_runs(status="pending"):
            self.pending[row.wfv_id] = row
            for part, request_id, status in (("IS", row.is_request_id, row.is_status),
                                             ("OOS", row.oos_request_id, row.oos_status)):
                if request_id and status is None:
                    self._client.adopt(request_id, f"wfv_{part.lower()}", row.strategy,
                                       self._part_handler(row.wfv_id, part))

    def wfv_pending_stats(self, now: float) -> tuple[int, float | None]:
        """(count, oldest_age_sec) of the pending runs (SPEC §6's name); O(pending), not O(population)."""
        return pending_stats({k: r.started_at for k, r in self.pending.items()}, now)

    pending_stats = wfv_pending_stats

    # -- the tick ----------------------------------------------------------------------------

    def maybe_run_wfv_qualification(self) -> None:
        """The scheduling tick (SPEC §6's name): expire, then start up to max_per_run candidates or say why not."""
        now = self._clock.time()
        self.check_timeouts(now)
        pending_names = {r.strategy for r in self.pending.values()}
        cfg = self.cfg.wfv
        candidates: list[StrategyRow] = []
        if cfg.enabled and len(self.pending) < cfg.max_pending and (
                self.last_run_at is None or now - self.last_run_at >= cfg.interval_sec):
            candidates = self._store.wfv_candidates(cfg.max_per_run, exclude=pending_names)
        plan = plan_tick(cfg, now=now, last_run_at=self.last_run_at, pending=len(self.pending),
                         candidates=len(candidates))
        if plan.deferred is not None:
            if plan.deferred != self._last_deferred:  # one event per change of reason, not one per tick
                self._last_deferred = plan.deferred
                count, oldest = self.pending_stats(now)
                self._emit("wfv.deferred", service="school", correlation_id="unknown",
                           data={"reason": plan.deferred, "pending": count,
                                 "oldest_age_sec": round(oldest, 3) if oldest is not None else None})
            return
        started = sum(1 for strategy in candidates[: plan.start] if self.start(strategy, "scheduled") is not None)
        if started:
            self.last_run_at = now
            self._last_deferred = None

    tick = maybe_run_wfv_qualification

    def start_manual(self, name: str) -> str:
        """`swimmy wfv start NAME`: bypasses every guard; unknown -> exit 2, already pending -> exit 1."""
        strategy = self._store.get_strategy(name)
        if strategy is None:
            raise UnknownStrategyError(f"unknown strategy {name!r}")
        for row in self.pending.values():
            if row.strategy == name:
                raise AlreadyPendingError(f"{name} already has a WFV run pending ({row.wfv_id})")
        if self._is_timestamps(strategy.symbol, strategy.timeframe) is None:
            raise SwimmyError(f"{name}: no data to split for {strategy.symbol} {strategy.timeframe}")
        wfv_id = self.start(strategy, "manual")
        if wfv_id is None:
            raise SwimmyError(f"{name}: the WFV requests were refused: no worker is connected")
        return wfv_id

    def start(self, strategy: StrategyRow, trigger: str) -> str | None:
        """Split the IS range, send the two parts, persist the pending run; None when it can't start."""
        timestamps = self._is_timestamps(strategy.symbol, strategy.timeframe)
        split = split_is_range(timestamps, self.cfg.wfv.split_ratio) if timestamps is not None else None
        if split is None or timestamps is None:
            log.warning("WFV cannot start: no IS bars to split", strategy=strategy.name)
            return None
        is_start, split_ts, is_bars, oos_bars = split
        is_end = int(timestamps[-1]) + 1
        now = self._clock.time()
        wfv_id = str(uuid.uuid4())
        wire = spec_of(strategy).to_wire(strategy.name)
        is_rid = self._client.submit("wfv_is", wire, start_ts=is_start, end_ts=split_ts,
                                     on_done=self._part_handler(wfv_id, "IS"))
        oos_rid = self._client.submit("wfv_oos", wire, start_ts=split_ts, end_ts=is_end,
                                      on_done=self._part_handler(wfv_id, "OOS")) if is_rid else None
        if is_rid is None or oos_rid is None:
            # Refused (no worker connected, the send queue full): no run starts and no verdict is stored.
            # An IS part already sent is answered into the void (its run does not exist).
            log.warning("WFV not started: the backtest requests were refused", strategy=strategy.name)
            return None
        row = WfvRow(wfv_id, strategy.name, now, trigger, self.cfg.wfv.split_ratio, is_rid, oos_rid)
        self._store.add_wfv_run(row)
        self.pending[wfv_id] = row
        self._emit("wfv.started", service="school", correlation_id=wfv_id,
                   data={"wfv_id": wfv_id, "strategy": strategy.name, "split_ratio": self.cfg.wfv.split_ratio,
                         "is_bars": is_bars, "oos_bars": oos_bars, "trigger": trigger, "is_start_ts": is_start,
                         "split_ts": split_ts, "is_end_ts": is_end, "is_request_id": is_rid,
                         "oos_request_id": oos_rid})
        return wfv_id

    # -- parts and verdicts -------------------------------------------------------------------

    def _part_handler(self, wfv_id: str, part: str) -> Callable[[Outcome], None]:
        return lambda outcome: self.on_part(wfv_id, part, outcome)

    def on_part(self, wfv_id: str, part: str, outcome: Outcome) -> None:
        """One part's answer (or timeout)."""
        row = self.pending.get(wfv_id)
        if row is None:
            return  # expired by wfv.timeout: the late part changes nothing
        sharpe = outcome.metrics.get("sharpe") if outcome.metrics else None
        status = "ok" if outcome.status == "ok" else "error"
        if part == "IS":
            row = replace(row, is_sharpe=sharpe, is_status=status)
        else:
            row = replace(row, oos_sharpe=sharpe, oos_status=status)
        self.pending[wfv_id] = row
        self._store.update_wfv_run(row)
        data: dict[str, Any] = {"wfv_id": wfv_id, "part": part, "sharpe": sharpe, "status": status,
                                "request_id": outcome.request_id}
        if outcome.error:
            data["error"] = outcome.error
        self._emit("wfv.part_received", service="school", correlation_id=wfv_id, data=data)
        self._finish_if_complete(wfv_id)

    def _finish_if_complete(self, wfv_id: str) -> None:
        row = self.pending[wfv_id]
        if row.is_status is None or row.oos_status is None:
            return
        strategy = self._store.get_strategy(row.strategy)
        generation = strategy.generation if strategy else 0
        required = required_oos(generation, self.cfg.wfv)
        if row.is_status == "ok" and row.oos_status == "ok":
            decision, deg = decide(row.is_sharpe, row.oos_sharpe, required)
        else:
            decision, deg = "error", None
        now = self._clock.time()
        done = replace(row, status="done" if decision != "error" else "error", decision=decision,
                       required_oos=required, degradation=deg, finished_at=now)
        self._store.update_wfv_run(done)
        del self.pending[wfv_id]
        self.results += 1
        if strategy is not None:
            # An error is a verdict too: a strategy whose run fails for a reason of its own (no trades in
            # a part, no data) must not take every slot at every interval. `swimmy wfv start` retries it.
            self._store.set_wfv_decision(row.strategy, decision, now)
        self._emit("wfv.result", service="school", correlation_id=wfv_id,
                   data={"wfv_id": wfv_id, "strategy": row.strategy, "generation": generation,
                         "split_ratio": row.split_ratio, "required_oos": round(required, 6),
                         "degradation": round(deg, 6) if deg is not None else None, "decision": decision,
                         "is_sharpe": row.is_sharpe, "oos_sharpe": row.oos_sharpe, "trigger": row.trigger})
        if decision != "error" and self.cfg.wfv.affects_rank and strategy is not None:
            self._rerank(row.strategy, f"WFV {decision}")

    def check_timeouts(self, now: float) -> None:
        """A pending run older than pending_timeout_sec is wfv.timeout; its slot is freed."""
        for wfv_id, row in list(self.pending.items()):
            age = now - row.started_at
            if age <= self.cfg.wfv.pending_timeout_sec:
                continue
            missing = [p for p, s in (("IS", row.is_status), ("OOS", row.oos_status)) if s is None]
            del self.pending[wfv_id]
            self._store.update_wfv_run(replace(row, status="timeout", finished_at=now))
            if self._store.get_strategy(row.strategy) is not None:
                self._store.set_wfv_decision(row.strategy, "timeout", now)
            self.timeouts += 1
            self._emit("wfv.timeout", service="school", severity="warning", correlation_id=wfv_id,
                       data={"wfv_id": wfv_id, "strategy": row.strategy, "age_sec": round(age, 3),
                             "missing": missing})
