"""The Probability of Backtest Overfitting of the school's audit (SPEC §5, docs/statistics.md): PBO by CSCV.

`pbo_cscv` / `pbo_cscv_from_blocks`: the Probability of Backtest Overfitting by Combinatorially Symmetric
Cross-Validation, Bailey, Borwein, López de Prado and Zhu (2016), J. Computational Finance 20(4).

Pure numpy and the standard library; no I/O. Sharpe ratios are per period (per bar). swimmy.school.stats
re-exports `CSCV_BLOCKS`, `PboResult` and both functions beside the DSR and N_eff; it shares `ZERO_SPREAD`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# CSCV splits (the paper's S): C(16, 8) = 12,870 combinations.
CSCV_BLOCKS = 16
# Combinations evaluated per chunk in CSCV: bounds memory at (chunk x strategies) float64 arrays.
_CSCV_CHUNK = 2048
# A row or a segment whose variance is below this fraction of its mean square has none: float rounding only.
ZERO_SPREAD = 1e-12

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class PboResult:
    """The outcome of CSCV over C(blocks, blocks/2) combinations.

    pbo: the fraction of combinations whose in-sample best strategy ranks at or below the out-of-sample median
    (logit <= 0). lambdas: the logits ln(w / (1 - w)), w = OOS rank / (M + 1), one per combination.
    degradation_slope: the OLS slope of the selected strategy's OOS Sharpe on its IS Sharpe across combinations (the
    paper's performance degradation; with complementary halves of one sample it is negative even for a real edge, so
    it is a figure to report, not a gate); None when the IS Sharpe does not vary.
    prob_oos_loss: the fraction of combinations whose selected strategy has an OOS Sharpe below 0.
    """

    pbo: float
    n_combinations: int
    lambdas: FloatArray
    degradation_slope: float | None
    prob_oos_loss: float


def pbo_cscv(returns: npt.ArrayLike, blocks: int = CSCV_BLOCKS) -> PboResult:
    """PBO of M strategies from a T x M matrix of their per-period returns (rows = periods, aligned).

    The rows are cut into `blocks` contiguous blocks of sizes differing by at most one (no row is dropped); see
    `pbo_cscv_from_blocks` for the rest.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"returns must be a 2-D matrix (periods x strategies), got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("returns must be finite")
    t = int(r.shape[0])
    if blocks < 2 or t < blocks:
        raise ValueError(f"CSCV needs 2 <= blocks <= periods, got blocks={blocks}, periods={t}")
    sizes = np.full(blocks, t // blocks)
    sizes[: t % blocks] += 1
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    sums = np.add.reduceat(r, starts, axis=0)
    sumsqs = np.add.reduceat(r * r, starts, axis=0)
    counts = sizes.astype(np.float64)
    return pbo_cscv_from_blocks(sums, sumsqs, counts, blocks=blocks)


def pbo_cscv_from_blocks(
    sums: npt.ArrayLike, sumsqs: npt.ArrayLike, counts: npt.ArrayLike, blocks: int = CSCV_BLOCKS
) -> PboResult:
    """PBO by CSCV from per-block moments: S x M sums and sums of squares of per-period returns, and bar counts.

    `counts` is (S,) (aligned blocks, the usual case) or S x M. The S sketch blocks are grouped into `blocks`
    contiguous CSCV blocks (sizes differing by at most one sketch block), so the Sharpe ratio of any union of blocks is
    exact: mean = sum/n, variance = (sumsq - sum^2/n)/(n - 1). For every one of the C(blocks, blocks/2) combinations:
    IS = the union of half of the blocks, OOS = the rest; n* = the strategy with the best IS Sharpe (the first on a
    tie); w = its OOS rank (1 = worst, M = best, ties averaged) / (M + 1); lambda = ln(w / (1 - w)). PBO = the
    fraction of combinations with lambda <= 0. A segment with zero variance (no trade in it) has Sharpe 0.
    """
    s = np.asarray(sums, dtype=np.float64)
    q = np.asarray(sumsqs, dtype=np.float64)
    if s.ndim != 2 or q.shape != s.shape:
        raise ValueError(f"sums and sumsqs must be S x M matrices of one shape, got {s.shape} and {q.shape}")
    n_blocks, m = (int(d) for d in s.shape)
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    try:
        c = np.broadcast_to(c, s.shape)
    except ValueError:
        raise ValueError(f"counts must have shape ({n_blocks},) or {s.shape}, got {np.shape(counts)}") from None
    if not (np.isfinite(s).all() and np.isfinite(q).all() and np.isfinite(c).all()):
        raise ValueError("block sums, sums of squares and counts must be finite")
    if (c < 0).any():
        raise ValueError("block counts must be >= 0")
    if m < 2:
        raise ValueError(f"CSCV needs at least 2 strategies, got {m}")
    if blocks < 2 or blocks % 2 or n_blocks < blocks:
        raise ValueError(f"CSCV needs an even number of blocks >= 2 and <= the {n_blocks} given, got {blocks}")
    groups = np.array_split(np.arange(n_blocks), blocks)
    starts = np.array([int(g[0]) for g in groups])
    s = np.add.reduceat(s, starts, axis=0)
    q = np.add.reduceat(q, starts, axis=0)
    c = np.add.reduceat(c, starts, axis=0)

    combos = np.array(list(itertools.combinations(range(blocks), blocks // 2)), dtype=np.intp)
    n_comb = len(combos)
    is_mask = np.zeros((n_comb, blocks), dtype=np.float64)
    is_mask[np.arange(n_comb)[:, None], combos] = 1.0
    oos_mask = 1.0 - is_mask
    if (is_mask @ c < 2).any() or (oos_mask @ c < 2).any():
        raise ValueError("every half of the CSCV blocks needs at least 2 periods")

    two_ranks = np.empty(n_comb, dtype=np.float64)  # 2 x rank: an integer, so the median test below is exact
    sel_is = np.empty(n_comb, dtype=np.float64)
    sel_oos = np.empty(n_comb, dtype=np.float64)
    for lo in range(0, n_comb, _CSCV_CHUNK):
        hi = min(lo + _CSCV_CHUNK, n_comb)
        sr_is = _segment_sharpe(is_mask[lo:hi] @ s, is_mask[lo:hi] @ q, is_mask[lo:hi] @ c)
        sr_oos = _segment_sharpe(oos_mask[lo:hi] @ s, oos_mask[lo:hi] @ q, oos_mask[lo:hi] @ c)
        rows = np.arange(hi - lo)
        best = np.argmax(sr_is, axis=1)
        chosen = sr_oos[rows, best][:, None]
        below = np.count_nonzero(sr_oos < chosen, axis=1)
        ties = np.count_nonzero(sr_oos == chosen, axis=1) - 1
        two_ranks[lo:hi] = 2.0 * (1 + below) + ties
        sel_is[lo:hi] = sr_is[rows, best]
        sel_oos[lo:hi] = sr_oos[rows, best]

    w = two_ranks / (2.0 * (m + 1))
    lambdas = np.log(w / (1.0 - w))
    pbo = float(np.count_nonzero(two_ranks <= m + 1)) / n_comb
    dx = sel_is - sel_is.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (sel_oos - sel_oos.mean())) / sxx if sxx > 0 else None
    return PboResult(
        pbo=pbo,
        n_combinations=n_comb,
        lambdas=lambdas,
        degradation_slope=slope,
        prob_oos_loss=float(np.count_nonzero(sel_oos < 0)) / n_comb,
    )


def _segment_sharpe(s: FloatArray, q: FloatArray, n: FloatArray) -> FloatArray:
    """Per-period Sharpe (sample std, ddof 1) from sums, sums of squares and counts; 0 where the variance is 0."""
    mean = s / n
    var = (q - s * mean) / (n - 1.0)
    # Rounding in sumsq - sum^2/n leaves a tiny residue for a constant segment: below this it is no variance.
    spread = var > ZERO_SPREAD * (q / n)
    out = np.zeros_like(mean)
    np.divide(mean, np.sqrt(np.where(spread, var, 1.0)), out=out, where=spread)
    return out
