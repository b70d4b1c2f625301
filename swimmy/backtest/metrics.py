"""Backtest metrics (SPEC §4, docs/metrics.md): per-bar returns and trades' P&L -> BACKTEST_RESULT.metrics.

Pure functions of arrays. An undefined metric is None (JSON null), never 0, NaN or inf. The passes over every
bar's return are compiled loops (kernels.py, imported on first use: the daemon imports this module for its
constants and PSR and never loads numba); they sum in numpy's pairwise order, so the figures are numpy's.
"""

from __future__ import annotations

import functools
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
    from swimmy.backtest import kernels  # numba on first use: see the module docstring

    # The equity E = cumprod(max(1 + r, 0)) starts at 1 before the first bar, so a loss on the first bar is a
    # drawdown too; a bar losing more than everything is ruin (E stays 0).
    total, downside_sum, drawdown, high, low = kernels.return_sums(r)
    out["max_drawdown"] = min(1.0, max(0.0, drawdown))
    mean = total / n
    downside = math.sqrt(downside_sum / n)
    if downside > 0:
        out["sortino"] = mean / downside * math.sqrt(bars_per_year)
    if n < 2 or high == low:
        # Zero variance: a computed std would be rounding noise, and a Sharpe of noise is no Sharpe.
        return out
    # Σ d², Σ d³, Σ d⁴ of d = r - mean: the std (ddof 1) and the central moments m2, m3, m4.
    s2, s3, s4 = kernels.central_sums(r, mean)
    std = math.sqrt(s2 / (n - 1))
    if not std > 0:
        return out
    per_bar_sharpe = mean / std
    out["sharpe"] = per_bar_sharpe * math.sqrt(bars_per_year)
    m2 = s2 / n
    skew = s3 / n / m2**1.5
    kurtosis = s4 / n / m2**2
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
    from swimmy.backtest import kernels

    r = np.ascontiguousarray(returns, dtype=np.float64)
    edges, counts = _sketch_edges(len(r), blocks)
    # Running sums read at the edges (np.cumsum's left-to-right order), then differenced.
    csum, csq = kernels.prefix_sums_at(r, edges)
    return {"sums": np.diff(csum).tolist(), "sumsqs": np.diff(csq).tolist(), "counts": list(counts)}


@functools.lru_cache(maxsize=64)
def _sketch_edges(n: int, blocks: int) -> tuple[npt.NDArray[np.int64], tuple[int, ...]]:
    """The block edges of a range of n bars (every IS trial of a universe has the same n) and the block sizes."""
    edges = np.linspace(0, n, blocks + 1).astype(np.int64)
    edges.flags.writeable = False
    return edges, tuple(np.diff(edges).tolist())


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
