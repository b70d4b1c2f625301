"""Walk-forward validation on the wire (SPEC §4): the `purpose: "wfv_fold"` extension of BACKTEST and its result.

`fold_request_fields` / `parse_fold_request` and `fold_result_fields` / `parse_fold_result`; parsing never
raises, it returns a message saying what is wrong. Pure, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from swimmy.backtest.wffold import FoldResult
from swimmy.backtest.wftiling import FoldRange

# A wfv_fold request's grid may be longer than ours (another version), but never unbounded: it is worker time.
MAX_WIRE_GRID: Final = 256
# Returns travel as floats with this many significant digits (their rounding is ~1e-10 relative).
RETURN_DIGITS: Final = 10

_RANGE_KEYS: Final = ("train_start_ts", "train_end_ts", "test_start_ts", "test_end_ts")


def range_fields(fold: FoldRange) -> dict[str, int]:
    """A fold's index and train/test ranges as the wire and the `wfv.result` event carry them."""
    return {
        "index": fold.index,
        "train_start_ts": fold.train_start_ts,
        "train_end_ts": fold.train_end_ts,
        "test_start_ts": fold.test_start_ts,
        "test_end_ts": fold.test_end_ts,
    }


def fold_request_fields(fold: FoldRange, grid: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The keys a `wfv_fold` BACKTEST adds (SPEC §4): `fold` {index, train/test start/end ts} and `grid`.

    The request's own start_ts / end_ts should span train_start_ts .. test_end_ts.
    """
    return {"fold": range_fields(fold), "grid": [dict(sorted(point.items())) for point in grid]}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _parse_range(obj: object) -> FoldRange | str:
    if not isinstance(obj, dict):
        return f"fold: expected an object, got {type(obj).__name__}"
    for key in ("index", *_RANGE_KEYS):
        if not _is_int(obj.get(key)):
            return f"fold.{key}: expected a whole number, got {obj.get(key)!r:.40}"
    fold = FoldRange(obj["index"], *(obj[key] for key in _RANGE_KEYS))
    if fold.index < 0:
        return f"fold.index: expected >= 0, got {fold.index}"
    if not fold.train_start_ts < fold.train_end_ts <= fold.test_start_ts < fold.test_end_ts:
        return (
            f"fold: need train_start_ts < train_end_ts <= test_start_ts < test_end_ts, got "
            f"{fold.train_start_ts}, {fold.train_end_ts}, {fold.test_start_ts}, {fold.test_end_ts}"
        )
    return fold


def _parse_params(obj: object, where: str) -> dict[str, float] | str:
    if not isinstance(obj, dict) or not obj:
        return f"{where}: expected a non-empty object of params"
    for key, value in obj.items():
        if not isinstance(key, str) or not _is_number(value):
            return f"{where}.{key}: expected a finite number, got {value!r:.40}"
    return dict(obj)


def parse_fold_request(body: Mapping[str, Any]) -> tuple[FoldRange, list[dict[str, float]]] | str:
    """A `wfv_fold` BACKTEST's fold and grid, or a message saying what is wrong (never raises)."""
    if not isinstance(body, Mapping):
        return f"expected an object, got {type(body).__name__}"
    fold = _parse_range(body.get("fold"))
    if isinstance(fold, str):
        return fold
    grid = body.get("grid")
    if not isinstance(grid, list) or not grid:
        return "grid: expected a non-empty list of params objects"
    if len(grid) > MAX_WIRE_GRID:
        return f"grid: {len(grid)} points, at most {MAX_WIRE_GRID}"
    points = []
    for i, obj in enumerate(grid):
        point = _parse_params(obj, f"grid[{i}]")
        if isinstance(point, str):
            return point
        points.append(point)
    return fold, points


def _round_sig(value: float) -> float:
    return float(f"{value:.{RETURN_DIGITS}g}")


def fold_result_fields(result: FoldResult) -> dict[str, Any]:
    """The `fold` key a `wfv_fold` BACKTEST_RESULT adds: ranges, status, chosen params, Sharpes, test returns.

    The test window's per-bar returns are sent in full (RETURN_DIGITS significant digits); the result's
    `metrics` should be the test window's (`result.test_metrics`).
    """
    out: dict[str, Any] = {
        **range_fields(result.fold),
        "status": result.status,
        "params": dict(result.params) if result.params is not None else None,
        "train_sharpe": result.train_sharpe,
        "test_sharpe": result.test_sharpe,
        "test_trades": result.test_trades,
        "test_pnl_pips": result.test_pnl_pips,
        "candidates": result.candidates,
        "test_returns": [_round_sig(x) for x in np.asarray(result.test_returns, dtype=np.float64).tolist()],
    }
    if result.error is not None:
        out["error"] = result.error
    return {"fold": out}


def _optional_number(obj: Mapping[str, Any], key: str) -> float | str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not _is_number(value):
        return f"fold.{key}: expected a finite number or null, got {value!r:.40}"
    return float(value)


def parse_fold_result(body: Mapping[str, Any]) -> FoldResult | str:
    """A `wfv_fold` BACKTEST_RESULT's fold, or a message saying what is wrong (never raises).

    `test_metrics` comes from the result's `metrics` when it is an object.
    """
    if not isinstance(body, Mapping):
        return f"expected an object, got {type(body).__name__}"
    obj = body.get("fold")
    fold = _parse_range(obj)
    if isinstance(fold, str):
        return fold
    assert isinstance(obj, dict)
    status = obj.get("status")
    if status not in ("ok", "error"):
        return f"fold.status: expected ok or error, got {status!r:.40}"
    error = obj.get("error")
    if error is not None and not isinstance(error, str):
        return f"fold.error: expected a string, got {type(error).__name__}"
    params: dict[str, float] | None = None
    if obj.get("params") is not None:
        parsed = _parse_params(obj["params"], "fold.params")
        if isinstance(parsed, str):
            return parsed
        params = parsed
    train_sharpe = _optional_number(obj, "train_sharpe")
    if isinstance(train_sharpe, str):
        return train_sharpe
    test_sharpe = _optional_number(obj, "test_sharpe")
    if isinstance(test_sharpe, str):
        return test_sharpe
    returns = obj.get("test_returns", [])
    if not isinstance(returns, list) or not all(_is_number(x) for x in returns):
        return "fold.test_returns: expected a list of finite numbers"
    trades = obj.get("test_trades", 0)
    if not _is_int(trades) or trades < 0:
        return f"fold.test_trades: expected a whole number >= 0, got {trades!r:.40}"
    pnl = obj.get("test_pnl_pips", 0.0)
    if not _is_number(pnl):
        return f"fold.test_pnl_pips: expected a finite number, got {pnl!r:.40}"
    candidates = obj.get("candidates", 0)
    if not _is_int(candidates) or candidates < 0:
        return f"fold.candidates: expected a whole number >= 0, got {candidates!r:.40}"
    if status == "ok" and params is None:
        return "fold.params: an ok fold must name the params it chose"
    metrics = body.get("metrics")
    return FoldResult(
        fold,
        status,
        params=params,
        train_sharpe=train_sharpe,
        test_sharpe=test_sharpe,
        test_returns=np.array(returns, dtype=np.float64),
        test_trades=trades,
        test_pnl_pips=float(pnl),
        error=error if error is not None else (None if status == "ok" else "fold failed"),
        candidates=candidates,
        test_metrics=dict(metrics) if isinstance(metrics, dict) else {},
    )
