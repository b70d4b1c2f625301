"""Selection-bias statistics of the school (SPEC §5, docs/statistics.md): DSR, N_eff and PBO.

Pure numpy and the standard library; no I/O. Every Sharpe ratio here is PER PERIOD (per bar) unless a name says
otherwise; `annualise` converts for reporting.

- `expected_max_sharpe` (SR0) and `deflated_sharpe_ratio`: Bailey and López de Prado (2014), "The Deflated Sharpe
  Ratio", J. Portfolio Management 40(5).
- `effective_trials`: N_eff, the number of independent trials whose DSR gate sits at the 95% quantile of the best
  trial's Sharpe under the null, that quantile drawn by the Gaussian multiplier bootstrap of the maximum (Chernozhukov,
  Chetverikov and Kato 2013; max-T: Westfall and Young 1993) with the trials' correlation estimated from their return
  sketches. The draws' running maxima (`NullMaxima`) merge by an elementwise maximum, so the ledger keeps them as an
  aggregate beyond its per-trial rows.
- `pbo_cscv` / `pbo_cscv_from_blocks` (swimmy/school/pbo.py, re-exported here): the Probability of Backtest
  Overfitting by Combinatorially Symmetric Cross-Validation, Bailey, Borwein, López de Prado and Zhu (2016),
  J. Computational Finance 20(4).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from swimmy.backtest.metrics import probabilistic_sharpe_ratio
from swimmy.school.pbo import CSCV_BLOCKS, ZERO_SPREAD, PboResult, pbo_cscv, pbo_cscv_from_blocks

__all__ = [
    "CSCV_BLOCKS",
    "EULER_GAMMA",
    "GATE_LEVEL",
    "NULL_DRAWS",
    "NULL_SEED",
    "SKETCH_BLOCKS",
    "NullMaxima",
    "PboResult",
    "annualise",
    "deflated_sharpe_ratio",
    "effective_trials",
    "effective_trials_from_maxima",
    "expected_max_sharpe",
    "implied_trials",
    "null_maxima",
    "null_variance",
    "pbo_cscv",
    "pbo_cscv_from_blocks",
    "per_period",
]

EULER_GAMMA = 0.5772156649015329
# Columns of a trial's return sketch: sums of its per-bar returns over this many aligned blocks of the IS range.
# N_eff's calibration (docs/statistics.md) was measured with 32; another count changes it (re-run the calibration test).
SKETCH_BLOCKS = 32
# Draws of the best trial's null statistic (256 Gaussian multiplier vectors and their negatives). The 95% quantile is
# then known to about +-0.1 in Sharpe x sqrt(T) units; 10^6 trials x 32 blocks take ~0.5 s on one core.
NULL_DRAWS = 512
# The multipliers' default seed: fixed (a ledger's running maxima must always use the same draws) and arbitrary.
NULL_SEED = 0x5EED_D5B0
# The DSR gate N_eff is calibrated for: ranks.A.dsr (SPEC §5 default).
GATE_LEVEL = 0.95
# Bisection ceiling of `implied_trials` (the null quantile of 32-block sketches stays far below its SR0).
_MAX_IMPLIED_TRIALS = 1e15

_STD_NORMAL = NormalDist()
# Rows of sketches per chunk: bounds the draws x rows float32 projections (4 MiB at 256 draws).
_CHUNK_ROWS = 4096

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------------- units


def annualise(sr_per_period: float, periods_per_year: float) -> float:
    """An annualised Sharpe ratio from a per-period one: SR x sqrt(periods per year) (iid returns)."""
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year!r}")
    return sr_per_period * math.sqrt(periods_per_year)


def per_period(sr_annualised: float, periods_per_year: float) -> float:
    """A per-period Sharpe ratio from an annualised one: SR / sqrt(periods per year)."""
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year!r}")
    return sr_annualised / math.sqrt(periods_per_year)


# --------------------------------------------------------------------------------------------------- DSR


def null_variance(t: int) -> float:
    """V under the null hypothesis for a per-period Sharpe over t observations: 1 / (t - 1).

    The variance of a Sharpe estimate whose true value is 0 (SPEC §5): the school uses it instead of the
    cross-sectional variance of the trials' Sharpe ratios, which would count real differences between strategies as
    luck and shut out real edges.
    """
    if t < 2:
        raise ValueError(f"the null variance needs at least 2 observations, got {t}")
    return 1.0 / (t - 1)


def expected_max_sharpe(n_eff: float, variance: float) -> float:
    """SR0: the Sharpe ratio the best of n_eff independent luck-only trials is expected to show.

    SR0 = sqrt(V) x ((1 - g) Z(1 - 1/N) + g Z(1 - 1/(N e))), g the Euler-Mascheroni constant, Z the standard normal
    quantile (Bailey and López de Prado 2014, eq. for E[max SR]). In the units of `variance` (per period in the school).
    0.0 when N < 2: one trial is not selected from anything.
    """
    if not math.isfinite(n_eff):
        raise ValueError(f"n_eff must be finite, got {n_eff!r}")
    if not variance >= 0 or not math.isfinite(variance):
        raise ValueError(f"variance must be finite and >= 0, got {variance!r}")
    if n_eff < 2:
        return 0.0
    # Z(1 - p) = -Z(p): keeps precision (and a valid argument) when 1 - 1/N rounds to 1.
    z1 = -_STD_NORMAL.inv_cdf(1.0 / n_eff)
    z2 = -_STD_NORMAL.inv_cdf(1.0 / (n_eff * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(sr: float, t: int, skew: float, kurtosis: float, n_eff: float, variance: float) -> float:
    """DSR: the PSR of a per-period Sharpe `sr` over t observations against SR0 = expected_max_sharpe(n_eff, variance).

    z = (sr - SR0) sqrt(t - 1) / sqrt(1 - skew sr + (kurtosis - 1)/4 sr^2), DSR = Phi(z), with the NON-excess kurtosis
    (3 for normal returns). `variance` is per period (`null_variance(t)` in the school). Raises ValueError where the
    PSR is undefined (t < 2, or a non-positive variance term).
    """
    return probabilistic_sharpe_ratio(sr, t, skew, kurtosis, expected_max_sharpe(n_eff, variance))


# --------------------------------------------------------------------------------------------------- N_eff


@dataclass(frozen=True, eq=False)
class NullMaxima:
    """The mergeable aggregate of a set of trials' return sketches from which N_eff is computed exactly.

    For `draws` fixed Gaussian multiplier vectors g (from `seed`: draws/2 vectors and their negatives, antithetic
    pairs), `maxima[d]` is the largest z . g over the trials, z a trial's sketch centred and scaled to unit length.
    Under the null hypothesis (no trial has an edge) the trials' Sharpe ratios x sqrt(T) are jointly normal with the
    trials' correlation matrix, and z . g draws such a vector with the correlation estimated from the sketches, so the
    maxima are draws of the best trial's null statistic (the Gaussian multiplier bootstrap of a maximum, Chernozhukov,
    Chetverikov and Kato 2013). `n` counts the trials in it; `skipped` the rows left out (zero variance: no trade; or
    a non-finite value).

    Aggregates of disjoint trials with the same blocks, draws and seed merge by an elementwise maximum, so a ledger can
    keep one running `NullMaxima` (draws floats) for all its trials whatever it keeps per trial, and add a trial in
    O(blocks x draws).
    """

    maxima: FloatArray
    n: int
    skipped: int = 0
    blocks: int = SKETCH_BLOCKS
    seed: int = NULL_SEED

    @classmethod
    def empty(cls, blocks: int = SKETCH_BLOCKS, draws: int = NULL_DRAWS, seed: int = NULL_SEED) -> NullMaxima:
        """The aggregate of no trial (every maximum is -inf)."""
        _multipliers(blocks, draws, seed)  # validates
        return cls(np.full(draws, -np.inf, dtype=np.float64), 0, 0, blocks, seed)

    @property
    def draws(self) -> int:
        """The number of multiplier draws."""
        return int(self.maxima.shape[0])

    def merge(self, other: NullMaxima) -> NullMaxima:
        """The aggregate of both sets of trials (disjoint, sketched on the same blocks, same draws and seed)."""
        if (other.blocks, other.draws, other.seed) != (self.blocks, self.draws, self.seed):
            raise ValueError(
                f"can't merge maxima of (blocks, draws, seed) {(self.blocks, self.draws, self.seed)} and "
                f"{(other.blocks, other.draws, other.seed)}"
            )
        return NullMaxima(
            np.maximum(self.maxima, other.maxima),
            self.n + other.n,
            self.skipped + other.skipped,
            self.blocks,
            self.seed,
        )

    def add(self, sketches: npt.ArrayLike) -> NullMaxima:
        """This aggregate plus the trials in `sketches` (rows = trials)."""
        return self.merge(null_maxima(sketches, draws=self.draws, seed=self.seed))

    def null_quantile(self, level: float = GATE_LEVEL) -> float:
        """The `level` quantile of the best trial's Sharpe x sqrt(T) under the null; -inf with no trial."""
        if not 0.5 <= level < 1:
            raise ValueError(f"level must be in [0.5, 1), got {level!r}")
        if self.n == 0:
            return -math.inf
        return float(np.quantile(self.maxima, level))

    def n_eff(self, level: float = GATE_LEVEL) -> float:
        """N_eff of the trials in the aggregate (see `effective_trials_from_maxima`)."""
        return effective_trials_from_maxima(self.maxima, self.n, level)


@functools.lru_cache(maxsize=8)
def _multipliers(blocks: int, draws: int, seed: int) -> npt.NDArray[np.float32]:
    """The (draws/2) x blocks standard normal multipliers of a seed (read-only, cached), each used with its negative."""
    if blocks < 2:
        raise ValueError(f"a sketch needs at least 2 blocks, got {blocks}")
    if draws < 20 or draws % 2:
        raise ValueError(f"the null quantile needs an even number of draws >= 20, got {draws}")
    g = np.random.default_rng(seed).standard_normal((draws // 2, blocks)).astype(np.float32)
    g.flags.writeable = False
    return g


def null_maxima(sketches: npt.ArrayLike, *, draws: int = NULL_DRAWS, seed: int = NULL_SEED) -> NullMaxima:
    """The `NullMaxima` of a matrix of return sketches (rows = trials, columns = aligned blocks of the IS range).

    O(rows x blocks x draws) in float32 chunks. A row of zeros (a trial without trades), a constant row, or a row with
    a non-finite value has no correlation with anything and no Sharpe ratio to be selected for: it is counted in
    `skipped`, not in `n`.
    """
    x = np.asarray(sketches)
    if x.ndim != 2:
        raise ValueError(f"sketches must be a 2-D matrix (trials x blocks), got shape {x.shape}")
    blocks = int(x.shape[1])
    g = _multipliers(blocks, draws, seed)
    half = draws // 2
    maxima = np.full(draws, -np.inf, dtype=np.float32)
    n = 0
    skipped = 0
    for start in range(0, int(x.shape[0]), _CHUNK_ROWS):
        chunk = np.array(x[start : start + _CHUNK_ROWS], dtype=np.float64)
        total = chunk.sum(axis=1)
        finite = np.isfinite(total)
        if not finite.all():
            chunk[~finite] = 0.0
            total[~finite] = 0.0
        chunk -= (total / blocks)[:, None]
        centred_sq = np.einsum("ij,ij->i", chunk, chunk)
        magnitude_sq = centred_sq + total * total / blocks  # the row's sum of squares
        ok = finite & (centred_sq > ZERO_SPREAD * magnitude_sq) & (centred_sq > 0.0)
        kept = int(np.count_nonzero(ok))
        n += kept
        skipped += len(chunk) - kept
        if kept == 0:
            continue
        z = chunk[ok] if kept < len(chunk) else chunk
        z = (z / np.sqrt(centred_sq[ok])[:, None]).astype(np.float32)
        # (draws/2) x rows, reduced along the contiguous axis; the antithetic draw -g has max(-z . g) = -min(z . g).
        proj = g @ z.T
        np.maximum(maxima[:half], proj.max(axis=1), out=maxima[:half])
        np.maximum(maxima[half:], -proj.min(axis=1), out=maxima[half:])
    return NullMaxima(maxima.astype(np.float64), n, skipped, blocks, seed)


def implied_trials(threshold: float) -> float:
    """The N whose expected maximum E[max of N iid N(0, 1)] (the SR0 formula with V = 1) equals `threshold`.

    The inverse of the SR0 formula, by bisection on ln N (to 1e-10), for thresholds >= SR0(2) = 0.5197. The formula
    takes no value between 0 (N < 2, SPEC) and SR0(2): a threshold in that gap gives the N, 1 or 2, of the nearer
    one, so the gate of a single trial stays Z(level) while two or three independent trials get N = 2. Non-decreasing.
    """
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    at_two = expected_max_sharpe(2.0, 1.0)
    if threshold < at_two:
        return 1.0 if threshold <= at_two / 2 else 2.0
    if expected_max_sharpe(_MAX_IMPLIED_TRIALS, 1.0) <= threshold:
        return _MAX_IMPLIED_TRIALS
    lo, hi = math.log(2.0), math.log(_MAX_IMPLIED_TRIALS)
    while hi - lo > 1e-10:
        mid = 0.5 * (lo + hi)
        if expected_max_sharpe(math.exp(mid), 1.0) < threshold:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def effective_trials_from_maxima(maxima: npt.ArrayLike, n: int, level: float = GATE_LEVEL) -> float:
    """N_eff: the number of independent trials whose DSR gate at `level` sits where the best of these n trials does.

    q = the `level` quantile of `maxima` (draws of the best trial's null statistic, `NullMaxima.maxima`); N_eff =
    implied_trials(q - Z(level)): the DSR of a trial whose Sharpe x sqrt(T - 1) is q (normal returns) is then exactly
    `level`, so the gate DSR >= level lets through 1 - level of pure-noise universes. Clamped to [1, max(n, 1)].
    """
    m = np.asarray(maxima, dtype=np.float64)
    if m.ndim != 1 or len(m) == 0:
        raise ValueError(f"maxima must be a non-empty 1-D array, got shape {m.shape}")
    if not 0.5 <= level < 1:
        raise ValueError(f"level must be in [0.5, 1), got {level!r}")
    if n < 2 or not np.isfinite(m).all():
        return 1.0
    q = float(np.quantile(m, level))
    n_eff = implied_trials(q - _STD_NORMAL.inv_cdf(level))
    return min(max(n_eff, 1.0), float(n))


def effective_trials(
    sketches: npt.ArrayLike, *, level: float = GATE_LEVEL, draws: int = NULL_DRAWS, seed: int = NULL_SEED
) -> float:
    """N_eff, the effective number of independent trials, from a matrix of return sketches (rows = trials).

    Each column is the sum of a trial's per-bar returns over one aligned block of the IS range (`SKETCH_BLOCKS`).
    Exact for the given draws and seed (no subsampling): 10^6 x 32 float32 rows take about 0.5 s on one core with
    the default 512 draws. `level` is the DSR gate the number is calibrated for (`ranks.A.dsr`). See `NullMaxima` and
    `effective_trials_from_maxima`.
    """
    return null_maxima(sketches, draws=draws, seed=seed).n_eff(level)
