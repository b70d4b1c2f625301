"""The engine's indicators and signals (engine.py): bars -> per-bar indicator values -> each family's signals.

Indicators are full-length arrays, NaN until defined. A family's signals are read at each bar's close: the
cross families' state, the others' events; `entry_signals` turns them into the bars whose open they act at.
The passes over the bars are compiled loops (kernelsignals.py, kerneltrades.py), which import numba (~0.2 s
and ~80 MB of RSS): they are imported inside the functions that compute, so processes that only need Bars
(the daemon, the data tools) never load it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from swimmy.backtest.strategies import StrategySpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SignalArray = npt.NDArray[np.int8]


# --- indicators: full-length arrays, NaN until defined -------------------------------------------------------------


def sma(x: FloatArray, n: int) -> FloatArray:
    """Simple moving average over n bars."""
    return _window_means(_prefix_sums(x), float(x[0]) if len(x) else 0.0, n)


def _prefix_sums(x: FloatArray) -> FloatArray:
    """cs[i] = Σ (x[:i] - x[0]): deviations from the first price keep the sum small and its rounding error tiny."""
    cs = np.empty(len(x) + 1)
    cs[0] = 0.0
    if len(x):
        np.cumsum(x - x[0], out=cs[1:])
    return cs


def _window_means(cs: FloatArray, base: float, n: int) -> FloatArray:
    out = np.full(len(cs) - 1, np.nan)
    if 0 < n < len(cs):
        out[n - 1 :] = (cs[n:] - cs[:-n]) / n + base
    return out


def ema(x: FloatArray, n: int) -> FloatArray:
    """Exponential moving average, alpha = 2/(n+1), seeded with SMA(n) at bar n-1."""
    from swimmy.backtest import kernelsignals  # numba on first use: see the module docstring

    x = _floats(x)
    out = np.full(len(x), np.nan)
    if 0 < n <= len(x):
        kernelsignals.ewm(x, n - 1, float(x[:n].mean()), 2.0 / (n + 1), out)
    return out


def rsi(close: FloatArray, period: int) -> FloatArray:
    """Wilder's RSI: averages seeded with the simple mean of the first `period` gains/losses, then alpha = 1/period."""
    from swimmy.backtest import kernelsignals

    close = _floats(close)
    out = np.full(len(close), np.nan)
    if len(close) > period:
        change = np.diff(close[: period + 1])
        gain_seed = float(np.maximum(change, 0.0).mean())
        loss_seed = float(np.maximum(-change, 0.0).mean())
        kernelsignals.rsi_values(close, period, gain_seed, loss_seed, out)
    return out


def bollinger(close: FloatArray, period: int, k: float) -> tuple[FloatArray, FloatArray]:
    """Upper and lower Bollinger bands: SMA(period) ± k·std, std the population std over the same window."""
    from swimmy.backtest import kernelsignals

    close = _floats(close)
    upper, lower = np.empty(len(close)), np.empty(len(close))
    kernelsignals.bollinger_breakouts(close, period, float(k), upper, lower, np.empty(0, dtype=np.int8))
    return upper, lower


def rolling_max(x: FloatArray, w: int) -> FloatArray:
    """out[i] = max(x[i : i + w]) for every full window (van Herk/Gil-Werman: O(n) whatever w)."""
    from swimmy.backtest import kernelsignals

    x = _floats(x)
    out = np.empty(max(len(x) - w + 1, 0))
    if len(out):
        kernelsignals.rolling_max(x, w, 1.0, out)
    return out


def _floats(x: FloatArray) -> FloatArray:
    """x as a plain float64 array: what a compiled loop takes (an ndarray subclass or a list is not)."""
    return np.asarray(x, dtype=np.float64)


# --- signals ---------------------------------------------------------------------------------------------------------


def family_signals(
    spec: StrategySpec, o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray
) -> tuple[SignalArray, bool]:
    """Per bar, read at its close: the cross families' state (+1/-1, 0 = no change) or the others' signal events."""
    from swimmy.backtest import kernelsignals

    p = spec.params
    out = np.empty(len(c), dtype=np.int8)
    if spec.family == "sma_cross":
        kernelsignals.sma_cross_states(c, int(p["fast"]), int(p["slow"]), TIE_TOLERANCE, out)
        return out, True
    if spec.family == "ema_cross":
        fast, slow = int(p["fast"]), int(p["slow"])
        # ema()'s seeds, SMA(n) at bar n-1; with fewer than `slow` bars there is no slow EMA (all 0).
        seeds = (float(c[:fast].mean()), float(c[:slow].mean())) if slow <= len(c) else (0.0, 0.0)
        kernelsignals.ema_cross_states(c, fast, slow, *seeds, TIE_TOLERANCE, out)
        return out, True
    period = int(p["period"])
    if spec.family == "rsi_reversion":
        kernelsignals.level_cross_events(rsi(c, period), float(p["lower"]), float(p["upper"]), out)
    elif spec.family == "bollinger_breakout":
        no_bands = np.empty(0)
        kernelsignals.bollinger_breakouts(c, period, float(p["k"]), no_bands, no_bands, out)
    else:
        # donchian_breakout: the channel of bar t is bars t-period .. t-1 (bar t excluded).
        kernelsignals.channel_breakout_events(h, lo, c, period, out)
    return out, False


# Two averages that are equal in exact arithmetic differ by rounding noise (~1e-14 on FX quotes) in
# floats, and a noisy sign at a tie is a false cross (SPEC §4: equal changes nothing). A difference
# within this share of the price is a tie; real crosses are millions of times wider.
TIE_TOLERANCE = 1e-11


def _cross_state(fast: FloatArray, slow: FloatArray, c: FloatArray) -> SignalArray:
    from swimmy.backtest import kernelsignals

    out = np.empty(len(c), dtype=np.int8)
    kernelsignals.cross_states(_floats(fast), _floats(slow), _floats(c), TIE_TOLERANCE, out)
    return out


def entry_signals(ev: SignalArray, s: int, *, is_state: bool) -> tuple[IntArray, IntArray]:
    """The range-local bars whose open a signal acts at (read at the close before) and the signals' sides.

    `ev` holds one value per bar up to the range's end. A cross family's first value is the state it holds
    at the close before the range (it holds that side from the range's first open), then each change of
    state; the other families' values are their signal events as they are. A signal on the last bar is dropped.
    """
    from swimmy.backtest import kerneltrades

    at = np.empty(len(ev) - s, dtype=np.int64)
    side = np.empty(len(ev) - s, dtype=np.int64)
    k = (kerneltrades.state_entries if is_state else kerneltrades.event_entries)(ev, s, at, side)
    return at[:k], side[:k]
