"""Walk-forward validation, the numbers (SPEC §6): fold tiling, parameter neighbourhoods, folds, the verdict.

Pure: numpy and the engine's public functions, no I/O, no clock, no store. The pieces, in the order a
walk-forward uses them:

- `fold_windows` tiles the IS range's B bars into K folds (bar indices), `fold_ranges` turns them into
  Unix-second ranges for BACKTEST requests (swimmy/backtest/wftiling.py);
- `neighbourhood` is the grid of parameters a fold may choose from (documented there);
- `run_fold` (worker side) backtests every grid point on the fold's train window, keeps the best by train
  Sharpe (`best_index`) and backtests that choice on the test window (both in swimmy/backtest/wffold.py);
- `summarize` stitches the folds' test returns in time order and judges them (`decide`): this module;
- `fold_request_fields` / `parse_fold_request` and `fold_result_fields` / `parse_fold_result` are the
  `purpose: "wfv_fold"` extension of BACKTEST and BACKTEST_RESULT (SPEC §4); parsing never raises
  (swimmy/backtest/wfwire.py).

The names the rest of swimmy imports (those above, the fold types, MAX_GRID_POINTS, MAX_WIRE_GRID) still
import from here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from swimmy.backtest.metrics import probabilistic_sharpe_ratio
from swimmy.backtest.wffold import MAX_GRID_POINTS, FloatArray, FoldResult, best_index, neighbourhood, run_fold
from swimmy.backtest.wftiling import Fold, FoldRange, fold_ranges, fold_windows
from swimmy.backtest.wfwire import (
    MAX_WIRE_GRID,
    fold_request_fields,
    fold_result_fields,
    parse_fold_request,
    parse_fold_result,
    range_fields,
)

__all__ = [
    "DECISIONS",
    "MAX_GRID_POINTS",
    "MAX_WIRE_GRID",
    "OVERFIT_WFE",
    "Fold",
    "FoldRange",
    "FoldResult",
    "WalkForwardSummary",
    "best_index",
    "decide",
    "degradation",
    "fold_ranges",
    "fold_request_fields",
    "fold_result_fields",
    "fold_windows",
    "moments",
    "neighbourhood",
    "parse_fold_request",
    "parse_fold_result",
    "run_fold",
    "stitch",
    "summarize",
    "summary_fields",
]

DECISIONS: Final = ("validated", "weak", "overfit", "error")
# SPEC §6: a walk-forward efficiency below this (or none) is overfit whatever the thresholds.
OVERFIT_WFE: Final = 0.2


# --- the verdict -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalkForwardSummary:
    """The walk-forward's figures (SPEC §6 `wfv.result`) and its decision; None where undefined.

    is_sharpe is the mean train Sharpe of the chosen params, oos_sharpe = wf_sharpe (the stitched test
    record's annualised Sharpe), degradation = (IS - OOS) / IS when IS > 0.1, else 0.
    """

    decision: str  # validated | weak | overfit | error
    folds: int
    bars: int  # bars in the stitched test record
    wf_sharpe: float | None
    wf_psr: float | None
    wfe: float | None
    profitable_folds: float | None
    is_sharpe: float | None
    oos_sharpe: float | None
    degradation: float | None
    required_oos: float
    skew: float | None = None
    kurtosis: float | None = None  # not excess
    error: str | None = None


def decide(
    wf_sharpe: float | None,
    wf_psr: float | None,
    wfe: float | None,
    profitable_folds: float | None,
    *,
    required_oos: float,
    min_psr: float = 0.95,
    min_wfe: float = 0.5,
    min_profitable_folds: float = 0.6,
    failed: bool = False,
) -> str:
    """SPEC §6's verdict, in its order.

    `error` when a fold failed; `validated` when wf_psr >= min_psr, wf_sharpe > required_oos,
    wfe >= min_wfe and profitable_folds >= min_profitable_folds (an undefined figure meets nothing);
    `overfit` when wfe is None or < 0.2, or wf_sharpe is None or <= 0; else `weak`.
    """
    if failed:
        return "error"
    if (
        wf_psr is not None
        and wf_sharpe is not None
        and wfe is not None
        and profitable_folds is not None
        and wf_psr >= min_psr
        and wf_sharpe > required_oos
        and wfe >= min_wfe
        and profitable_folds >= min_profitable_folds
    ):
        return "validated"
    if wfe is None or wfe < OVERFIT_WFE or wf_sharpe is None or wf_sharpe <= 0:
        return "overfit"
    return "weak"


def degradation(is_sharpe: float | None, oos_sharpe: float | None) -> float | None:
    """(IS - OOS) / IS when IS > 0.1, else 0 (SPEC §6); None when either is undefined."""
    if is_sharpe is None or oos_sharpe is None:
        return None
    return (is_sharpe - oos_sharpe) / is_sharpe if is_sharpe > 0.1 else 0.0


def stitch(folds: Sequence[FoldResult]) -> FloatArray:
    """The folds' test returns concatenated in time order (by test window start)."""
    ordered = sorted(folds, key=lambda f: f.fold.test_start_ts)
    if not ordered:
        return np.zeros(0)
    return np.concatenate([np.asarray(f.test_returns, dtype=np.float64) for f in ordered])


def moments(r: FloatArray) -> tuple[float, float, float, int] | None:
    """(per-period Sharpe with ddof=1, n-weighted skewness, non-excess kurtosis, n) of r; None when undefined.

    Undefined: fewer than 2 returns or zero variance (all equal), as the engine's metrics say.
    """
    n = len(r)
    if n < 2 or not np.all(np.isfinite(r)) or float(r.max()) == float(r.min()):
        return None
    mean = float(r.mean())
    std = float(r.std(ddof=1))
    dev = r - mean
    m2 = float(np.mean(dev * dev))
    if not (std > 0 and m2 > 0):
        return None
    skew = float(np.mean(dev**3)) / m2**1.5
    kurtosis = float(np.mean(dev**4)) / m2**2
    return mean / std, skew, kurtosis, n


def summarize(
    folds: Sequence[FoldResult],
    *,
    periods_per_year: float,
    required_oos: float = 0.0,
    min_psr: float = 0.95,
    min_wfe: float = 0.5,
    min_profitable_folds: float = 0.6,
) -> WalkForwardSummary:
    """Stitch the folds' test windows and judge them (SPEC §6).

    wf_sharpe = annualised Sharpe (ddof=1, x sqrt(periods_per_year)) of the stitched test returns;
    wf_psr = PSR against 0 of them (per-period Sharpe, skewness and NON-excess kurtosis);
    is_sharpe = the mean train Sharpe of the chosen params over the folds that have one (None when none);
    wfe = wf_sharpe / is_sharpe, None when is_sharpe <= 0 or either is undefined;
    profitable_folds = the fraction of folds whose test returns sum to > 0; decision by `decide`.
    `required_oos` is min(cap, base + step x generation), computed by the caller. A failed fold, no fold
    or overlapping test windows make the decision `error` with the figures undefined.
    """
    ordered = sorted(folds, key=lambda f: f.fold.test_start_ts)
    problem = _fold_problem(ordered)
    if problem is not None:
        return WalkForwardSummary(
            "error", len(ordered), 0, None, None, None, None, None, None, None, required_oos, error=problem
        )
    r = stitch(ordered)
    stats = moments(r)
    wf_sharpe = wf_psr = skew = kurtosis = None
    if stats is not None:
        sr, skew, kurtosis, n = stats
        wf_sharpe = sr * math.sqrt(periods_per_year)
        try:
            wf_psr = probabilistic_sharpe_ratio(sr, n, skew, kurtosis)
        except ValueError:
            wf_psr = None
    train = [f.train_sharpe for f in ordered if f.train_sharpe is not None]
    is_sharpe = sum(train) / len(train) if train else None
    wfe = wf_sharpe / is_sharpe if wf_sharpe is not None and is_sharpe is not None and is_sharpe > 0 else None
    profitable = sum(1 for f in ordered if float(np.sum(f.test_returns)) > 0) / len(ordered)
    decision = decide(
        wf_sharpe,
        wf_psr,
        wfe,
        profitable,
        required_oos=required_oos,
        min_psr=min_psr,
        min_wfe=min_wfe,
        min_profitable_folds=min_profitable_folds,
    )
    return WalkForwardSummary(
        decision,
        len(ordered),
        len(r),
        wf_sharpe,
        wf_psr,
        wfe,
        profitable,
        is_sharpe,
        wf_sharpe,
        degradation(is_sharpe, wf_sharpe),
        required_oos,
        skew,
        kurtosis,
    )


def _fold_problem(ordered: Sequence[FoldResult]) -> str | None:
    if not ordered:
        return "no folds"
    failed = [f for f in ordered if f.status != "ok"]
    if failed:
        return failed[0].error or f"fold {failed[0].fold.index} failed"
    for a, b in itertools.pairwise(ordered):
        if b.fold.test_start_ts < a.fold.test_end_ts:
            return f"the test windows of folds {a.fold.index} and {b.fold.index} overlap"
    return None


def summary_fields(summary: WalkForwardSummary, folds: Sequence[FoldResult]) -> dict[str, Any]:
    """The walk-forward keys of a `wfv.result` event (SPEC §6), JSON-able; the caller adds wfv_id, strategy, ..."""
    return {
        "decision": summary.decision,
        "required_oos": summary.required_oos,
        "degradation": summary.degradation,
        "is_sharpe": summary.is_sharpe,
        "oos_sharpe": summary.oos_sharpe,
        "wf_sharpe": summary.wf_sharpe,
        "wf_psr": summary.wf_psr,
        "wfe": summary.wfe,
        "profitable_folds": summary.profitable_folds,
        "bars": summary.bars,
        **({"error": summary.error} if summary.error else {}),
        "folds": [
            {
                **range_fields(f.fold),
                "status": f.status,
                "params": f.params,
                "is_sharpe": f.train_sharpe,
                "oos_sharpe": f.test_sharpe,
            }
            for f in sorted(folds, key=lambda f: f.fold.test_start_ts)
        ],
    }
