"""`swimmy data check`: what is wrong with a universe's bars, found by vector checks (SPEC §4 "Data").

Each kind of problem is one Finding with how many bars it touches and the first of them,
so a file with ten thousand bad bars reads as one line per kind. The kinds:

- `unordered` / `duplicate`: a bar not after the one before it;
- `spacing`: the most common step between bars is not the timeframe's (an H1 file of M5
  bars skews every annualised figure), or steps that are not a whole number of bars;
- `gap`: more than GAP_LIMIT_SEC between two bars: longer than a weekend (the FX week
  closes on Friday about 21:00 UTC and opens on Sunday about 21:00 UTC: 48 h; a holiday
  next to a weekend makes it up to three days);
- `ohlc`: a price that is not a positive finite number, high < low, open or close outside
  [low, high].

Pure: arrays in, findings out. The CLI reads the files and prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from swimmy.backtest.engine import Bars
from swimmy.backtest.strategies import TIMEFRAME_SEC

GAP_LIMIT_SEC = 3 * 86_400

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Finding:
    """One kind of problem: how many bars, and the first one (`where` says which bar and when)."""

    kind: str
    count: int
    message: str


def iso(ts: int) -> str:
    """A Unix time as `2017-01-02T00:00Z` (what the reports print)."""
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")
    except (OverflowError, OSError, ValueError):
        return f"{ts} (out of range)"


def check_bars(bars: Bars, timeframe: str, *, where: Callable[[int], str] | None = None) -> list[Finding]:
    """Every kind of problem in `bars` of `timeframe`; `where(i)` names bar i (default: its index and time)."""
    ts = np.asarray(bars.timestamps, dtype=np.int64)
    return check_arrays(ts, bars.open, bars.high, bars.low, bars.close, timeframe, where=where)


def check_arrays(ts: IntArray, open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray,
                 timeframe: str, *, where: Callable[[int], str] | None = None) -> list[Finding]:
    """As check_bars, on bare arrays (a file read without the engine's own ordering check)."""

    def at(i: int) -> str:
        return where(i) if where is not None else f"bar {i + 1:,} ({iso(int(ts[i]))})"

    step = TIMEFRAME_SEC[timeframe]
    findings: list[Finding] = []
    if len(ts) < 2:
        return _ohlc(open_, high, low, close, at)
    diff = np.diff(ts)
    for kind, mask, what in (("unordered", diff < 0, "goes back in time"), ("duplicate", diff == 0, "repeats")):
        if mask.any():
            i = int(np.flatnonzero(mask)[0]) + 1
            findings.append(Finding(kind, int(mask.sum()), f"{int(mask.sum()):,} bars whose time {what}: the first "
                                    f"is {at(i)}, after {iso(int(ts[i - 1]))}"))
    forward = diff[diff > 0]
    if len(forward):
        values, counts = np.unique(forward, return_counts=True)
        usual = int(values[np.argmax(counts)])
        if usual != step:
            findings.append(Finding("spacing", len(forward), f"bars are usually {_span(usual)} apart, but "
                                    f"{timeframe} is {_span(step)}: the file is another timeframe than its name"))
        else:
            odd = (diff > 0) & (diff % step != 0)
            if odd.any():
                i = int(np.flatnonzero(odd)[0]) + 1
                findings.append(Finding("spacing", int(odd.sum()), f"{int(odd.sum()):,} steps that are not a "
                                        f"whole number of {timeframe} bars: the first, {_span(int(diff[i - 1]))}, "
                                        f"ends at {at(i)}"))
    gaps = diff > GAP_LIMIT_SEC
    if gaps.any():
        i = int(np.argmax(np.where(gaps, diff, 0))) + 1
        first = int(np.flatnonzero(gaps)[0]) + 1
        findings.append(Finding("gap", int(gaps.sum()), f"{int(gaps.sum()):,} gaps longer than a weekend "
                                f"({_span(GAP_LIMIT_SEC)}): the first ends at {at(first)}; the longest is "
                                f"{_span(int(diff[i - 1]))}, ending at {at(i)}"))
    return findings + _ohlc(open_, high, low, close, at)


def _ohlc(open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray,
          at: Callable[[int], str]) -> list[Finding]:
    prices = np.vstack([open_, high, low, close])
    bad_price = ~(np.isfinite(prices) & (prices > 0)).all(axis=0)
    with np.errstate(invalid="ignore"):
        inverted = high < low
        outside = (open_ < low) | (open_ > high) | (close < low) | (close > high)
    out = []
    # One finding per bar: a bad price makes the comparisons meaningless, and an inverted bar has no inside.
    for mask, what in ((bad_price, "a price that is not a positive finite number"),
                       (inverted & ~bad_price, "high below low"),
                       (outside & ~inverted & ~bad_price, "open or close outside [low, high]")):
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            out.append(Finding("ohlc", int(mask.sum()), f"{int(mask.sum()):,} bars with {what}: the first is {at(i)}"))
    return out


def _span(sec: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if sec >= size and sec % size == 0:
            return f"{sec // size} {unit}"
    return f"{sec} s"
