"""The engine's compiled entries, exits and returns (numba, kernels.py): the signals into trades.

Each trade's walk to its stop, target or reversal, the rounding of the levels, and the marked-to-market
return of every bar, in one pass each. engine.py imports this module only when it computes (numba: see
kernels.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from swimmy.backtest.kernels import _compiled

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SignalArray = npt.NDArray[np.int8]

# EXIT_REASONS codes (engine.py)
_SIGNAL, _SL, _TP, _END = range(4)


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
