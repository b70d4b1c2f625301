"""The fast path of `data import` for MetaTrader 4's CSV export: one compiled pass over the bytes.

MT4's history export is the common case and the large one (8 years of M1 is 3 million lines, 150 MB):
`YYYY.MM.DD,HH:MM,open,high,low,close,volume`, one bar a line. pyarrow's general CSV reader spends most of
its time finding fields and building columns it then hands to numpy; a loop that knows the layout parses a
line in a few dozen instructions, in two threads over the two halves of the file.

This path is strict and never reports an error itself: at the first line that is not exactly that layout
(a BOM is fine, `\\r\\n` is fine, the last line may lack its `\\n`) it gives up and formats.py reads the
file the general way, which finds and names the problem. So whatever it accepts, the general reader
accepts too, with the same values:

- a date is four, two and two digits, a real calendar day (no 30 February) of the years 1900..2199; a time
  is `HH:MM`, HH < 24;
- a number is digits with an optional fraction (`1.10020`, `372`): no sign, no exponent, at most 15
  digits in all. Such a number is an integer m < 10^15 < 2^53 over 10^k with k <= 15, both
  exact doubles, and IEEE division rounds correctly: m / 10^k is the double nearest the decimal, which is
  what pyarrow's parser (fast_float, correctly rounded) returns. Tested to the bit against it.

The prices, volume and times it returns go through the same checks as the general reader's (formatbars.py:
values, time range, zone, order), so a bad value gets the same message with the same line number.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]

_NL: Final = 10
_CR: Final = 13
_COMMA: Final = 44
_DOT: Final = 46
_COLON: Final = 58
_ZERO: Final = 48
_MAX_DIGITS: Final = 15
_MIN_YEAR, _MAX_YEAR = 1900, 2199  # formattimes.py's range: outside it, the general reader says `bad time`
_POW10: Final = np.array([10.0**k for k in range(23)])  # 10^0 .. 10^22, each exactly a double
_MONTH_DAYS: Final = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
# Below this many bytes one thread parses the whole file (a second would cost more than it saves).
_SPLIT_BYTES: Final = 1 << 22


@njit(cache=True, nogil=True)
def _count_lines(buf: ByteArray, start: int, end: int) -> int:
    """Lines in buf[start:end]: its newlines, plus one for a last line without one."""
    n = 0
    for i in range(start, end):
        n += buf[i] == _NL
    if end > start and buf[end - 1] != _NL:
        n += 1
    return n


@njit(cache=True, nogil=True)
def _digits(buf: ByteArray, i: int, width: int) -> int:
    """The number written in buf[i:i+width] (all digits), or -1."""
    value = np.int64(0)
    for j in range(i, i + width):
        d = np.int64(buf[j]) - _ZERO
        if d < 0 or d > 9:
            return -1
        value = value * 10 + d
    return int(value)


@njit(cache=True, nogil=True)
def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True)
def _parse(buf: ByteArray, start: int, end: int, row: int, pow10: FloatArray, month_days: IntArray,
           seconds: IntArray, values: FloatArray, lines: IntArray) -> tuple[bool, int]:
    """Parse the lines of buf[start:end] into seconds[row:], values[:, row:] (open, high, low, close,
    volume) and lines[row:] (each row's line number, 1-based): (True, the row after the last) when every
    line was plain, else (False, the first row that was not, 0-based in the whole file)."""
    i = start
    while i < end:
        if end - i < 17 or row >= len(seconds):  # YYYY.MM.DD,HH:MM, and at least one more byte
            return False, row
        y = _digits(buf, i, 4)
        mo = _digits(buf, i + 5, 2)
        d = _digits(buf, i + 8, 2)
        hh = _digits(buf, i + 11, 2)
        mi = _digits(buf, i + 14, 2)
        if (y < _MIN_YEAR or y > _MAX_YEAR or mo < 1 or mo > 12 or d < 1 or hh < 0 or hh > 23 or mi < 0 or mi > 59
                or buf[i + 4] != _DOT or buf[i + 7] != _DOT or buf[i + 10] != _COMMA or buf[i + 13] != _COLON
                or buf[i + 16] != _COMMA):
            return False, row
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        if d > month_days[mo] + (1 if mo == 2 and leap else 0):
            return False, row
        seconds[row] = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60
        lines[row] = row + 1
        i += 17
        for k in range(5):
            # digits[.digits]: at most 15 digits in all, so the integer is below 10^15 < 2^53
            mantissa = np.int64(0)
            first = i
            while i < end:
                digit = np.uint64(buf[i]) - np.uint64(_ZERO)  # one unsigned test: a byte below '0' wraps round
                if digit > 9:
                    break
                mantissa = mantissa * 10 + np.int64(digit)
                i += 1
            whole = i - first
            scale = 0
            if i < end and buf[i] == _DOT:
                i += 1
                point = i
                while i < end:
                    digit = np.uint64(buf[i]) - np.uint64(_ZERO)
                    if digit > 9:
                        break
                    mantissa = mantissa * 10 + np.int64(digit)
                    i += 1
                scale = i - point
                if scale == 0:
                    return False, row
            if whole == 0 or whole + scale > _MAX_DIGITS:
                return False, row
            values[k, row] = mantissa / pow10[scale]
            if k < 4:
                if i >= end or buf[i] != _COMMA:
                    return False, row
                i += 1
        if i < end and buf[i] == _CR:
            i += 1
        if i < end:
            if buf[i] != _NL:
                return False, row
            i += 1
        row += 1
    return True, row


class Columns:
    """What the fast path read: local wall-clock seconds, the four prices, the volume and the line number of
    each row."""

    def __init__(self, seconds: IntArray, prices: list[FloatArray], volume: FloatArray, lines: IntArray) -> None:
        self.seconds = seconds
        self.prices = prices
        self.volume = volume
        self.lines = lines


def parse_mt4(buf: ByteArray, *, threads: int | None = None) -> Columns | None:
    """The rows of a file's bytes when every line is the plain MT4 layout; None to leave it to the general
    reader. `threads`: how many to use (default: 2 when the process may run on 2 cores)."""
    start = 3 if buf[:3].tobytes() == b"\xef\xbb\xbf" else 0
    end = len(buf)
    if end - start < 17:
        return None
    # Room for the most lines the bytes can hold (a plain line is at least 26 bytes); the pages past the last
    # line are never touched, so they cost no memory. The first half is parsed from row 0 while the second
    # thread counts its lines, then parses the second half from there.
    capacity = (end - start) // 26 + 2
    # numpy's own arrays: it asks for huge pages, which fault in far faster than pyarrow's pool's pages.
    seconds = np.empty(capacity, dtype=np.int64)
    lines = np.empty(capacity, dtype=np.int64)
    values = np.empty((5, capacity), dtype=np.float64)
    cut = _split_point(buf, start, end, threads)
    if cut == start:
        ok, n = _parse(buf, start, end, 0, _POW10, _MONTH_DAYS, seconds, values, lines)
    else:
        def second_half() -> tuple[bool, int]:
            first_rows = _count_lines(buf, start, cut)
            return _parse(buf, cut, end, first_rows, _POW10, _MONTH_DAYS, seconds, values, lines)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="swimmy-csv") as pool:
            later = pool.submit(second_half)
            first_ok, _ = _parse(buf, start, cut, 0, _POW10, _MONTH_DAYS, seconds, values, lines)
            ok, n = later.result()
        ok = ok and first_ok
    if not ok:
        return None
    return Columns(seconds[:n], [values[k, :n] for k in range(4)], values[4, :n], lines[:n])


def _split_point(buf: ByteArray, start: int, end: int, threads: int | None) -> int:
    """Where the second thread starts: just after the newline nearest the middle (start: one thread)."""
    usable = threads if threads is not None else min(2, len(os.sched_getaffinity(0)))
    if usable < 2 or end - start < _SPLIT_BYTES:
        return start
    middle = start + (end - start) // 2
    newline = np.flatnonzero(buf[middle : min(end, middle + 4096)] == _NL)
    return middle + int(newline[0]) + 1 if len(newline) else start


@njit(cache=True, nogil=True)
def step_counts(ts: IntArray, week: int) -> tuple[IntArray, IntArray, int]:
    """For infer_step, in one pass: how often each positive step up to `week` seconds occurs (counts[step]),
    the longer steps, and how many steps are positive (numpy would allocate the differences three times)."""
    counts = np.zeros(week + 1, dtype=np.int64)
    longer = np.empty(max(len(ts) - 1, 0), dtype=np.int64)
    n_long = 0
    positive = 0
    for i in range(1, len(ts)):
        step = ts[i] - ts[i - 1]
        if step <= 0:
            continue
        positive += 1
        if step <= week:
            counts[step] += 1
        else:
            longer[n_long] = step
            n_long += 1
    return counts, longer[:n_long], positive
