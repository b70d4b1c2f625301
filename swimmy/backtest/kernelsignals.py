"""The engine's compiled indicators and signals (numba, kernels.py): one pass over the bars each.

The recursions (EMA, Wilder's RSI) run bar by bar, the windows (SMA, Bollinger bands, Donchian channels)
are kept in ring buffers or blocks, and each family's signal is written without branches. engine.py
imports this module only when it computes (numba: see kernels.py).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from swimmy.backtest.kernels import _compiled

FloatArray = npt.NDArray[np.float64]
SignalArray = npt.NDArray[np.int8]

# Every array as long as the bars is allocated by the caller with numpy, which asks the kernel for huge pages:
# a fresh 24 MB array from numba's allocator costs ~6,000 page faults, as much time as the loop that fills it.


@_compiled
def _tie_side(diff: float, tol: float) -> np.int8:
    """+1 above the tie band, -1 below it, 0 inside it or undefined (NaN)."""
    # Without branches, here and in the other signals: a branch on a value that waits for a division would
    # miss at every change, and each miss throws away the divisions already under way (~1/3 of the time).
    return np.int8(diff > tol) - np.int8(diff < -tol)


@_compiled
def cross_states(fast: FloatArray, slow: FloatArray, c: FloatArray, tie: float, out: SignalArray) -> None:
    """out[i] = +1 while fast - slow > tie·|close|, -1 while it is below -tie·|close|, else 0."""
    for i in range(len(c)):
        out[i] = _tie_side(fast[i] - slow[i], tie * abs(c[i]))


@_compiled
def sma_cross_states(c: FloatArray, fast: int, slow: int, tie: float, out: SignalArray) -> None:
    """cross_states of SMA(fast) and SMA(slow), from prefix sums of c - c[0] kept in a ring buffer.

    The means are engine.sma's to the bit: (cs[i+1] - cs[i+1-n]) / n + c[0] with cs the running sum.
    """
    m = len(c)
    out[:] = 0
    if slow > m:
        return
    size = 1
    while size < slow + 1:
        size *= 2
    mask = size - 1
    ring = np.empty(size)
    ring[0] = 0.0
    base = c[0]
    cs = 0.0
    for i in range(m):
        cs += c[i] - base
        ring[(i + 1) & mask] = cs
        if i >= slow - 1:
            mean_fast = (cs - ring[(i + 1 - fast) & mask]) / fast + base
            mean_slow = (cs - ring[(i + 1 - slow) & mask]) / slow + base
            out[i] = _tie_side(mean_fast - mean_slow, tie * abs(c[i]))


@_compiled
def _ewm_step(y: float, x: float, alpha: float) -> float:
    """One step of an exponentially weighted mean (EMA, Wilder's averages): (1 - alpha)·y + alpha·x."""
    return (1.0 - alpha) * y + alpha * x


@_compiled
def ewm(x: FloatArray, start: int, seed: float, alpha: float, out: FloatArray) -> None:
    """out[start] = seed, then out[t] = (1 - alpha)·out[t-1] + alpha·x[t]; NaN before start."""
    out[: min(start, len(x))] = np.nan
    if start >= len(x):
        return
    y = seed
    out[start] = y
    for t in range(start + 1, len(x)):
        y = _ewm_step(y, x[t], alpha)
        out[t] = y


@_compiled
def ema_cross_states(
    c: FloatArray, fast: int, slow: int, fast_seed: float, slow_seed: float, tie: float, out: SignalArray
) -> None:
    """cross_states of EMA(fast) and EMA(slow) (ewm from bar n-1 with alpha 2/(n+1)) in one pass, no arrays."""
    m = len(c)
    out[:] = 0
    if slow > m:
        return
    fast_alpha = 2.0 / (fast + 1)
    slow_alpha = 2.0 / (slow + 1)
    fast_y = fast_seed
    for t in range(fast, slow - 1):
        fast_y = _ewm_step(fast_y, c[t], fast_alpha)
    slow_y = slow_seed
    for t in range(slow - 1, m):
        fast_y = _ewm_step(fast_y, c[t], fast_alpha)
        if t >= slow:
            slow_y = _ewm_step(slow_y, c[t], slow_alpha)
        out[t] = _tie_side(fast_y - slow_y, tie * abs(c[t]))


@_compiled
def rsi_values(c: FloatArray, period: int, gain_seed: float, loss_seed: float, out: FloatArray) -> None:
    """Wilder's RSI from bar `period` on (NaN before): the averages start at the seeds, then alpha = 1/period."""
    m = len(c)
    out[: min(period, m)] = np.nan
    alpha = 1.0 / period
    gain, loss = gain_seed, loss_seed
    for t in range(period, m):
        if t > period:
            change = c[t] - c[t - 1]
            gain = _ewm_step(gain, max(change, 0.0), alpha)
            loss = _ewm_step(loss, max(-change, 0.0), alpha)
        total = gain + loss
        # No movement at all over the window: neither overbought nor oversold.
        out[t] = 100.0 * gain / total if total > 0 else 50.0


@_compiled
def level_cross_events(value: FloatArray, lower: float, upper: float, out: SignalArray) -> None:
    """out[t] = +1 where value crosses up through lower (prev < lower <= now), -1 down through upper, else 0."""
    out[:1] = 0
    for t in range(1, len(value)):
        prev, now = value[t - 1], value[t]
        out[t] = np.int8((prev < lower) & (now >= lower)) - np.int8((prev > upper) & (now <= upper))


@_compiled
def bollinger_breakouts(
    c: FloatArray, period: int, k: float, upper: FloatArray, lower: FloatArray, out: SignalArray
) -> None:
    """The bands SMA ± k·sd (the population standard deviation) into upper and lower (NaN until full), and into
    out +1 where the close crosses above the upper band, -1 where it crosses below the lower one, else 0. Arrays
    shorter than c are not written: the signals need no bands kept, the bands no signals.

    The means and variances come from running sums of c - c[0] and of its squares, kept in ring buffers.
    """
    m = len(c)
    bands, events = len(upper) == m, len(out) == m
    if bands:
        upper[: min(period - 1, m)] = np.nan
        lower[: min(period - 1, m)] = np.nan
    if events:
        out[: min(period, m)] = 0
    if period > m:
        return
    size = 1
    while size < period + 1:
        size *= 2
    mask = size - 1
    ring1 = np.empty(size)
    ring2 = np.empty(size)
    ring1[0] = 0.0
    ring2[0] = 0.0
    base = c[0]
    cs1 = 0.0
    cs2 = 0.0
    prev_up = np.nan
    prev_low = np.nan
    for i in range(m):
        dev = c[i] - base
        cs1 += dev
        cs2 += dev * dev
        ring1[(i + 1) & mask] = cs1
        ring2[(i + 1) & mask] = cs2
        if i < period - 1:
            continue
        mean = (cs1 - ring1[(i + 1 - period) & mask]) / period
        # E[x²] - E[x]² can round to a hair below 0 on a flat window.
        sigma = math.sqrt(max((cs2 - ring2[(i + 1 - period) & mask]) / period - mean * mean, 0.0))
        up = base + mean + k * sigma
        low = base + mean - k * sigma
        if bands:
            upper[i], lower[i] = up, low
        if events and i >= period:
            long = (c[i - 1] <= prev_up) & (c[i] > up)
            short = (c[i - 1] >= prev_low) & (c[i] < low)
            out[i] = np.int8(long) - np.int8(short)
        prev_up, prev_low = up, low


@_compiled
def rolling_max(x: FloatArray, w: int, sign: float, out: FloatArray) -> None:
    """out[i] = max(sign·x[i : i + w]) for every full window (len(x) - w + 1 of them); sign -1 gives -min.

    van Herk/Gil-Werman, O(n) whatever w: the windows starting in one block of w bars are the block's suffix
    maxima against the running maxima into the next block.
    """
    n = len(x)
    suffix = np.empty(w)
    for b0 in range(0, n - w + 1, w):
        v = sign * x[b0 + w - 1]
        suffix[w - 1] = v
        for i in range(w - 2, -1, -1):
            v = max(v, sign * x[b0 + i])
            suffix[i] = v
        out[b0] = suffix[0]
        running = -np.inf
        for i in range(1, min(w, n - w + 1 - b0)):
            running = max(running, sign * x[b0 + w - 1 + i])
            out[b0 + i] = max(suffix[i], running)


@_compiled
def channel_breakout_events(h: FloatArray, lo: FloatArray, c: FloatArray, period: int, out: SignalArray) -> None:
    """out[t] = +1 where the close tops the highest high of bars t-period .. t-1, -1 where it undercuts their
    lowest low, else 0 (0 before bar `period`).

    The channels are rolling_max's, a chunk of bars at a time into buffers that stay in the CPU's cache.
    """
    m = len(c)
    out[: min(period, m)] = 0
    chunk = 1 << 15
    highest = np.empty(chunk)
    neg_lowest = np.empty(chunk)
    for t0 in range(period, m, chunk):
        t1 = min(t0 + chunk, m)
        # Bar t's channel is the window of `period` bars starting at t - period.
        rolling_max(h[t0 - period : t1 - 1], period, 1.0, highest)
        rolling_max(lo[t0 - period : t1 - 1], period, -1.0, neg_lowest)
        for t in range(t0, t1):
            out[t] = np.int8(c[t] > highest[t - t0]) - np.int8(c[t] < -neg_lowest[t - t0])
