"""Walk-forward validation (SPEC §6): the scheduling guards, the folds, the verdict, expiry.

Pure rules first (`required_oos`, `pending_stats`, `plan_tick`), then the scheduler that applies them
(with SPEC §6's names: `maybe_run_wfv_qualification()` and `wfv_pending_stats(now)`). A run tiles the
strategy's IS range into `wfv.folds` folds (swimmy/backtest/walkforward.py); each fold is one request
(`purpose: "wfv_fold"`: the worker re-chooses the parameters on the train window inside their
neighbourhood grid and backtests the choice on the test window), so a walk-forward costs `folds` round
trips. The stitched test windows give wf_sharpe, wf_psr, wfe, profitable_folds and the decision.
Pending runs and their folds live in memory and in the store, so they survive a restart and their
unanswered folds are re-sent under the same request ids; every `wfv.*` event of a run carries its wfv_id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import structlog

from swimmy.backtest.client import BacktestClient, Outcome
from swimmy.backtest.strategies import BARS_PER_YEAR, spec_of
from swimmy.backtest.walkforward import (
    FoldRange,
    FoldResult,
    fold_ranges,
    fold_request_fields,
    fold_result_fields,
    fold_windows,
    neighbourhood,
    parse_fold_result,
    summarize,
    summary_fields,
)
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
    """Starts walk-forward runs (one request per fold), collects the folds, decides, expires what never finishes."""

    def __init__(self, cfg: Config, store: Store, client: BacktestClient, emit: Emit, clock: Clock, *,
                 is_timestamps: Callable[[str, str], Sequence[int] | None], rerank: Callable[[str, str], None],
                 retire: Callable[[str, str], None] | None = None,
                 paused: Callable[[str], bool] | None = None,
                 data_since: Callable[[str], float | None] | None = None) -> None:
        self.cfg = cfg
        self._paused = paused or (lambda universe: False)
        self._data_since = data_since or (lambda universe: None)
        self._store = store
        self._client = client
        self._emit = emit
        self._clock = clock
        self._is_timestamps = is_timestamps
        self._rerank = rerank
        self._retire = retire or (lambda name, reason: None)
        self.pending: dict[str, WfvRow] = {}
        self._folds: dict[str, dict[int, FoldResult | None]] = {}
        self.last_run_at: float | None = None
        self._last_deferred: str | None = None
        self.results = 0
        self.timeouts = 0

    def startup(self) -> None:
        """Load pending runs (they survive a restart) and re-queue their unanswered folds under the same ids."""
        for row in self._store.list_wfv_runs(status="pending"):
            if row.kind != "folds":
                # A single-split run of an older version: nothing will answer it; it is closed as timed out.
                self._store.update_wfv_run(replace(row, status="timeout", finished_at=self._clock.time()))
                continue
            self.pending[row.wfv_id] = row
            strategy = self._store.get_strategy(row.strategy)
            since = self._data_since(f"{strategy.symbol}_{strategy.timeframe}") if strategy is not None else None
            if since is not None and since > row.started_at:
                # The universe's data changed while the daemon was down: its folds would mix two data sets.
                self._cancel(row.wfv_id, row, f"data changed: {strategy.symbol if strategy else ''} "
                             f"{strategy.timeframe if strategy else ''} has new data since the run started")
                continue
            folds: dict[int, FoldResult | None] = {}
            for fold, request_id, request_json, status, result_json in self._store.wfv_folds(row.wfv_id):
                parsed = parse_fold_result(orjson.loads(result_json)) if result_json else None
                if status is not None and not isinstance(parsed, FoldResult):
                    # answered with a failure (no fold body): it stays failed, it is not asked again
                    parsed = FoldResult(FoldRange(fold, 0, 0, 0, 0), "error",
                                        error=str(parsed) if parsed else "the fold failed before the restart")
                folds[fold] = parsed if isinstance(parsed, FoldResult) else None
                if status is None:
                    body = orjson.loads(request_json)
                    self._client.submit("wfv_fold", body["strategy"], start_ts=body["start_ts"],
                                        end_ts=body["end_ts"], on_done=self._fold_handler(row.wfv_id, fold),
                                        request_id=request_id, extra=body["extra"], recover=True)
            self._folds[row.wfv_id] = folds
            self._finish_if_complete(row.wfv_id)  # every fold was in before the restart

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
            # Only strategies that passed the holdout: a walk-forward inside the range a strategy was selected
            # on cannot tell its luck from an edge (measured: on random walks it validated 7 of 7 lucky picks
            # the holdout then rejected); it checks that the choice of parameters is stable, which matters for
            # a strategy the unbiased tests (DSR, holdout) already let through, on its way to S (docs/school.md).
            candidates = [c for c in self._store.wfv_candidates(cfg.max_per_run * 8, exclude=pending_names,
                                                                holdout_passed=True)
                          if self._client.can_serve(f"{c.symbol}_{c.timeframe}")][: cfg.max_per_run]
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
            raise SwimmyError(f"{name}: the walk-forward could not start: no worker has its data, or its IS range "
                              f"is too short for {self.cfg.wfv.folds} folds")
        return wfv_id

    def start(self, strategy: StrategyRow, trigger: str) -> str | None:
        """Tile the IS range into folds, send one request per fold, persist the run; None when it can't start."""
        timestamps = self._is_timestamps(strategy.symbol, strategy.timeframe)
        cfg = self.cfg.wfv
        if timestamps is None:
            return None
        try:
            windows = fold_windows(len(timestamps), cfg.folds, cfg.split_ratio, cfg.mode)
            ranges = fold_ranges(windows, timestamps)
        except ValueError as exc:
            # Permanent (the IS range is too short for the folds): an `error` verdict, so it is not tried again
            # every cycle; `swimmy wfv start` can still ask.
            log.warning("walk-forward cannot start", strategy=strategy.name, error=str(exc))
            if trigger == "scheduled":
                self._store.set_wfv_decision(strategy.name, "error", self._clock.time())
            return None
        universe = f"{strategy.symbol}_{strategy.timeframe}"
        if not self._client.can_serve(universe):
            log.warning("walk-forward not started: no worker has the data", strategy=strategy.name)
            return None
        now = self._clock.time()
        wfv_id = str(uuid.uuid4())
        wire = spec_of(strategy).to_wire(strategy.name)
        grid = neighbourhood(strategy.family, strategy.params)
        folds = []
        for fold in ranges:
            extra = fold_request_fields(fold, grid)
            request_id = str(uuid.uuid4())
            body = {"strategy": wire, "start_ts": fold.train_start_ts, "end_ts": fold.test_end_ts, "extra": extra}
            folds.append((fold.index, request_id, orjson.dumps(body).decode()))
        row = WfvRow(wfv_id, strategy.name, now, trigger, cfg.split_ratio, kind="folds")
        self._store.add_wfv_run(row)
        self._store.add_wfv_folds(wfv_id, folds)
        self.pending[wfv_id] = row
        self._folds[wfv_id] = dict.fromkeys((f for f, _, _ in folds), None)
        for fold, (index, request_id, body_json) in zip(ranges, folds, strict=True):
            body = orjson.loads(body_json)
            sent = self._client.submit("wfv_fold", wire, start_ts=fold.train_start_ts, end_ts=fold.test_end_ts,
                                       on_done=self._fold_handler(wfv_id, index), request_id=request_id,
                                       extra=body["extra"], recover=True)
            if sent is None:
                log.warning("a walk-forward fold was refused; the run will time out", wfv_id=wfv_id, fold=index)
        self._emit("wfv.started", service="school", correlation_id=wfv_id,
                   data={"wfv_id": wfv_id, "strategy": strategy.name, "split_ratio": cfg.split_ratio,
                         "folds": cfg.folds, "mode": cfg.mode, "is_bars": len(timestamps),
                         "oos_bars": sum(w.test_end - w.test_start for w in windows),
                         "grid": len(grid), "trigger": trigger, "is_start_ts": int(timestamps[0]),
                         "is_end_ts": int(timestamps[-1]) + 1,
                         "test_windows": [[f.test_start_ts, f.test_end_ts] for f in ranges]})
        return wfv_id

    # -- folds and verdicts -------------------------------------------------------------------

    def _fold_handler(self, wfv_id: str, fold: int) -> Callable[[Outcome], None]:
        return lambda outcome: self.on_fold(wfv_id, fold, outcome)

    def on_fold(self, wfv_id: str, fold: int, outcome: Outcome) -> None:
        """One fold's answer (or timeout, or quarantine)."""
        row = self.pending.get(wfv_id)
        if row is None:
            return  # expired by wfv.timeout: the late fold changes nothing
        if outcome.status == "stale":
            self._cancel(wfv_id, row, outcome.error or "data changed")
            return
        result: FoldResult | str
        if outcome.status == "ok" and outcome.result is not None:
            result = parse_fold_result(outcome.result.body)
        else:
            result = outcome.error or outcome.status
            if outcome.status == "quarantined":
                self._retire(row.strategy, f"walk-forward fold {outcome.error}")
        if isinstance(result, str):
            result = FoldResult(self._fold_range(wfv_id, fold), "error", error=result)
        self._folds.setdefault(wfv_id, {})[fold] = result
        self._store.set_wfv_fold(wfv_id, fold, result.status, orjson.dumps(
            {**fold_result_fields(result), "metrics": result.test_metrics}).decode())
        for part, sharpe in (("IS", result.train_sharpe), ("OOS", result.test_sharpe)):
            data: dict[str, Any] = {"wfv_id": wfv_id, "fold": fold, "part": part, "sharpe": sharpe,
                                    "params": result.params, "status": result.status,
                                    "request_id": outcome.request_id}
            if part == "OOS":
                data.update(test_start_ts=result.fold.test_start_ts, test_end_ts=result.fold.test_end_ts,
                            trades=result.test_trades)
            if result.error:
                data["error"] = result.error
            self._emit("wfv.part_received", service="school", correlation_id=wfv_id, data=data)
        self._finish_if_complete(wfv_id)

    def _fold_range(self, wfv_id: str, fold: int) -> FoldRange:
        """The fold's windows as requested (a failed fold is stored with them, so it reads back after a restart)."""
        for index, _, request_json, _, _ in self._store.wfv_folds(wfv_id):
            if index == fold:
                body = orjson.loads(request_json)["extra"]["fold"]
                return FoldRange(fold, body["train_start_ts"], body["train_end_ts"], body["test_start_ts"],
                                 body["test_end_ts"])
        return FoldRange(fold, 0, 0, 0, 0)

    def _finish_if_complete(self, wfv_id: str) -> None:
        folds = self._folds.get(wfv_id, {})
        if not folds or any(f is None for f in folds.values()):
            return
        row = self.pending[wfv_id]
        strategy = self._store.get_strategy(row.strategy)
        generation = strategy.generation if strategy else 0
        cfg = self.cfg.wfv
        required = required_oos(generation, cfg)
        done_folds = [f for f in folds.values() if f is not None]
        per_year = BARS_PER_YEAR.get(strategy.timeframe if strategy else "H1", 6240)
        summary = summarize(done_folds, periods_per_year=per_year, required_oos=required, min_psr=cfg.min_psr,
                            min_wfe=cfg.min_wfe, min_profitable_folds=cfg.min_profitable_folds)
        fields = summary_fields(summary, done_folds)
        now = self._clock.time()
        decision = summary.decision
        finished = replace(row, status="done" if decision != "error" else "error", decision=decision,
                           required_oos=required, degradation=summary.degradation, is_sharpe=summary.is_sharpe,
                           oos_sharpe=summary.wf_sharpe, finished_at=now,
                           summary_json=orjson.dumps(fields).decode())
        self._store.update_wfv_run(finished)
        del self.pending[wfv_id]
        self._folds.pop(wfv_id, None)
        self.results += 1
        if strategy is not None:
            # An error is a verdict too: a strategy whose run fails for a reason of its own must not take every
            # slot at every interval. `swimmy wfv start` retries it.
            self._store.set_wfv_decision(row.strategy, decision, now)
        self._emit("wfv.result", service="school", correlation_id=wfv_id,
                   data={"wfv_id": wfv_id, "strategy": row.strategy, "generation": generation,
                         "split_ratio": row.split_ratio, "mode": cfg.mode, "trigger": row.trigger, **fields,
                         "min_psr": cfg.min_psr, "min_wfe": cfg.min_wfe,
                         "min_profitable_folds": cfg.min_profitable_folds})
        if decision != "error" and cfg.affects_rank and strategy is not None:
            self._rerank(row.strategy, f"walk-forward {decision}")

    def _cancel(self, wfv_id: str, row: WfvRow, reason: str) -> None:
        """The universe's data changed under a run: no verdict on folds of two data sets; the slot is freed.

        The strategy was sent back to be evaluated on the new data, and is a candidate again once ranked.
        """
        del self.pending[wfv_id]  # its other folds end as stale too; each then finds no pending run
        self._folds.pop(wfv_id, None)
        self._store.update_wfv_run(replace(row, status="error", decision=None, finished_at=self._clock.time()))
        self._emit("wfv.cancelled", service="school", severity="warning", correlation_id=wfv_id,
                   data={"wfv_id": wfv_id, "strategy": row.strategy, "reason": reason})

    def check_timeouts(self, now: float) -> None:
        """A pending run older than pending_timeout_sec is wfv.timeout; its slot is freed.

        While the strategy's universe is paused (bad data) its clock stands still: the folds wait for the
        data, and a run is never timed out for it.
        """
        for wfv_id, row in list(self.pending.items()):
            strategy = self._store.get_strategy(row.strategy)
            if strategy is not None and self._paused(f"{strategy.symbol}_{strategy.timeframe}"):
                self.pending[wfv_id] = replace(row, started_at=now)  # in memory: the full timeout once back
                continue
            age = now - row.started_at
            if age <= self.cfg.wfv.pending_timeout_sec:
                continue
            folds = self._folds.get(wfv_id, {})
            missing = [f"fold {k}" for k, v in sorted(folds.items()) if v is None]
            del self.pending[wfv_id]
            self._folds.pop(wfv_id, None)
            self._store.update_wfv_run(replace(row, status="timeout", finished_at=now))
            if self._store.get_strategy(row.strategy) is not None:
                self._store.set_wfv_decision(row.strategy, "timeout", now)
            self.timeouts += 1
            self._emit("wfv.timeout", service="school", severity="warning", correlation_id=wfv_id,
                       data={"wfv_id": wfv_id, "strategy": row.strategy, "age_sec": round(age, 3),
                             "missing": missing})

