"""The backtest engine's compiled loops (numba): what numpy cannot vectorise, one pass over the bars each.

The recursions (EMA, Wilder's averages), the windows kept in ring buffers, each trade's walk to its stop
or target, the marked-to-market returns and the metrics' sums would each take several numpy passes and
temporaries, or a Python loop per trade. Every kernel does the arithmetic of the numpy code it replaced in
the same order (sequential prefix sums, numpy's pairwise summation), so results are unchanged to the bit;
only EMA and Wilder's averages now run their recursion bar by bar instead of in closed form, which moves
their values in the last bits (the signals read from them did not change on any test or benchmark series).

`cache=True` stores the machine code beside each kernel's source file, so a worker process loads it (about
0.5 s for all of them, on its first backtests) instead of compiling it (about 8 s, once per machine and
source version); `nogil=True` lets a worker's heartbeat thread run meanwhile. Importing numba costs about
0.2 s and 80 MB of RSS, so engine.py and metrics.py import the kernels only when they compute: the daemon,
which imports them for Bars and constants, never loads numba.

This module holds the decorator every kernel shares and the metrics' sums; the engine's kernels live beside
it, in kernelsignals.py (indicators and signals) and kerneltrades.py (entries, exits and returns).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_F = TypeVar("_F", bound=Callable[..., Any])

# numpy's pairwise summation: blocks of at most this many values are summed with 8 accumulators.
_PAIRWISE_BLOCK = 128


def _compiled(fn: _F) -> _F:
    """numba.njit with the cache (worker processes load the machine code) and without the GIL.

    numpy's error model: x / 0 is inf or NaN, as in numpy, instead of a test and a ZeroDivisionError on
    every division, which keeps the compiler from vectorising a loop (no divisor here can be 0).
    """
    return cast(_F, njit(cache=True, nogil=True, error_model="numpy")(fn))


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
