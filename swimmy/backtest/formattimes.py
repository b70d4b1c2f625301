"""Fixed-width time columns decoded digit by digit in numpy, for the source readers (formats.py).

A column's layout is guessed from its first value's shape (`_SHAPES`); pyarrow hands the column over as
one block of bytes, and each run of equal values (an intraday file repeats each date) is decoded once.
Unix seconds are checked to lie in 1900..2200. The first malformed row is reported, not just "bad data".
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from swimmy.backtest.formatarrow import _arrow, _empty, _numpy, _numpy_floats, _raw
from swimmy.backtest.formatzones import _DAY_SEC
from swimmy.errors import DataError

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


# A time layout: Y M D (date), h m s (time), f (fraction digits, must be 0), + (sign) H N (zone offset);
# every other character is literal. `_human` renders it for messages.
_DIGIT_FIELDS: Final = "YMDhmsfHN"
_MIN_YEAR, _MAX_YEAR = 1900, 2199
_MIN_SEC: Final = -2208988800  # 1900-01-01
_MAX_SEC: Final = 7258118400  # 2200-01-01


@functools.cache
def _codes(layout: str) -> tuple[str, ...]:
    """Per character of a layout: its field letter, or "" for a literal (the `GMT` of Dukascopy's local time)."""
    codes = ["" if c not in _DIGIT_FIELDS else c for c in layout]
    at = layout.find("GMT")
    if at >= 0:
        codes[at : at + 3] = ["", "", ""]
    return tuple(codes)


def _human(layout: str) -> str:
    if layout == "unix":
        return "Unix seconds"
    return layout.translate(str.maketrans("hmsfN", "HMSmM"))


def _shapes() -> dict[str, str]:
    """Every time layout the generic reader knows, by its shape (digits written as 9, the zone sign kept)."""
    dates = ("YYYY-MM-DD", "YYYY.MM.DD", "YYYY/MM/DD", "DD.MM.YYYY", "YYYYMMDD")
    times = ("", " hh:mm", " hh:mm:ss", "Thh:mm", "Thh:mm:ss", *(f" hh:mm:ss.{'f' * k}" for k in (3, 6)))
    times += tuple(f"T{t[1:]}" for t in times if t.startswith(" hh:mm:ss."))
    zones = ("", "Z", "+HH:NN", "+HHNN", " GMT+HHNN")
    shapes = {}
    for date, time_, zone in itertools.product(dates, times, zones):
        if zone and not time_:
            continue
        layout = date + time_ + zone
        for sign in "+-":
            shapes[_layout_shape(layout).replace("+", sign)] = layout
    for layout in ("hh:mm", "hh:mm:ss", "hhmmss", "hh:mm:ss.fff"):  # the time column of a date-and-time pair
        shapes[_layout_shape(layout)] = layout
    return shapes


def _layout_shape(layout: str) -> str:
    return "".join("9" if code else c for c, code in zip(layout, _codes(layout), strict=True))


_SHAPES: Final = _shapes()
_UNIX_RE: Final = re.compile(r"[+-]?\d+(\.\d*)?")


def _shape(value: str) -> str:
    return re.sub(r"\d", "9", value.strip())


def _days_from_civil(year: IntArray, month: IntArray, day: IntArray) -> IntArray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm, vectorised)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days: IntArray = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days


# The first day of every month of the years allowed, so a date costs a table look-up, not the division-heavy
# algorithm above (int64 division is the slowest thing numpy does: 0.4 s for 3 million dates).
_MONTHS: Final = np.arange(_MIN_YEAR * 12, (_MAX_YEAR + 1) * 12 + 1)
_MONTH_START: Final = _days_from_civil(_MONTHS // 12, _MONTHS % 12 + 1, np.ones_like(_MONTHS))
_MONTH_DAYS: Final = np.diff(_MONTH_START)


def _matrix(values: Any, width: int) -> npt.NDArray[np.uint8]:
    """A column of `width`-byte values as an n x width byte matrix (a value of another width: zeros)."""
    arr = values.combine_chunks() if hasattr(values, "combine_chunks") else values
    n = len(arr)
    buffers = arr.buffers()
    if buffers[-1] is None:
        return np.zeros((n, width), dtype=np.uint8)
    data = np.frombuffer(buffers[-1], dtype=np.uint8)
    if len(buffers) == 2:  # fixed_size_binary: the values back to back
        return data[arr.offset * width : (arr.offset + n) * width].reshape(n, width)
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4).astype(np.int64)
    fits = np.diff(offsets) == width
    matrix = np.zeros((n, width), dtype=np.uint8)
    matrix[fits] = data[offsets[:-1][fits, None] + np.arange(width)]
    return matrix


def _column_seconds(values: Any, layout: str) -> tuple[npt.NDArray[np.signedinteger[Any]], int]:
    """What a column of times adds to each row's seconds (int32 for a time of day), and its first malformed
    row (-1: none).

    An intraday file repeats each date for many rows: then each run of equal values is decoded once, found
    chunk by chunk so that no copy of the whole column is made.
    """
    pa = _arrow()
    if pa.types.is_time32(values.type):
        return _numpy(values.cast(pa.int32()), np.int32), -1
    width = len(layout)
    chunks = values.chunks if hasattr(values, "chunks") else [values]
    if pa.types.is_fixed_size_binary(values.type) and len(values) > 4096:
        sample = _matrix(values.slice(0, 1024), width)
        if len(np.unique(sample, axis=0)) <= 64:
            starts, firsts, base = [], [], 0
            for chunk in chunks:
                if len(chunk):
                    m = _matrix(chunk, width)
                    run_starts = _run_starts(m)
                    starts.append(run_starts + base)
                    firsts.append(m[run_starts])
                    base += len(chunk)
            at = np.concatenate(starts)
            seconds, bad = _matrix_seconds(np.concatenate(firsts), layout)
            expanded = _empty(len(values), np.int64)  # each run's value, as the running sum of the steps
            expanded.fill(0)
            expanded[at] = np.diff(seconds, prepend=0)
            return np.cumsum(expanded, out=expanded), (-1 if bad < 0 else int(at[bad]))
    return _matrix_seconds(_matrix(values, width), layout)


def _run_starts(m: npt.NDArray[np.uint8]) -> IntArray:
    """The rows of a C-contiguous byte matrix that differ from the row before (row 0 included).

    Rows are compared as one or two unsigned integers read straight from the bytes (unaligned views, not
    copied: a copy per chunk costs more in fresh pages than it saves): far faster than row by row.
    """
    n, width = m.shape
    size = next(s for s in (8, 4, 2, 1) if s <= width)
    flat = m.reshape(-1)
    changed: BoolArray = np.zeros(max(n - 1, 0), dtype=bool)
    for offset in sorted({0, width - size}):  # two overlapping reads cover a row of up to 2 * size bytes
        keys = np.ndarray((n,), dtype=f"<u{size}", buffer=flat, offset=offset, strides=(width,))
        changed |= keys[1:] != keys[:-1]
    starts: IntArray = np.concatenate((np.zeros(1, dtype=np.int64), np.flatnonzero(changed) + 1))
    return starts


def _matrix_seconds(m: npt.NDArray[np.uint8], layout: str) -> tuple[IntArray, int]:
    """Decode an n x width byte matrix of times: seconds per row and the first malformed row (-1: none).

    Each rule is tried with a min and a max first; only a rule that fails builds its per-row mask.
    """
    rows = np.ascontiguousarray(m.T)  # a contiguous row per character position: numpy is slow down columns
    codes = _codes(layout)
    bad: list[BoolArray] = []

    def check(values: npt.NDArray[Any], lo: int, hi: int) -> None:
        if len(values) and (values.min() < lo or values.max() > hi):
            bad.append((values < lo) | (values > hi))

    for i, c in enumerate(layout):
        if c == "+":
            bad.append((rows[i] != ord("+")) & (rows[i] != ord("-")))
        else:
            check(rows[i], *((48, 57) if codes[i] else (ord(c), ord(c))))  # a short value's missing bytes are 0

    def number(letter: str) -> npt.NDArray[np.int32] | None:
        at = [i for i, code in enumerate(codes) if code == letter]
        if not at:
            return None
        value: npt.NDArray[np.int32] = rows[at[0]].astype(np.int32)
        for i in at[1:]:
            value *= 10
            value += rows[i]
        value -= 48 * (10 ** len(at) - 1) // 9  # the '0's added along the way
        return value

    clock = np.zeros(len(m), dtype=np.int32)  # seconds into the day, less the zone offset
    for letter, limit, unit in (("h", 24, 3600), ("m", 60, 60), ("s", 60, 1), ("f", 1, 0)):
        value = number(letter)
        if value is not None:
            check(value, 0, limit - 1)  # a fraction must be 0: bars are whole seconds
            value *= unit
            clock += value
    zone_hours, zone_minutes = number("H"), number("N")
    if zone_hours is not None:
        check(zone_hours, 0, 14)
        offset = zone_hours * 3600
        if zone_minutes is not None:
            check(zone_minutes, 0, 59)
            offset += zone_minutes * 60
        clock -= np.where(rows[layout.index("+")] == ord("-"), -offset, offset)
    seconds = clock.astype(np.int64)
    year, month, day = number("Y"), number("M"), number("D")
    if year is not None and month is not None and day is not None:
        check(year, _MIN_YEAR, _MAX_YEAR)
        check(month, 1, 12)
        check(day, 1, 31)
        index = np.clip(year * 12 + month - (_MIN_YEAR * 12 + 1), 0, len(_MONTH_DAYS) - 1)
        check(day - _MONTH_DAYS[index], -31, 0)
        seconds += (_MONTH_START[index] + (day - 1)) * _DAY_SEC
    first = -1
    if bad:
        mask = functools.reduce(np.logical_or, bad)
        first = int(np.argmax(mask)) if mask.any() else -1
    return seconds, first


@dataclass(frozen=True)
class _Times:
    """How a file's time is written: one column (date and time) or two (date, time), each with a layout."""

    columns: tuple[int, ...]
    layouts: tuple[str, ...]

    @property
    def expected(self) -> str:
        return " and ".join(_human(layout) for layout in self.layouts)

    @property
    def aware(self) -> bool:
        """Whether the values name their offset from UTC (Unix seconds, `Z`, `+02:00`)."""
        return any(layout == "unix" or layout.endswith("Z") or "+" in layout for layout in self.layouts)


def _first_bad_time(columns: Sequence[Any], times: _Times) -> tuple[IntArray, int]:
    """Seconds of the rows (UTC when `times.aware`), and the first row whose time is malformed (-1: none)."""
    pairs = iter(zip(columns, times.layouts, strict=True))
    seconds, bad = _column_seconds(*next(pairs))
    total: IntArray = seconds.astype(np.int64, copy=False)
    pa = _arrow()
    for values, layout in pairs:  # the time of a date-and-time pair, added in place
        if pa.types.is_time32(values.type):  # chunk by chunk: no copy of the whole column
            at = 0
            for chunk in values.chunks:
                total[at : at + len(chunk)] += _numpy(chunk.cast(pa.int32()), np.int32)
                at += len(chunk)
            continue
        seconds, first = _column_seconds(values, layout)
        total += seconds
        bad = first if bad < 0 or 0 <= first < bad else bad
    return total, bad


def _decode_times(path: Path, columns: Sequence[Any], times: _Times, lines: IntArray) -> IntArray:
    """Seconds since the epoch of each row's time (wall-clock unless `times.aware`); DataError at a bad one."""
    if times.layouts == ("unix",):
        return _unix_seconds(path, columns[0], lines)
    seconds, bad = _first_bad_time(columns, times)
    if bad >= 0:
        raw = " ".join(_raw(v, bad)[: len(t)] for v, t in zip(columns, times.layouts, strict=True))  # time32: HH:MM:SS
        raise DataError(f"{path}:{int(lines[bad])}: bad time {raw!r}: expected {times.expected}")
    return seconds


def _unix_seconds(path: Path, values: Any, lines: IntArray) -> IntArray:
    """Integers or whole floats, inside 1900..2200 (a millisecond timestamp is a clear error, not year 47000)."""
    floats = _numpy_floats(values)
    whole = np.isfinite(floats) & (floats >= _MIN_SEC) & (floats < _MAX_SEC)
    whole[whole] = floats[whole] == np.floor(floats[whole])
    if not whole.all():
        i = int(np.flatnonzero(~whole)[0])
        hint = " (milliseconds?)" if abs(floats[i]) >= _MAX_SEC else ""
        raise DataError(f"{path}:{int(lines[i])}: bad time {float(floats[i])!r}{hint}: expected whole Unix seconds")
    return floats.astype(np.int64)
