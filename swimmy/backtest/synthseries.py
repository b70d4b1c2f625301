"""The generated series of synthetic FX universes whose answer is known, to prove the school's gates (SPEC §5).

In memory only: swimmy/backtest/synth.py writes these series as data files with their answer key, and is
where callers import them from.

Two processes, both on the log price, both deterministic from a seed (`numpy.random.default_rng(seed)`):

- `random_walk`: zero drift, so no rule has an edge and the school must promote nothing. The shocks are
  Gaussian iid (`kind="gaussian"`) or GARCH(1,1) with standardised Student-t shocks (`kind="garch"`: nu = 5,
  alpha = 0.05, beta = 0.93, omega set so that the unconditional volatility is `vol_per_year`): fat tails and
  volatility clustering as in real FX, still without any predictable direction.
- `planted_trend`: the same noise plus a drift that follows an Ornstein-Uhlenbeck process (an AR(1) in bars,
  half-life `half_life` bars, stationary standard deviation `strength` x the per-bar noise volatility). The
  drift persists for hundreds of bars, so slow trend followers (sma_cross / ema_cross with slow periods of
  50-200, donchian and bollinger breakouts) earn it, while a fast mean-reversion rule does not.

Bars. Every bar is the max/min of a real path: `SUBSTEPS` (12) sub-steps of a Brownian bridge from the bar's
open to its close with the bar's own volatility (conditional on the bar's return, the path inside a Gaussian
walk *is* such a bridge), and between the sub-steps the bridge's exact maximum and minimum (drawn from their
closed form), so the high and low are those of the continuous path: with the sub-steps' values alone the range
was short and a stop (filled at its level) had an edge on a random walk. The next bar opens at the previous
close (no gaps), so high/low are prices that traded, low <= open, close <= high and all prices are > 0, and
no order type (SL/TP touched by high/low) gains or loses from how bars are built. Timestamps are the start
of each bar in Unix seconds, weekdays only (FX: Monday 00:00 to Friday 24:00 UTC, nothing on Saturday or
Sunday), from `START_TS` (Monday 2015-01-05 00:00 UTC) at the timeframe's step, so that `BARS_PER_YEAR`
(H1: 6,240 = 24 x 5 x 52) annualises correctly.
Volume is a synthetic tick count (the path's absolute log-price variation in units of 1e-5); readers ignore it.

Volatility. `vol_per_year` (default 8%, like EURUSD) is the annualised standard deviation of the bar-to-bar log
returns, drift included: with a price near 1.10 an H1 bar moves ~11 pips, so the default costs (spread 0.8 +
slippage 0.2 pips per round trip) weigh on fast rules as in real EURUSD. The log price has zero drift in a random
walk (the price itself drifts up by sigma^2 / 2 per bar, an annualised Sharpe of ~0.04 for buy-and-hold: nothing).
A planted trend moves more over long horizons than its bar volatility says, which is what a trend is:
`variance_ratio` gives the exact factor, for the defaults 1.6 over a week (120 H1 bars), 3.0 over a month and
5.0 over a year, i.e. the yearly moves have a volatility of ~18% instead of 8%.

Calibration of `PLANTED_TREND_STRENGTH` = 0.077 with `PLANTED_TREND_HALF_LIFE` = 250 bars
(`bench/synth_calibration.py`; H1, 30,000 bars, defaults otherwise; costs spread 0.8 + slippage 0.2 pips, pip
0.0001; `swimmy.backtest.engine.run_backtest`): the best annualised Sharpe of sma_cross over fast in
{5, 10, 20, 30} x slow in {50, 100, 150, 200} (16 rules), and the params that reached it:

    seed   planted trend            random walk (gaussian)   random walk (garch)
    0      3.27  (10/200)           0.30  (5/100)            0.58
    1      1.93  (30/100)          -0.26  (5/50)            -0.08
    2      2.90  (30/200)           0.77  (10/50)            0.46
    3      2.85  (30/150)           0.43  (30/100)           0.37
    4      3.31  (30/150)           0.38  (20/100)           0.73
    mean   2.85  (range 1.93..3.31) 0.32  (-0.26..0.77)      0.41  (-0.08..0.73)

Over seeds 0-99: planted trend 3.00 mean, 0.55 standard deviation, range 1.65..4.47 (GARCH-t noise: 3.10,
0.66); random walk 0.34, 0.37, range -0.47..1.14 (GARCH-t: 0.34, 0.43, -0.90..1.47). On the planted trend the
other trend followers earn as much (best ema_cross 3.13, donchian 3.04, bollinger 3.10 on average), and the best
rsi_reversion of period {7, 14} x (lower, upper) {(20, 80), (30, 70)} loses (-1.60 on average, never above 0).
The spread between seeds is real: ~4.8 years hold only 120 drift half-lives, so the planted edge itself varies.

The same process runs in bars on every timeframe (strength and half-life are per bar), so on another timeframe
the annualised Sharpe of the same rules scales with sqrt(BARS_PER_YEAR[tf] / 6240).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from swimmy.backtest.strategies import BARS_PER_YEAR

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NoiseKind = Literal["gaussian", "garch"]
GenerateKind = Literal["random_walk", "planted_trend"]

#: Monday 2015-01-05 00:00:00 UTC: the first bar of every synthetic series.
START_TS: Final = 1_420_416_000
#: The step of each timeframe in seconds.
TIMEFRAME_SECONDS: Final[dict[str, int]] = {
    "M1": 60,
    "M5": 300,
    "M15": 900,
    "M30": 1_800,
    "H1": 3_600,
    "H4": 14_400,
    "D1": 86_400,
}
_DAY: Final = 86_400
_WEEK: Final = 7 * _DAY
_TRADING_DAYS_PER_WEEK: Final = 5

#: Sub-steps of the intrabar path from which each bar's high and low are taken.
SUBSTEPS: Final = 12
#: Bars per block when building intrabar paths (bounds memory for long series; part of the seed's meaning).
_BLOCK: Final = 8_192

DEFAULT_START_PRICE: Final = 1.10
DEFAULT_VOL_PER_YEAR: Final = 0.08
DEFAULT_BARS: Final = 30_000

GARCH_ALPHA: Final = 0.05
GARCH_BETA: Final = 0.93
STUDENT_T_DOF: Final = 5.0

#: The stationary standard deviation of the planted drift per bar, as a multiple of the per-bar noise volatility;
#: calibrated so that the best slow sma_cross earns an annualised Sharpe of about 3 on 30,000 H1 bars.
PLANTED_TREND_STRENGTH: Final = 0.077
#: The half-life of the planted drift, in bars.
PLANTED_TREND_HALF_LIFE: Final = 250.0

_LOG_TICK: Final = 1e-5


@dataclass(frozen=True, eq=False)
class SynthSeries:
    """A generated series: bars at full float precision, plus what generated them (the answer key)."""

    timeframe: str
    timestamps: IntArray  # Unix seconds, weekdays only, one timeframe step apart within a week
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: IntArray  # synthetic tick count
    drift: FloatArray  # the planted per-bar log drift (all 0 for a random walk)
    sigma: FloatArray  # the per-bar conditional noise volatility (log units)
    kind: str  # "random_walk" | "planted_trend"
    seed: int

    def __len__(self) -> int:
        """The number of bars."""
        return len(self.timestamps)

    @property
    def log_returns(self) -> FloatArray:
        """log(close[t] / close[t-1]) for t >= 1 (the first bar's own open-to-close move is left out)."""
        out: FloatArray = np.diff(np.log(self.close))
        return out


def timestamps(n_bars: int, timeframe: str = "H1", *, start_ts: int = START_TS) -> IntArray:
    """Bar start times of `n_bars` weekday-only bars from `start_ts` (a Monday 00:00 UTC) at the timeframe's step."""
    step = _step(timeframe)
    if n_bars < 0:
        raise ValueError(f"n_bars must be >= 0, got {n_bars}")
    if (start_ts - 4 * _DAY) % _WEEK != 0:  # 1970-01-05 was a Monday
        raise ValueError(f"start_ts must be a Monday 00:00 UTC, got {start_ts}")
    per_week = _TRADING_DAYS_PER_WEEK * (_DAY // step)
    i = np.arange(n_bars, dtype=np.int64)
    out: IntArray = start_ts + (i // per_week) * _WEEK + (i % per_week) * step
    return out


def random_walk(
    n_bars: int,
    seed: int,
    *,
    timeframe: str = "H1",
    start_price: float = DEFAULT_START_PRICE,
    vol_per_year: float = DEFAULT_VOL_PER_YEAR,
    kind: NoiseKind = "gaussian",
) -> SynthSeries:
    """A zero-drift log-price random walk: Gaussian iid shocks, or GARCH(1,1) with standardised Student-t shocks.

    `vol_per_year` is the annualised (unconditional) standard deviation of the bar log returns.
    """
    return _generate("random_walk", n_bars, seed, timeframe, start_price, vol_per_year, kind, 0.0, 1.0)


def planted_trend(
    n_bars: int,
    seed: int,
    *,
    timeframe: str = "H1",
    strength: float = PLANTED_TREND_STRENGTH,
    half_life: float = PLANTED_TREND_HALF_LIFE,
    start_price: float = DEFAULT_START_PRICE,
    vol_per_year: float = DEFAULT_VOL_PER_YEAR,
    kind: NoiseKind = "gaussian",
) -> SynthSeries:
    """A random walk plus an Ornstein-Uhlenbeck drift that slow trend followers can earn.

    The drift per bar is an AR(1) with half-life `half_life` bars whose stationary standard deviation is
    `strength` x the per-bar noise volatility; the noise is scaled down so that the bar log returns, drift
    included, still have an annualised standard deviation of `vol_per_year`. `strength=0` is a random walk.
    """
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"strength must be a finite number >= 0, got {strength!r}")
    if not (math.isfinite(half_life) and half_life > 0):
        raise ValueError(f"half_life must be a finite number of bars > 0, got {half_life!r}")
    return _generate("planted_trend", n_bars, seed, timeframe, start_price, vol_per_year, kind, strength, half_life)


def variance_ratio(
    horizon: int, *, strength: float = PLANTED_TREND_STRENGTH, half_life: float = PLANTED_TREND_HALF_LIFE
) -> float:
    """Var of a `horizon`-bar log return / (horizon x var of one bar's): how much more a planted trend moves
    over `horizon` bars than its bar volatility says (exact for the process; 1 for a random walk, strength 0).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 bar, got {horizon}")
    phi = math.pow(0.5, 1.0 / half_life)
    v = strength * strength  # drift variance in units of the noise variance
    # Var(sum of `horizon` consecutive values of a stationary AR(1) with variance v).
    drift = v * (horizon * (1 + phi) / (1 - phi) - 2 * phi * (1 - math.pow(phi, horizon)) / (1 - phi) ** 2)
    return (horizon + drift) / (horizon * (1.0 + v))


# --- the processes ---------------------------------------------------------------------------------------------------


def _generate(
    kind: str,
    n_bars: int,
    seed: int,
    timeframe: str,
    start_price: float,
    vol_per_year: float,
    noise: str,
    strength: float,
    half_life: float,
) -> SynthSeries:
    _step(timeframe)
    try:
        n_bars = operator.index(n_bars) if not isinstance(n_bars, bool) else -1
    except TypeError:
        raise ValueError(f"n_bars must be a whole number >= 1, got {n_bars!r}") from None
    if n_bars < 1:
        raise ValueError(f"n_bars must be a whole number >= 1, got {n_bars!r}")
    if not (math.isfinite(start_price) and start_price > 0):
        raise ValueError(f"start_price must be a finite price > 0, got {start_price!r}")
    if not (math.isfinite(vol_per_year) and vol_per_year > 0):
        raise ValueError(f"vol_per_year must be a finite number > 0, got {vol_per_year!r}")
    if noise not in ("gaussian", "garch"):
        raise ValueError(f"unknown noise kind {noise!r}: expected gaussian or garch")
    rng = np.random.default_rng(seed)
    bar_vol = vol_per_year / math.sqrt(BARS_PER_YEAR[timeframe])
    # Noise and drift are independent: their variances add up to the bar variance.
    noise_vol = bar_vol / math.sqrt(1.0 + strength * strength)
    if noise == "garch":
        shocks, sigma = _garch_t(rng, n_bars, noise_vol)
    else:
        shocks = rng.standard_normal(n_bars) * noise_vol
        sigma = np.full(n_bars, noise_vol)
    drift = _ou_drift(rng, n_bars, strength * noise_vol, half_life) if strength > 0 else np.zeros(n_bars)
    bar_return = shocks + drift
    log_close = math.log(start_price) + np.cumsum(bar_return)
    log_open = np.empty(n_bars)
    log_open[0] = math.log(start_price)
    log_open[1:] = log_close[:-1]
    up, down, variation = _intrabar(rng, bar_return, sigma)
    close = np.exp(log_close)
    open_ = np.empty(n_bars)
    open_[0] = start_price
    open_[1:] = close[:-1]  # the same floats: open[t] == close[t-1] exactly
    high = np.maximum(np.maximum(open_, close), np.exp(log_open + up))
    low = np.minimum(np.minimum(open_, close), np.exp(log_open - down))
    volume = np.maximum(1, np.rint(variation / _LOG_TICK)).astype(np.int64)
    return SynthSeries(
        timeframe=timeframe,
        timestamps=timestamps(n_bars, timeframe),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        drift=drift,
        sigma=sigma,
        kind=kind,
        seed=seed,
    )


def _garch_t(rng: np.random.Generator, n: int, vol: float) -> tuple[FloatArray, FloatArray]:
    """GARCH(1,1) shocks with standardised Student-t innovations; unconditional standard deviation `vol`."""
    nu = STUDENT_T_DOF
    z = rng.standard_t(nu, n) * math.sqrt((nu - 2.0) / nu)  # unit variance
    a, b = GARCH_ALPHA, GARCH_BETA
    var = vol * vol
    omega = var * (1.0 - a - b)
    sigma = np.empty(n)
    shocks = np.empty(n)
    s2 = var  # start at the unconditional variance
    zs = z.tolist()
    out_sigma: list[float] = []
    out_shock: list[float] = []
    for zi in zs:
        s = math.sqrt(s2)
        e = s * zi
        out_sigma.append(s)
        out_shock.append(e)
        s2 = omega + a * e * e + b * s2
    sigma[:] = out_sigma
    shocks[:] = out_shock
    return shocks, sigma


def _ou_drift(rng: np.random.Generator, n: int, sd: float, half_life: float) -> FloatArray:
    """An AR(1) drift (the discrete Ornstein-Uhlenbeck process): stationary sd `sd`, half-life in bars, no mean."""
    phi = math.pow(0.5, 1.0 / half_life)
    innovations = rng.standard_normal(n) * (sd * math.sqrt(1.0 - phi * phi))
    innovations[0] = rng.standard_normal() * sd  # start in the stationary distribution
    return _ar1(innovations, phi)


def _ar1(x: FloatArray, phi: float) -> FloatArray:
    """y[0] = x[0], y[t] = phi * y[t-1] + x[t], in closed form per block (phi^-k stays far from overflow)."""
    out = np.empty(len(x))
    if len(x) == 0:
        return out
    if phi <= 0.0:
        out[:] = x
        return out
    block = len(x) if -math.log(phi) * len(x) <= 300.0 else max(1, int(300.0 / -math.log(phi)))
    k = np.arange(block, dtype=np.float64)
    grow = phi**-k
    decay = phi**k
    prev = 0.0
    for b0 in range(0, len(x), block):
        seg = x[b0 : b0 + block]
        m = len(seg)
        y = (np.cumsum(seg * grow[:m]) + prev * phi) * decay[:m]
        out[b0 : b0 + m] = y
        prev = float(y[-1])
    return out


def _intrabar(
    rng: np.random.Generator, bar_return: FloatArray, sigma: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per bar, from a Brownian bridge of SUBSTEPS steps from 0 to the bar's log return with the bar's volatility:
    the path's maximum above the open, its depth below the open (both >= 0) and its total absolute variation."""
    n = len(bar_return)
    k = SUBSTEPS
    up = np.empty(n)
    down = np.empty(n)
    variation = np.empty(n)
    frac = np.arange(1, k + 1, dtype=np.float64) / k
    for b0 in range(0, n, _BLOCK):
        r = bar_return[b0 : b0 + _BLOCK]
        s = sigma[b0 : b0 + _BLOCK]
        walk = np.cumsum(rng.standard_normal((len(r), k)), axis=1) * (s / math.sqrt(k))[:, None]
        path = walk + (r - walk[:, -1])[:, None] * frac[None, :]  # a bridge: path[:, -1] == r
        path[:, -1] = r
        # The extremes between the sub-steps, drawn exactly: given a segment's ends a and b and its variance v,
        # a Brownian bridge's maximum is (a + b + sqrt((b - a)^2 - 2 v ln U)) / 2 (and its minimum the mirror),
        # and the segments are independent given their ends. The sub-steps' own values alone understate the
        # range, which hands stop orders an edge on a random walk (a stop is filled at its level, the bar moved
        # past it); the exact extremes make the high and low true to the path, so no order type has one.
        starts = np.concatenate((np.zeros((len(r), 1)), path[:, :-1]), axis=1)
        var = (s * s / k)[:, None]
        gap = (path - starts) ** 2
        seg_max = (starts + path + np.sqrt(gap - 2.0 * var * np.log(rng.uniform(size=path.shape)))) / 2.0
        seg_min = (starts + path - np.sqrt(gap - 2.0 * var * np.log(rng.uniform(size=path.shape)))) / 2.0
        up[b0 : b0 + len(r)] = np.maximum(seg_max.max(axis=1), 0.0)
        down[b0 : b0 + len(r)] = np.maximum(-seg_min.min(axis=1), 0.0)
        steps = np.diff(path, axis=1, prepend=0.0)
        variation[b0 : b0 + len(r)] = np.abs(steps).sum(axis=1)
    return up, down, variation


def _step(timeframe: str) -> int:
    if timeframe not in TIMEFRAME_SECONDS or timeframe not in BARS_PER_YEAR:
        raise ValueError(f"unknown timeframe {timeframe!r}; known: {' '.join(TIMEFRAME_SECONDS)}")
    return TIMEFRAME_SECONDS[timeframe]
