"""Backtest metrics (SPEC §4, docs/metrics.md): per-bar returns and trades' P&L -> BACKTEST_RESULT.metrics.

Pure numpy. An undefined metric is None (JSON null), never 0, NaN or inf.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from swimmy.backtest.strategies import BARS_PER_YEAR
from swimmy.errors import BacktestError

METRIC_KEYS: tuple[str, ...] = (
    "trades",
    "wins",
    "losses",
    "win_rate",
    "pnl_pips",
    "profit_factor",
    "sharpe",
    "sortino",
    "max_drawdown",
    "psr",
    "skew",
    "kurtosis",
    "sharpe_per_bar",
)
SKETCH_BLOCKS = 32  # the returns sketch of an IS result: per block of the range, the sum and the sum of squares
# P&L in pips is rounded here: far below any price increment, and it keeps float noise such as 49.99999999999 out.
PIPS_DECIMALS = 6


def compute_metrics(
    returns: npt.NDArray[np.float64], trade_pnls_pips: npt.NDArray[np.float64], timeframe: str
) -> dict[str, float | int | None]:
    """The metrics of one backtest from its per-bar returns (every bar of the range) and closed trades' net pips."""
    if timeframe not in BARS_PER_YEAR:
        raise BacktestError(f"unknown timeframe {timeframe!r}; known: {' '.join(BARS_PER_YEAR)}")
    r = np.asarray(returns, dtype=np.float64)
    pnl = np.asarray(trade_pnls_pips, dtype=np.float64)
    wins = int(np.count_nonzero(pnl > 0))
    losses = int(np.count_nonzero(pnl < 0))
    out: dict[str, float | int | None] = dict.fromkeys(METRIC_KEYS)
    out.update(trades=len(pnl), wins=wins, losses=losses, pnl_pips=round(float(pnl.sum()), PIPS_DECIMALS))
    if len(pnl) == 0:
        # No trade: the returns are all 0 and every ratio below would describe nothing.
        return out
    gross_win = float(pnl[pnl > 0].sum())
    gross_loss = -float(pnl[pnl < 0].sum())
    out["win_rate"] = wins / len(pnl)
    out["profit_factor"] = gross_win / gross_loss if gross_loss > 0 else None
    out.update(_return_metrics(r, BARS_PER_YEAR[timeframe]))
    return {k: _finite_or_none(v) for k, v in out.items()}


def _return_metrics(r: npt.NDArray[np.float64], bars_per_year: int) -> dict[str, float | None]:
    n = len(r)
    out: dict[str, float | None] = {"sharpe": None, "sortino": None, "max_drawdown": None, "psr": None,
                                    "skew": None, "kurtosis": None, "sharpe_per_bar": None}
    if n == 0:
        return out
    # Overflow or a loss beyond 100% in one bar can't come from real prices; the guard keeps NaN out of the result.
    with np.errstate(all="ignore"):
        equity = np.cumprod(np.maximum(1.0 + r, 0.0))
        # The equity starts at 1 before the first bar, so a loss on the first bar is a drawdown too.
        peak = np.maximum(np.maximum.accumulate(equity), 1.0)
        out["max_drawdown"] = min(1.0, max(0.0, float(np.max(1.0 - equity / peak))))
        mean = float(r.mean())
        downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
        if downside > 0:
            out["sortino"] = mean / downside * math.sqrt(bars_per_year)
        if n < 2 or float(r.max()) == float(r.min()):
            # Zero variance: a computed std would be rounding noise, and a Sharpe of noise is no Sharpe.
            return out
        std = float(r.std(ddof=1))
        if not std > 0:
            return out
        per_bar_sharpe = mean / std
        out["sharpe"] = per_bar_sharpe * math.sqrt(bars_per_year)
        dev = r - mean
        dev2 = dev * dev
        m2 = float(dev2.mean())
        skew = float((dev2 * dev).mean()) / m2**1.5
        kurtosis = float((dev2 * dev2).mean()) / m2**2
        out.update(skew=skew, kurtosis=kurtosis, sharpe_per_bar=per_bar_sharpe)
        try:
            out["psr"] = probabilistic_sharpe_ratio(per_bar_sharpe, n, skew, kurtosis)
        except ValueError:
            out["psr"] = None
    return out


def returns_sketch(returns: npt.NDArray[np.float64], blocks: int = SKETCH_BLOCKS) -> dict[str, list[float]]:
    """Per block of the range (equal bar counts, the last block takes the rest): the sum and the sum of squares.

    Aligned across every trial of a universe (same IS range), it gives the trials ledger the correlations
    for N_eff and the PBO audit the Sharpe of any union of blocks, without keeping every bar.
    """
    r = np.asarray(returns, dtype=np.float64)
    edges = np.linspace(0, len(r), blocks + 1).astype(np.int64)
    csum = np.concatenate(([0.0], np.cumsum(r)))
    csq = np.concatenate(([0.0], np.cumsum(r * r)))
    return {"sums": [float(x) for x in np.diff(csum[edges])], "sumsqs": [float(x) for x in np.diff(csq[edges])],
            "counts": [int(x) for x in np.diff(edges)]}


def probabilistic_sharpe_ratio(sr: float, n: int, skew: float, kurtosis: float, sr_benchmark: float = 0.0) -> float:
    """P(true Sharpe > sr_benchmark) given a per-period Sharpe over n periods, skewness and NON-excess kurtosis."""
    if n < 2:
        raise ValueError(f"PSR needs at least 2 observations, got {n}")
    variance = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if not variance > 0 or not math.isfinite(variance):
        raise ValueError(f"PSR is undefined: 1 - skew*SR + (kurtosis-1)/4*SR^2 = {variance!r}")
    z = (sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(variance)
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _finite_or_none(value: float | int | None) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
