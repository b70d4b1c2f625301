"""A source file's bars (Parsed) and the common end of every reader (formats.py): the checks and UTC.

Each reader ends in `_finish`: the time range, the conversion to UTC, strictly increasing times. Prices and
volume are checked in a few reductions (`_values_ok`); only when that fails does `_check_values` look for
the first bad row, so that every problem is a DataError `<file>:<line>: <what>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from swimmy.backtest.data import first_bad_bar
from swimmy.backtest.formattimes import _MAX_SEC, _MAX_YEAR, _MIN_SEC, _MIN_YEAR
from swimmy.backtest.formatzones import Zone, _iso, _to_utc
from swimmy.errors import DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Parsed:
    """One source file's bars in file order: UTC seconds, prices, volume (0 when absent), and source lines."""

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    line: IntArray
    format: str


_PRICE_ROLES: Final = ("open", "high", "low", "close")


def _finish(
    path: Path,
    fmt: str,
    seconds: IntArray,
    aware: bool,
    prices: list[FloatArray],
    volume: FloatArray,
    lines: IntArray,
    zone: Zone,
    label: str,
) -> Parsed:
    """Convert to UTC, check and pack (the prices are checked already): the time range, the zone, the order."""
    if seconds.min() < _MIN_SEC or seconds.max() >= _MAX_SEC:
        i = int(np.flatnonzero((seconds < _MIN_SEC) | (seconds >= _MAX_SEC))[0])
        raise DataError(f"{path}:{int(lines[i])}: time {int(seconds[i])} is outside the years {_MIN_YEAR}..{_MAX_YEAR}")
    ts = seconds if aware else _to_utc(path, seconds, lines, zone, label)
    _check_increasing(path, ts, lines)
    return Parsed(ts, prices[0], prices[1], prices[2], prices[3], volume, lines, fmt)


def _values_ok(*columns: FloatArray) -> bool:
    """Whether every row's prices and volume are good, in a few reductions (a NaN fails every comparison)."""
    open_, high, low, close, volume = columns
    return bool(
        low.min() > 0
        and np.isfinite(high).all()
        and (high >= low).all()
        and (open_ >= low).all()
        and (open_ <= high).all()
        and (close >= low).all()
        and (close <= high).all()
        and volume.min() >= 0
        and np.isfinite(volume).all()
    )


def _check_values(path: Path, lines: IntArray, *columns: FloatArray) -> None:
    """DataError at the first row with a bad price or volume (data.first_bad_bar's rules and words)."""
    if _values_ok(*columns):
        return
    found = first_bad_bar(*columns)
    if found is not None:
        i, message = found
        raise DataError(f"{path}:{int(lines[i])}: {message}")


def _check_increasing(path: Path, ts: IntArray, lines: IntArray) -> None:
    if (ts[1:] > ts[:-1]).all():
        return
    j = int(np.flatnonzero(ts[1:] <= ts[:-1])[0]) + 1
    now, before = int(ts[j]), int(ts[j - 1])
    if now == before:
        what = f"duplicate time {_iso(now)}Z: line {int(lines[j - 1])} has the same time"
    else:
        what = f"time goes backwards: {_iso(now)}Z is before line {int(lines[j - 1])}'s {_iso(before)}Z"
    raise DataError(f"{path}:{int(lines[j])}: {what} (after conversion to UTC)")
