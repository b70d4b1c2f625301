"""Walk-forward validation, the tiling (SPEC §6): which bars each fold trains and tests on.

Pure, no I/O. `fold_windows` tiles the IS range's B bars into K folds (bar indices); `fold_ranges` turns them
into the Unix-second ranges a BACKTEST request carries. swimmy/backtest/walkforward.py is the overview.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

Mode = Literal["rolling", "anchored"]

MODES: Final = ("rolling", "anchored")
# A backtest needs at least 2 bars (the engine's rule), so no window may be shorter.
MIN_WINDOW_BARS: Final = 2


@dataclass(frozen=True)
class Fold:
    """One fold as bar indices of the IS range, ends exclusive: train [train_start, train_end), test likewise."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


@dataclass(frozen=True)
class FoldRange:
    """One fold as Unix seconds, ends exclusive, as a BACKTEST's start_ts / end_ts are."""

    index: int
    train_start_ts: int
    train_end_ts: int
    test_start_ts: int
    test_end_ts: int


def _exact(value: float) -> Fraction:
    """The decimal a float was written as (0.2 -> 1/5), so 900 x 0.2 / 1.8 is 100 and not 99.99999999999999."""
    return Fraction(repr(float(value)))


def fold_windows(n_bars: int, folds: int, split_ratio: float, mode: Mode) -> list[Fold]:
    """The K folds of a walk-forward over the IS range's B bars (SPEC §6), oldest first.

    With B = n_bars, K = folds and r = split_ratio (a fold's test share of its train + test bars):
    every test window has W = floor(B r / (1 - r + K r)) bars; fold k (0 .. K-1) tests the bars
    [B - (K - k) W, B - (K - k - 1) W), so the test windows are contiguous, never overlap and the last
    ends at B; it trains on the floor((1 - r) / r x W) bars just before its test window (`rolling`) or
    on every bar before it (`anchored`). The arithmetic is exact on the decimal r (no float rounding),
    and by construction the first rolling train window starts at bar >= 0.

    ValueError when an argument is out of range, a test window would be shorter than MIN_WINDOW_BARS
    (too few bars for K folds) or a train window would be (r too close to 1).
    """
    if isinstance(n_bars, bool) or not isinstance(n_bars, int) or n_bars < 0:
        raise ValueError(f"walk-forward: n_bars must be a whole number >= 0, got {n_bars!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ValueError(f"walk-forward: folds must be a whole number >= 1, got {folds!r}")
    if not isinstance(split_ratio, int | float) or not 0 < split_ratio < 1:
        raise ValueError(f"walk-forward: split_ratio must lie strictly between 0 and 1, got {split_ratio!r}")
    if mode not in MODES:
        raise ValueError(f"walk-forward: mode must be one of {', '.join(MODES)}, got {mode!r}")
    r = _exact(split_ratio)
    width = math.floor(n_bars * r / (1 - r + folds * r))
    if width < MIN_WINDOW_BARS:
        raise ValueError(
            f"walk-forward: {n_bars} bars give {folds} test windows of {width} bar(s) each at split_ratio "
            f"{split_ratio}; each needs at least {MIN_WINDOW_BARS}: use more bars or fewer folds"
        )
    train_bars = math.floor((1 - r) / r * width)
    if train_bars < MIN_WINDOW_BARS:
        raise ValueError(
            f"walk-forward: split_ratio {split_ratio} leaves {train_bars} train bar(s) before a test window of "
            f"{width}; a train window needs at least {MIN_WINDOW_BARS}: lower split_ratio"
        )
    out = []
    for k in range(folds):
        test_start = n_bars - (folds - k) * width
        train_start = test_start - train_bars if mode == "rolling" else 0
        out.append(Fold(k, train_start, test_start, test_start, test_start + width))
    return out


def fold_ranges(folds: Sequence[Fold], timestamps: Sequence[int] | npt.NDArray[np.int64]) -> list[FoldRange]:
    """The folds as Unix-second ranges over the IS range's bar timestamps (ascending, one per bar).

    A window's start is its first bar's timestamp; its (exclusive) end is the timestamp of the bar after
    it, or the last bar's timestamp + 1 for a window that ends with the range. ValueError when a fold
    reaches beyond the timestamps.
    """
    n = len(timestamps)
    out = []
    for f in folds:
        if not 0 <= f.train_start < f.train_end <= f.test_start < f.test_end <= n:
            raise ValueError(f"walk-forward: fold {f.index} {f} does not fit {n} bars")
        out.append(
            FoldRange(
                f.index,
                int(timestamps[f.train_start]),
                _end_ts(timestamps, f.train_end),
                int(timestamps[f.test_start]),
                _end_ts(timestamps, f.test_end),
            )
        )
    return out


def _end_ts(timestamps: Sequence[int] | npt.NDArray[np.int64], end: int) -> int:
    return int(timestamps[end]) if end < len(timestamps) else int(timestamps[-1]) + 1
