"""One backtest request served: a BACKTEST in, the body of its BACKTEST_RESULT out (SPEC §4).

It runs in the worker's backtest thread (swimmy/backtest/worker.py owns the sockets and the loops) and, without
sockets, in the one-process school of swimmy/school/validity.py. Every request gets an answer: every failure is
an `error` result with the reason, never an exception. A request for data other than ours (its `data_hash`
differs from our file's) is answered `data mismatch: ...`, which the daemon treats as a lost request. The costs
come from the request, so every worker charges the daemon's costs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import structlog

from swimmy.backtest.data import data_hash, load_bars, universe_dir, universe_name
from swimmy.backtest.engine import Bars, Costs, run_backtest
from swimmy.backtest.strategies import StrategySpec
from swimmy.backtest.walkforward import fold_result_fields, parse_fold_request, run_fold
from swimmy.config import Config, instrument_costs
from swimmy.errors import BacktestError, DataError
from swimmy.wire.messages import BacktestRequest, result_body

POISON_EXIT_CODE = 17  # [debug] worker_exit_on
log = structlog.get_logger(logger_name="swimmy.worker")

Beat = Callable[[str, float], None]


def serve_request(req: BacktestRequest, cfg: Config, worker: str, beat: Beat | None = None) -> dict[str, Any]:
    """Run one backtest and build its BACKTEST_RESULT body; every failure becomes an error result."""
    started = time.perf_counter()
    name = ""
    beat = beat or (lambda request_id, progress: None)
    beat(req.request_id, 0.0)
    try:
        spec = StrategySpec.from_wire(req.strategy)
        given = req.strategy.get("name") if isinstance(req.strategy, dict) else None
        name = given if isinstance(given, str) else spec.name()
        _debug_hooks(cfg, name, req, beat)
        ours = data_hash(universe_dir(cfg, spec.symbol), spec.symbol, spec.timeframe)
        if req.data_hash is not None and ours != req.data_hash:  # changed, or gone, since our READY
            return result_body(request_id=req.request_id, strategy_name=name, status="error",
                               error=f"data mismatch: worker {worker} has {universe_name(spec.symbol, spec.timeframe)}"
                                     f" with hash {ours}, the request wants {req.data_hash}",
                               elapsed_ms=_ms(started), worker=worker)
        bars = load_bars(universe_dir(cfg, spec.symbol), spec.symbol, spec.timeframe)
        c = {**instrument_costs(cfg, spec.symbol), **(req.costs or {})}  # the daemon's costs win
        costs = Costs(float(c["spread_pips"]), float(c["slippage_pips"]), float(c["pip"]))
        if req.purpose == "wfv_fold":
            return _serve_fold(req, spec, bars, costs, name, worker, started, beat)
        result = run_backtest(spec, bars, start_ts=req.start_ts, end_ts=req.end_ts, costs=costs,
                              include_trades=req.include_trades, include_sketch=req.purpose == "is")
    except (BacktestError, DataError) as exc:
        return result_body(request_id=req.request_id, strategy_name=name, status="error", error=str(exc),
                           elapsed_ms=_ms(started), worker=worker)
    except Exception as exc:
        log.error("backtest failed", request_id=req.request_id, exc_info=exc)
        return result_body(request_id=req.request_id, strategy_name=name, status="error",
                           error=f"internal error in the worker: {exc!r}", elapsed_ms=_ms(started), worker=worker)
    trades = None
    if req.include_trades:
        trades = [
            {"entry_ts": t.entry_ts, "exit_ts": t.exit_ts, "side": t.side, "entry_price": t.entry_price,
             "exit_price": t.exit_price, "pnl_pips": t.pnl_pips, "exit_reason": t.exit_reason}
            for t in result.trades
        ]
    return result_body(request_id=req.request_id, strategy_name=name, status="ok", metrics=result.metrics,
                       bars=result.bars, start_ts=result.start_ts, end_ts=result.end_ts, elapsed_ms=_ms(started),
                       worker=worker, trades=trades, extra={"sketch": result.sketch} if result.sketch else None)


def _serve_fold(req: BacktestRequest, spec: StrategySpec, bars: Bars, costs: Costs, name: str, worker: str,
                started: float, beat: Beat) -> dict[str, Any]:
    """A walk-forward fold (SPEC §6): the grid on the train window, the choice on the test window."""
    parsed = parse_fold_request(req.body or {})
    if isinstance(parsed, str):
        return result_body(request_id=req.request_id, strategy_name=name, status="error",
                           error=f"bad wfv_fold request: {parsed}", elapsed_ms=_ms(started), worker=worker)
    fold, grid = parsed
    result = run_fold(spec, bars, fold, grid, costs, progress=lambda share: beat(req.request_id, share))
    if result.status != "ok":
        return result_body(request_id=req.request_id, strategy_name=name, status="error",
                           error=result.error or "the fold failed", elapsed_ms=_ms(started), worker=worker)
    return result_body(request_id=req.request_id, strategy_name=name, status="ok", metrics=result.test_metrics,
                       bars=len(result.test_returns), start_ts=fold.test_start_ts, end_ts=fold.test_end_ts,
                       elapsed_ms=_ms(started), worker=worker, extra=fold_result_fields(result))


def _debug_hooks(cfg: Config, name: str, req: BacktestRequest, beat: Beat) -> None:
    """[debug] fault hooks by strategy name: a poison request kills the process; a hung one stops the beats.

    And by request (`debug.sleep_sec`): a slow backtest that stays alive, beating BUSY while it sleeps.
    """
    if not cfg.debug.enabled:
        return
    delay = req.debug.get("sleep_sec", cfg.debug.worker_sleep_sec)
    if isinstance(delay, int | float) and not isinstance(delay, bool) and delay > 0:
        until = time.monotonic() + min(float(delay), 60.0)
        while (left := until - time.monotonic()) > 0:
            time.sleep(min(left, 0.25))
            beat(req.request_id, 1.0 - left / float(delay))
    if name in cfg.debug.worker_exit_on:
        log.error("debug.worker_exit_on: exiting on this strategy", strategy=name)
        os._exit(POISON_EXIT_CODE)
    if name in cfg.debug.worker_hang_on:
        log.error("debug.worker_hang_on: the backtest thread hangs on this strategy", strategy=name)
        time.sleep(3600)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
