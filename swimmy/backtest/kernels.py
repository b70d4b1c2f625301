"""The backtest engine's compiled loops (numba): what numpy cannot vectorise, one pass over the bars each.

The recursions (EMA, Wilder's averages), the windows kept in ring buffers, each trade's walk to its stop
or target, the marked-to-market returns and the metrics' sums would each take several numpy passes and
temporaries, or a Python loop per trade. Every kernel does the arithmetic of the numpy code it replaced in
the same order (sequential prefix sums, numpy's pairwise summation), so results are unchanged to the bit;
only EMA and Wilder's averages now run their recursion bar by bar instead of in closed form, which moves
their values in the last bits (the signals read from them did not change on any test or benchmark series).

`cache=True` stores the machine code beside this file, so a worker process loads it (about 0.5 s for all of
them, on its first backtests) instead of compiling it (about 8 s, once per machine and source version);
`nogil=True` lets a worker's heartbeat thread run meanwhile. Importing numba costs about 0.2 s and 80 MB of
RSS, so engine.py and metrics.py import this module only when they compute: the daemon, which imports them
for Bars and constants, never loads numba.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SignalArray = npt.NDArray[np.int8]

_F = TypeVar("_F", bound=Callable[..., Any])

# EXIT_REASONS codes (engine.py)
_SIGNAL, _SL, _TP, _END = range(4)
# numpy's pairwise summation: blocks of at most this many values are summed with 8 accumulators.
_PAIRWISE_BLOCK = 128


def _compiled(fn: _F) -> _F:
    """numba.njit with the cache (worker processes load the machine code) and without the GIL.

    numpy's error model: x / 0 is inf or NaN, as in numpy, instead of a test and a ZeroDivisionError on
    every division, which keeps the compiler from vectorising a loop (no divisor here can be 0).
    """
    return cast(_F, njit(cache=True, nogil=True, error_model="numpy")(fn))


# --- indicators and signals --------------------------------------------------------------------------------------
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


# --- entries, exits and returns ----------------------------------------------------------------------------------


@_compiled
def state_entries(ev: SignalArray, s: int, at: IntArray, side: IntArray) -> int:
    """A cross family's state held at the close before bar s (entry at bar 0), then each change of state after it.

    Bars are range-local (the open that acts on a close); a change at the last close is dropped. Fills at[:k]
    and side[:k] (room for len(ev) - s) and returns k.
    """
    held = 0
    for i in range(s - 1, -1, -1):
        if ev[i] != 0:
            held = ev[i]
            break
    k = 0
    if held != 0:
        at[0], side[0] = 0, held
        k = 1
    for i in range(s, len(ev) - 1):
        if ev[i] != 0 and ev[i] != held:
            held = ev[i]
            at[k], side[k] = i + 1 - s, held
            k += 1
    return k


@_compiled
def event_entries(ev: SignalArray, s: int, at: IntArray, side: IntArray) -> int:
    """The signal events read from the close before bar s on, at the range-local bar whose open they act at.

    Fills at[:k] and side[:k] (room for len(ev) - s) and returns k.
    """
    k = 0
    for i in range(max(s - 1, 0), len(ev) - 1):
        if ev[i] != 0:
            at[k], side[k] = i + 1 - s, ev[i]
            k += 1
    return k


@_compiled
def fills_with_stops(
    at: IntArray,
    side: IntArray,
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    c: FloatArray,
    stop: FloatArray,
    target: FloatArray,
    out_entry: IntArray,
    out_exit: IntArray,
    out_side: IntArray,
    out_price: FloatArray,
    out_reason: IntArray,
) -> int:
    """Walk trade by trade: each ends at its first SL/TP bar, the opposite signal, or the range's last close.

    stop[n] and target[n] are the levels of a trade opened by signal n (an infinity beyond every price when the
    strategy has none, so it is never touched). Fills the first t entries of the out_ arrays (room for one
    trade per signal: entry and exit bars, side, exit price, EXIT_REASONS code) and returns t.
    """
    m = len(o)
    ns = len(at)
    # The next long and the next short signal at or after some point: both only move forward.
    next_long = 0
    next_short = 0
    t = 0
    n = 0  # the signal that opens the next trade
    while n < ns:
        j, d = at[n], side[n]
        if d > 0:
            next_short = max(next_short, n + 1)
            while next_short < ns and side[next_short] > 0:
                next_short += 1
            p = next_short
        else:
            next_long = max(next_long, n + 1)
            while next_long < ns and side[next_long] < 0:
                next_long += 1
            p = next_long
        k = at[p] if p < ns else m  # the reversal bar; stops are checked on bars j .. k-1
        sl, tp = stop[n], target[n]
        out_entry[t], out_side[t] = j, d
        hit = -1
        if d > 0:
            for b in range(j, k):
                if (lo[b] <= sl) | (h[b] >= tp):
                    hit = b
                    break
        else:
            for b in range(j, k):
                if (h[b] >= sl) | (lo[b] <= tp):
                    hit = b
                    break
        if hit >= 0:
            bar_open = o[hit]
            # Both touched in one bar: the stop counts.
            if (lo[hit] <= sl) if d > 0 else (h[hit] >= sl):
                level, reason = sl, _SL
            else:
                level, reason = tp, _TP
            # A bar that opens beyond the level (a gap) fills at its open, not at a price that never traded.
            gapped = bar_open <= level if (d > 0) == (reason == _SL) else bar_open >= level
            out_exit[t], out_price[t], out_reason[t] = hit, bar_open if gapped else level, reason
            t += 1
            while n < ns and at[n] <= hit:  # wait for the next signal: one read at the hit bar's close or later
                n += 1
        elif k < m:
            out_exit[t], out_price[t], out_reason[t] = k, o[k], _SIGNAL
            t += 1
            n = p
        else:
            out_exit[t], out_price[t], out_reason[t] = m - 1, c[m - 1], _END
            t += 1
            break
    return t


@_compiled
def round_levels(o: FloatArray, at: IntArray, side: IntArray, dist: float, scale: float, out: FloatArray) -> int:
    """out[n] = o[at[n]] + side[n]·dist rounded as np.round rounds (x·scale to an integer, then / scale).

    That is Python's round (the exact decimal rounding) unless x·scale's own rounding error reaches across a
    half: those few are NaN, for the caller to redo. Returns how many.
    """
    unsure = 0
    for n in range(len(at)):
        scaled = (o[at[n]] + side[n] * dist) * scale
        whole = np.rint(scaled)
        out[n] = whole / scale
        if abs(abs(scaled - whole) - 0.5) <= abs(scaled) * 2.0**-50:
            out[n] = np.nan
            unsure += 1
    return unsure


@_compiled
def bar_returns(
    o: FloatArray,
    c: FloatArray,
    entry: IntArray,
    exit_: IntArray,
    side: IntArray,
    exit_price: FloatArray,
    cost: float,
    r: FloatArray,
) -> None:
    """Marked-to-market simple return of every bar into r: a carried leg and a leg entered at the open, a + b + a·b.

    One pass over the bars (the trades' bars are visited in order, so no trade's bars are fetched twice).
    """
    t = 0  # the next trade to enter
    held = 0  # the side carried from the previous close (0: flat)
    exit_at = -1  # the bar the held trade exits in
    for i in range(len(c)):
        prev = c[i - 1] if i else o[0]
        # The carried leg: close to close, or to the exit price on the exit bar; 0 (0·...) when flat.
        if i == exit_at:
            leg = held * (exit_price[t - 1] - prev) / prev
            held = 0
        else:
            leg = held * (c[i] - prev) / prev
        if t < len(entry) and i == entry[t]:
            # The new leg, entered at the open: to the close, or to the exit price when it exits in this bar.
            d, x = side[t], exit_[t]
            end = c[i] if x > i else exit_price[t]
            new = (d * (end - o[i]) - cost) / o[i]
            leg = leg + new + leg * new
            if x > i:
                held, exit_at = d, x
            t += 1
        r[i] = leg


# --- metrics -----------------------------------------------------------------------------------------------------


@_compiled
def _terms(x: float, mean: float, central: bool) -> tuple[float, float, float]:
    """The summed terms of one return: (d², d²·d, d²·d²) with d = x - mean when central, else (x, min(x, 0)², 0)."""
    if central:
        d = x - mean
        d2 = d * d
        return d2, d2 * d, d2 * d2
    neg = min(x, 0.0)
    return x, neg * neg, 0.0


@_compiled
def _pairs_of_eight(v: FloatArray) -> float:
    """((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)): how pairwise_sum adds its 8 accumulators."""
    return float(((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])))


@_compiled
def _pairwise_leaf(
    r: FloatArray, lo: int, n: int, mean: float, central: bool, lanes: FloatArray
) -> tuple[float, float, float]:
    """numpy's pairwise_sum of at most _PAIRWISE_BLOCK values: 8 accumulators, each taking every 8th value
    (summed here lane by lane, into lanes), added pairwise, then the remaining n % 8 values one by one."""
    if n < 8:
        a, b, c = -0.0, -0.0, -0.0
        for i in range(lo, lo + n):
            x, y, z = _terms(r[i], mean, central)
            a += x
            b += y
            c += z
        return a, b, c
    full = n - n % 8
    for j in range(8):
        a, b, c = _terms(r[lo + j], mean, central)
        for i in range(lo + j + 8, lo + full, 8):
            x, y, z = _terms(r[i], mean, central)
            a += x
            b += y
            c += z
        lanes[0, j], lanes[1, j], lanes[2, j] = a, b, c
    a = _pairs_of_eight(lanes[0])
    b = _pairs_of_eight(lanes[1])
    c = _pairs_of_eight(lanes[2])
    for i in range(lo + full, lo + n):
        x, y, z = _terms(r[i], mean, central)
        a += x
        b += y
        c += z
    return a, b, c


@_compiled
def _pairwise_sums(r: FloatArray, mean: float, central: bool) -> tuple[float, float, float]:
    """The three sums of _terms over r, added as np.sum adds (0 + numpy's pairwise_sum), so equal to it to the bit.

    pairwise_sum(lo, n) splits n > _PAIRWISE_BLOCK at half = n//2 rounded down to a multiple of 8 and adds the
    halves' sums; this walks that tree with an explicit stack (numba's cache cannot hold recursive functions).
    """
    depth = 64
    frame_lo = np.empty(depth, dtype=np.int64)
    frame_n = np.empty(depth, dtype=np.int64)
    frame_stage = np.empty(depth, dtype=np.int64)  # 0: nothing summed, 1: left half summed, 2: both
    values = np.empty((depth, 3))  # the sums of finished subtrees, innermost last
    lanes = np.empty((3, 8))
    top = 0
    done = 0
    frame_lo[0], frame_n[0], frame_stage[0] = 0, len(r), 0
    while top >= 0:
        lo, n, stage = frame_lo[top], frame_n[top], frame_stage[top]
        half = n // 2 - (n // 2) % 8
        if n <= _PAIRWISE_BLOCK:
            values[done, 0], values[done, 1], values[done, 2] = _pairwise_leaf(r, lo, n, mean, central, lanes)
            done += 1
            top -= 1
        elif stage == 0:
            frame_stage[top] = 1
            top += 1
            frame_lo[top], frame_n[top], frame_stage[top] = lo, half, 0
        elif stage == 1:
            frame_stage[top] = 2
            top += 1
            frame_lo[top], frame_n[top], frame_stage[top] = lo + half, n - half, 0
        else:
            done -= 1
            for q in range(3):
                values[done - 1, q] += values[done, q]
            top -= 1
    return 0.0 + values[0, 0], 0.0 + values[0, 1], 0.0 + values[0, 2]


@_compiled
def return_sums(r: FloatArray) -> tuple[float, float, float, float, float]:
    """(Σ r, Σ min(r, 0)², max drawdown of cumprod(max(1 + r, 0)) from a starting 1, max r, min r).

    The sums are numpy's (pairwise); the drawdown is max(1 - E/peak) with peak = max(running max of E, 1).
    """
    total, down, _ = _pairwise_sums(r, 0.0, False)
    equity = 1.0
    peak = 1.0
    trough = np.inf  # the lowest equity since the peak last rose
    drawdown = -np.inf
    high = -np.inf
    low = np.inf
    for i in range(len(r)):
        equity *= max(1.0 + r[i], 0.0)  # 1·a is a: the first factor is np.cumprod's first value
        if equity > peak:
            # 1 - E/peak falls as E rises (rounding keeps that order), so each peak's largest drawdown is at
            # its trough: one division per peak, not per bar, and the same value as the per-bar maximum.
            if trough < np.inf:
                drawdown = max(drawdown, 1.0 - trough / peak)
            peak = equity
            trough = equity
        else:
            trough = min(trough, equity)
        high = max(high, r[i])
        low = min(low, r[i])
    if trough < np.inf:
        drawdown = max(drawdown, 1.0 - trough / peak)
    return total, down, drawdown, high, low


@_compiled
def central_sums(r: FloatArray, mean: float) -> tuple[float, float, float]:
    """Σ (r - mean)², Σ (r - mean)³, Σ (r - mean)⁴ as numpy sums them (pairwise; cubes as d²·d, fourths d²·d²)."""
    return _pairwise_sums(r, mean, True)


@_compiled
def prefix_sums_at(r: FloatArray, edges: IntArray) -> tuple[FloatArray, FloatArray]:
    """Σ r[:e] and Σ r[:e]² for each e in edges (ascending), summed left to right as np.cumsum does."""
    sums = np.empty(len(edges))
    sumsqs = np.empty(len(edges))
    total = 0.0
    squares = 0.0
    k = 0
    for i in range(len(r) + 1):
        while k < len(edges) and edges[k] == i:
            sums[k], sumsqs[k] = total, squares
            k += 1
        if i == len(r):
            break
        if i == 0:
            total, squares = r[0], r[0] * r[0]
        else:
            total += r[i]
            squares += r[i] * r[i]
    return sums, sumsqs
