"""The bar files traders have, read into UTC arrays: the parsing half of `swimmy data import`.

Formats: generic OHLCV CSV (columns by name), MetaTrader 4 history CSV, MetaTrader 5 export, Dukascopy,
HistData.com generic ASCII, and Parquet (docs/data.md, "Formats"). A plain MetaTrader 4 file (the common
large one) is parsed by a compiled loop that knows its layout (fastcsv.py: 3 million rows in about half
pandas.read_csv's time); any other text, or an MT4 file with one line that is not plain, is read by
pyarrow's multi-threaded CSV reader and times are decoded digit by digit in numpy (each run of equal dates
once). When the fast path fails, a slower pass finds the first bad row: every problem is a DataError
`<file>:<line>: <what>`. Wall-clock times are converted to UTC with the `tz` zone (an IANA name, `UTC` or
`+02:00`), asking zoneinfo once per day of data, not per row.

pyarrow is imported inside the functions: the daemon and the workers import this package and must never
load it.
"""

from __future__ import annotations

import csv
import functools
import importlib
import itertools
import math
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from swimmy.errors import DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_Number = TypeVar("_Number", np.int32, np.int64, np.float64)

FORMATS: Final = ("generic", "mt4", "mt5", "dukascopy", "histdata", "parquet")


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


# --- time zones -----------------------------------------------------------------------------------------------

Zone = int | ZoneInfo  # a fixed offset in seconds east of UTC, or an IANA zone

_HISTDATA_EST: Final = -5 * 3600  # HistData.com: "EST time-zone WITHOUT Day Light Savings adjustments"
_OFFSET_RE: Final = re.compile(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?")
_DAY_SEC: Final = 86400
_HOUR_SEC: Final = 3600


def _zone(tz: str | None, fmt: str) -> tuple[Zone, str]:
    """The zone that `--tz` names (or the format's default), and how messages name it."""
    if tz is None:
        return (_HISTDATA_EST, "EST (UTC-05:00 all year)") if fmt == "histdata" else (0, "UTC")
    text = tz.strip()
    if text.upper() in ("UTC", "GMT", "Z"):
        return 0, "UTC"
    m = _OFFSET_RE.fullmatch(text)
    if m:
        hours, minutes = int(m[2]), int(m[3] or 0)
        if hours <= 14 and minutes < 60:
            return (1 if m[1] == "+" else -1) * (hours * 3600 + minutes * 60), text
    try:
        return ZoneInfo(text), text
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise DataError(
            f"unknown time zone {tz!r}: expected an IANA name like Europe/Athens or America/New_York, "
            "UTC, or a fixed offset like +02:00"
        ) from None


def _utcoffset(zone: ZoneInfo, local: int, fold: int) -> int:
    wall = datetime(1970, 1, 1, tzinfo=zone) + timedelta(seconds=local)  # aware + timedelta: wall-clock arithmetic
    return int((wall.replace(fold=fold).utcoffset() or timedelta(0)).total_seconds())


def _span_offsets(zone: ZoneInfo, starts: IntArray, width: int) -> tuple[IntArray, BoolArray]:
    """Each span's offset, and whether a transition falls in it (its start and end, or the end's two readings,
    disagree)."""
    offsets = np.zeros(len(starts), dtype=np.int64)
    mixed = np.zeros(len(starts), dtype=bool)
    for k, start in enumerate(starts.tolist()):
        offsets[k] = first = _utcoffset(zone, start, 0)
        end = start + width - 1
        mixed[k] = _utcoffset(zone, end, 0) != first or _utcoffset(zone, end, 1) != first
    return offsets, mixed


def _zone_offsets(zone: ZoneInfo, local: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Per row, the offset of the earlier (fold=0) reading of its wall-clock time; and the rows in an hour with a
    transition, with the offset of their later (fold=1) reading.

    zoneinfo is asked once per day of data; only days with a transition go on per hour, and only the
    transition hours per row: a few thousand calls for millions of rows.
    """
    days = _floor_div(local, _DAY_SEC)
    first, last = int(days.min()), int(days.max())
    if last - first < 200_000:
        unique_days, index = np.arange(first, last + 1), days - first
    else:
        unique_days, index = np.unique(days, return_inverse=True)
    day_offsets, day_mixed = _span_offsets(zone, unique_days * _DAY_SEC, _DAY_SEC)
    offsets = day_offsets[index]
    rows = np.flatnonzero(day_mixed[index])
    if rows.size:
        hours, hour_index = np.unique(local[rows] // _HOUR_SEC, return_inverse=True)
        hour_offsets, hour_mixed = _span_offsets(zone, hours * _HOUR_SEC, _HOUR_SEC)
        offsets[rows] = hour_offsets[hour_index]
        rows = rows[hour_mixed[hour_index]]
    times = local[rows].tolist()
    offsets[rows] = [_utcoffset(zone, t, 0) for t in times]
    later = np.array([_utcoffset(zone, t, 1) for t in times], dtype=np.int64)
    return offsets, rows, later


def _to_utc(path: Path, local: IntArray, lines: IntArray, zone: Zone, label: str) -> IntArray:
    """Wall-clock seconds in `zone` to UTC, in place; a repeated hour's second pass starts where time goes back."""
    if isinstance(zone, int):
        if zone:
            local -= zone
        return local
    offsets, rows, later = _zone_offsets(zone, local)
    earlier = offsets[rows]
    gap = later > earlier  # PEP 495: in a gap fold=0 reads the offset from before the jump forward
    if gap.any():
        i = int(rows[np.argmax(gap)])
        raise DataError(
            f"{path}:{int(lines[i])}: time {_iso(int(local[i]))} does not exist in {label} "
            "(the clocks jump forward over it)"
        )
    repeated = np.flatnonzero(earlier > later)  # positions in `rows`, ascending
    for run in np.split(repeated, np.flatnonzero(np.diff(rows[repeated]) != 1) + 1):
        at = rows[run]
        back = np.flatnonzero(local[at[1:]] <= local[at[:-1]])
        if back.size:
            second_pass = run[int(back[0]) + 1 :]
            offsets[rows[second_pass]] = later[second_pass]
    local -= offsets
    return local


# --- fixed-width times ----------------------------------------------------------------------------------------

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


def _raw(values: Any, i: int) -> str:
    item = values[i].as_py()
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)


def _numpy(values: Any, dtype: type[_Number]) -> npt.NDArray[_Number]:
    """A pyarrow column of fixed-width numbers without nulls as one numpy array, in pyarrow's memory.

    Read straight from the buffers (pyarrow's to_numpy() imports pandas when it is installed: 0.3 s).
    """
    pa = _arrow()
    chunks = [c for c in (values.chunks if hasattr(values, "chunks") else [values]) if len(c)]
    arr = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks, memory_pool=_pool()) if chunks else None
    if arr is None:
        return np.zeros(0, dtype=dtype)
    size = np.dtype(dtype).itemsize
    out = np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * size)
    return out if out.flags.writeable else out.copy()


def _empty(n: int, dtype: type[_Number]) -> npt.NDArray[_Number]:
    """An uninitialised array in pyarrow's memory pool, which can reuse the pages the CSV reader has freed (a
    fresh numpy array faults in new ones: about 0.1 s per 100 MB in a VM)."""
    return np.frombuffer(_arrow().allocate_buffer(n * np.dtype(dtype).itemsize, memory_pool=_pool()), dtype=dtype)


def _numpy_floats(values: Any) -> FloatArray:
    pa = _arrow()
    return _numpy(values if values.type == pa.float64() else values.cast(pa.float64()), np.float64)


# --- text files -----------------------------------------------------------------------------------------------


def _arrow(module: str = "pyarrow") -> Any:
    """A pyarrow module, imported on first use (it ships no type stubs, hence Any)."""
    _size_arrow_pool()
    return importlib.import_module(module)


@functools.cache
def _pool() -> Any:
    """The memory pool for the reader's big allocations: jemalloc (else the system's), not the default mimalloc.

    Measured on the 2-core VM, in a fresh process: the same 3-million-row import took 0.9-1.2 s with mimalloc
    and 0.5-0.75 s with jemalloc, the difference being the cost of faulting in fresh pages.
    """
    pa = _arrow()
    return pa.jemalloc_memory_pool() if "jemalloc" in pa.supported_memory_backends() else pa.system_memory_pool()


@functools.cache
def _size_arrow_pool() -> None:
    """Give pyarrow's thread pool every usable core, once per process.

    pyarrow sizes the pool from OMP_NUM_THREADS, which `swimmy` sets to 1 for OpenBLAS: left so, the CSV
    reader runs on one core and takes twice as long as pandas on a 2-core machine.
    """
    pa = importlib.import_module("pyarrow")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if pa.cpu_count() < usable:
        pa.set_cpu_count(usable)


def _decode(raw: bytes, *, strict: bool) -> str:
    """Text from bytes: UTF-8 (BOM optional) or UTF-16 (MetaTrader 5's export: BOM, little-endian)."""
    errors = "strict" if strict else "replace"
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16", errors=errors)
    if len(raw) >= 2 and raw[1] == 0 and raw[0] != 0:
        return raw.decode("utf-16-le", errors=errors)
    if len(raw) >= 2 and raw[0] == 0 and raw[1] != 0:
        return raw.decode("utf-16-be", errors=errors)
    return raw.decode("utf-8-sig", errors=errors)


@dataclass(frozen=True)
class _Source:
    """A text file as pyarrow reads it: the file itself, or (re-encoded or trimmed) a buffer in memory."""

    path: Path
    buffer: Any  # a pyarrow Buffer of UTF-8 text, or None to read the file itself
    head: bytes  # the first 64 KiB of the UTF-8 text

    def input(self) -> Any:
        # pyarrow reading the file itself beats a memory map of it twofold in a fresh process: the map's page
        # faults land in every reader thread at once. pyarrow skips a UTF-8 BOM.
        return str(self.path) if self.buffer is None else _arrow().BufferReader(self.buffer)

    def text(self) -> str:
        raw = self.path.read_bytes() if self.buffer is None else self.buffer.to_pybytes()
        return _decode(raw, strict=False)

    def head_lines(self) -> list[str]:
        """The first few lines, without line ends."""
        lines = _decode(self.head, strict=False).split("\n")
        if len(self.head) == _HEAD_BYTES:
            lines.pop()  # maybe cut short
        return [line.rstrip("\r") for line in lines[:8]]


_HEAD_BYTES: Final = 65536


def _load(path: Path) -> _Source:
    """The file to read; in memory only when it is UTF-16 or ends in blank lines (both rare, both small)."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD_BYTES)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _HEAD_BYTES))
            tail = f.read()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        raise DataError(f"{path}: empty file")
    utf16 = head[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(head) >= 2 and 0 in head[:2])
    if not utf16 and tail[len(tail.rstrip()) :] in (b"", b"\n", b"\r\n"):
        return _Source(path, None, head)
    pa = _arrow()
    if utf16:
        try:
            buf = pa.py_buffer(_decode(path.read_bytes(), strict=True).encode())
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not a UTF-16 text file: {exc}") from exc
    else:
        buf = pa.memory_map(str(path)).read_buffer()
    end = buf.size
    while end > 0:  # trailing blank lines are fine; a blank line before more rows is an error
        chunk = buf.slice(max(0, end - _HEAD_BYTES), min(end, _HEAD_BYTES)).to_pybytes()
        kept = len(chunk.rstrip())
        end -= len(chunk) - kept
        if kept:
            break
    if end == 0:
        raise DataError(f"{path}: empty file")
    buf = buf.slice(0, end)
    return _Source(path, buf, buf.slice(0, min(end, _HEAD_BYTES)).to_pybytes())


@dataclass(frozen=True)
class _Layout:
    """Where a text format keeps its fields."""

    width: int
    delimiter: str
    header_lines: int
    times: _Times
    prices: tuple[int, int, int, int]
    volume: int | None
    quoted: bool = False

    @property
    def names(self) -> list[str]:
        return [f"f{i}" for i in range(self.width)]


_PRICE_ROLES: Final = ("open", "high", "low", "close")
_NAMES: Final = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "tickvol", "tick volume", "tick_volume", "tickvolume"),
}
_DATETIME_NAMES: Final = ("datetime", "timestamp", "gmt time", "time (utc)", "utc", "local time", "date time")
_MT5_VOLUME: Final = ("tickvol", "vol", "volume")  # FX brokers fill <VOL> (real volume) with zeros
_DUKASCOPY_LAYOUTS: Final = ("DD.MM.YYYY hh:mm:ss.fff", "DD.MM.YYYY hh:mm:ss.fff GMT+HHNN")
_MT4_LAYOUT: Final = _Layout(7, ",", 0, _Times((0, 1), ("YYYY.MM.DD", "hh:mm")), (2, 3, 4, 5), 6)
_HISTDATA_LAYOUT: Final = _Layout(6, ";", 0, _Times((0,), ("YYYYMMDD hhmmss",)), (1, 2, 3, 4), 5)


def _norm(name: str) -> str:
    name = name.strip().strip('"').strip().lower()
    return name[1:-1] if name.startswith("<") and name.endswith(">") else name


def _sniff(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d])  # ties go to the earlier, so a one-column file is ","


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def _headered_layout(path: Path, fmt: str, lines: list[str]) -> _Layout:
    """Columns by name (generic, mt5, dukascopy), and the time layout guessed from the first row."""
    header = lines[0]
    delimiter = "\t" if fmt == "mt5" and "\t" in header else _sniff(header)
    names = [_norm(n) for n in _split(header, delimiter)]

    def find(candidates: Sequence[str]) -> int | None:
        return next((names.index(c) for c in candidates if c in names), None)

    opens, highs, lows, closes = (find(_NAMES[role]) for role in _PRICE_ROLES)
    single, date, time_ = find(_DATETIME_NAMES), find(("date",)), find(("time",))
    parts: tuple[tuple[int, str], ...] = ()
    if single is not None:
        parts = ((single, "both"),)
    elif date is not None and time_ is not None:
        parts = ((date, "date"), (time_, "time"))
    elif time_ is not None:
        parts = ((time_, "both"),)
    elif date is not None:
        parts = ((date, "both"),)
    if opens is None or highs is None or lows is None or closes is None or not parts:
        missing = [r for r, i in zip(_PRICE_ROLES, (opens, highs, lows, closes), strict=True) if i is None]
        raise DataError(
            f"{path}:1: no {' or '.join(([] if parts else ['time']) + missing)} column in the header {header!r}: "
            "expected a time column (time, date, datetime, timestamp, Gmt time, ...) and open, high, low, close"
        )
    if len(lines) < 2 or not lines[1].strip():
        raise DataError(f"{path}: no bars: the file has a header and no rows")
    first = _split(lines[1], delimiter)
    layouts = tuple(_guess_layout(path, fmt, names[i], first[i] if i < len(first) else "", part) for i, part in parts)
    volume = find(_MT5_VOLUME if fmt == "mt5" else _NAMES["volume"])
    times = _Times(tuple(i for i, _ in parts), layouts)
    return _Layout(len(names), delimiter, 1, times, (opens, highs, lows, closes), volume, quoted=True)


_EXPECTED: Final = {
    ("generic", "both"): "Unix seconds, YYYY-MM-DD[ HH:MM[:SS]] (T, Z or +HH:MM allowed), YYYY.MM.DD HH:MM[:SS] "
    "or DD.MM.YYYY HH:MM:SS.mmm",
    ("generic", "date"): "YYYY-MM-DD, YYYY.MM.DD, YYYY/MM/DD, DD.MM.YYYY or YYYYMMDD",
    ("generic", "time"): "HH:MM, HH:MM:SS or HHMMSS",
    ("mt5", "both"): "YYYY.MM.DD",
    ("mt5", "date"): "YYYY.MM.DD",
    ("mt5", "time"): "HH:MM:SS",
    ("dukascopy", "both"): "DD.MM.YYYY HH:MM:SS.mmm",
}
_ALLOWED: Final = {
    ("mt5", "both"): ("YYYY.MM.DD",),
    ("mt5", "date"): ("YYYY.MM.DD",),
    ("mt5", "time"): ("hh:mm:ss", "hh:mm"),
    ("dukascopy", "both"): ("DD.MM.YYYY hh:mm:ss.fff", "DD.MM.YYYY hh:mm:ss.fff GMT+HHNN"),
}


def _guess_layout(path: Path, fmt: str, name: str, value: str, part: str) -> str:
    """The layout of a time column (`part`: date and time, date only, time only) from its first value."""
    value = value.strip()
    if fmt == "generic" and part == "both" and name != "date" and _UNIX_RE.fullmatch(value):
        return "unix"
    layout = _SHAPES.get(_shape(value), "")
    has_date, has_time = "Y" in layout, "h" in layout
    fits = {"both": has_date, "date": has_date and not has_time, "time": has_time and not has_date}[part]
    allowed = _ALLOWED.get((fmt, part))
    if not fits or (allowed is not None and layout not in allowed):
        expected = _EXPECTED[("generic" if fmt == "parquet" else fmt, part)]
        raise DataError(f"{path}:2: bad time {value!r}: expected {expected}")
    return layout


def _read_table(source: _Source, layout: _Layout, types: dict[int, Any]) -> Any:
    pacsv = _arrow("pyarrow.csv")
    names = layout.names
    return pacsv.read_csv(
        source.input(),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=layout.header_lines, block_size=1 << 22),
        parse_options=pacsv.ParseOptions(
            delimiter=layout.delimiter, quote_char='"' if layout.quoted else False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={names[i]: t for i, t in types.items()},
            include_columns=[names[i] for i in types],
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
        memory_pool=_pool(),
    )


def _line_numbers(n: int, first: int) -> IntArray:
    """first, first + 1, ...: n line numbers, counted in place (np.arange would take fresh pages)."""
    lines = _empty(n, np.int64)
    lines.fill(1)
    lines[:1] = first
    return np.cumsum(lines, out=lines)


def _time_type(layout: str) -> Any:
    """How pyarrow should read a time column.

    A time of day is pyarrow's own time32 (parsed while reading, strictly: 24:00 or 12:60 fail). A column with
    a date is fixed-size binary: a value of another width fails the read (then _diagnose says which), and the
    column arrives as one block of bytes that numpy decodes in place (pyarrow's strptime takes 30 February).
    """
    pa = _arrow()
    if layout == "unix":
        return pa.float64()
    return pa.time32("s") if layout in ("hh:mm", "hh:mm:ss") else pa.binary(len(layout))


def _read_text(path: Path, fmt: str, zone: Zone, label: str) -> Parsed:
    pa = _arrow()
    source = _load(path)
    if fmt == "mt4" and source.buffer is None:
        fast = _read_mt4_fast(path, zone, label)
        if fast is not None:
            return fast
    lines = source.head_lines()
    if fmt == "mt4":
        layout = _MT4_LAYOUT
    elif fmt == "histdata":
        layout = _HISTDATA_LAYOUT
    else:
        layout = _headered_layout(path, fmt, lines)
    number_columns = [*layout.prices, *([layout.volume] if layout.volume is not None else [])]
    types = {i: _time_type(t) for i, t in zip(layout.times.columns, layout.times.layouts, strict=True)}
    types.update({i: pa.float64() for i in number_columns})
    try:
        table = _read_table(source, layout, types)
    except pa.ArrowInvalid as exc:
        raise _diagnose(path, source, layout, types, exc) from None
    n = table.num_rows
    row_lines = _line_numbers(n, 1 + layout.header_lines)
    names = layout.names
    time_columns = [table.column(names[i]) for i in layout.times.columns]
    # The times are decoded in a second thread while this one copies and checks the numbers: numpy and
    # pyarrow release the GIL, and on two cores that takes a tenth off a large import.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="swimmy-times") as pool:
        decoding = pool.submit(_decode_times, path, time_columns, layout.times, row_lines)
        prices = [_numpy_floats(table.column(names[i])) for i in layout.prices]
        volume = _numpy_floats(table.column(names[layout.volume])) if layout.volume is not None else np.zeros(n)
        values_ok = _values_ok(*prices, volume)
        seconds = decoding.result()  # a bad time is reported before a bad price
    if not values_ok:
        _check_values(path, row_lines, *prices, volume)
    return _finish(path, fmt, seconds, layout.times.aware, prices, volume, row_lines, zone, label)


def _read_mt4_fast(path: Path, zone: Zone, label: str) -> Parsed | None:
    """MT4's plain layout in one compiled pass (fastcsv.py); None when a line is not plain: read it the general way."""
    from swimmy.backtest import fastcsv  # numba: only `data import` and `data check` pay for it

    try:  # read, not mapped: a file truncated while it is read must not be a SIGBUS
        with _arrow().OSFile(str(path)) as f:
            buf = np.frombuffer(f.read_buffer(), dtype=np.uint8)
    except OSError:
        return None
    columns = fastcsv.parse_mt4(buf)
    if columns is None:
        return None
    row_lines = _line_numbers(len(columns.seconds), 1)
    if not _values_ok(*columns.prices, columns.volume):
        _check_values(path, row_lines, *columns.prices, columns.volume)
    return _finish(path, "mt4", columns.seconds, False, columns.prices, columns.volume, row_lines, zone, label)


def _diagnose(path: Path, source: _Source, layout: _Layout, types: dict[int, Any], exc: Exception) -> DataError:
    """The first bad row, found slowly once the fast read has failed."""
    pa = _arrow()
    try:
        table = _read_table(source, layout, dict.fromkeys(types, pa.binary()))
    except pa.ArrowInvalid:
        return _field_count_error(path, source, layout) or DataError(f"{path}: {exc}")
    names = layout.names
    role = dict(zip(layout.prices, _PRICE_ROLES, strict=True))
    if layout.volume is not None:
        role[layout.volume] = "volume"
    found: list[tuple[int, str]] = []  # (row, what): the earliest row wins, its time before its numbers
    columns = [table.column(names[i]) for i in layout.times.columns]
    if layout.times.layouts == ("unix",):
        bad = _first_unparsable(columns[0])
        if bad is not None:
            found.append((bad, f"bad time {_raw(columns[0], bad)!r}: expected Unix seconds"))
    else:
        _, bad = _first_bad_time(columns, layout.times)
        if bad >= 0:
            raw = " ".join(_raw(values, bad) for values in columns)
            found.append((bad, f"bad time {raw!r}: expected {layout.times.expected}"))
    for i in role:
        column = table.column(names[i])
        bad = _first_unparsable(column)
        if bad is not None:
            found.append((bad, f"bad number in {role[i]}: {_raw(column, bad)!r}"))
    if not found:
        return DataError(f"{path}: {exc}")
    bad, what = min(found, key=lambda item: item[0])
    line = bad + 1 + layout.header_lines
    empty = all(not _raw(table.column(name), bad) for name in table.column_names)
    if empty and not source.text().split("\n")[line - 1].strip():
        what = "blank line before more rows"  # pyarrow reads it as a row of empty fields
    return DataError(f"{path}:{line}: {what}")


def _first_unparsable(column: Any) -> int | None:
    """The index of the first value pyarrow cannot read as a float (bisecting: about 2n values cast)."""
    pa, pc = _arrow(), _arrow("pyarrow.compute")

    def parses(values: Any) -> bool:
        try:
            pc.cast(pc.utf8_trim_whitespace(values.cast(pa.string())), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        return True

    base = 0
    for chunk in column.chunks:
        if not parses(chunk):
            lo, hi = 0, len(chunk)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if parses(chunk.slice(lo, mid - lo)) else (lo, mid)
            return base + lo
        base += len(chunk)
    return None


def _field_count_error(path: Path, source: _Source, layout: _Layout) -> DataError | None:
    text = source.text()
    rows = text.split("\n")[layout.header_lines :]
    lines = (r.rstrip("\r") for r in rows)
    reader = csv.reader(
        lines, delimiter=layout.delimiter, quoting=csv.QUOTE_MINIMAL if layout.quoted else csv.QUOTE_NONE
    )
    for k, fields in enumerate(reader):
        line = k + 1 + layout.header_lines
        if not fields or not "".join(fields).strip():
            return DataError(f"{path}:{line}: blank line before more rows")
        if len(fields) != layout.width:
            what = "missing field(s)" if len(fields) < layout.width else "too many fields"
            like = " like the header" if layout.header_lines else ""
            return DataError(f"{path}:{line}: {what}: {len(fields)} fields, expected {layout.width}{like}")
    return None


# --- Parquet --------------------------------------------------------------------------------------------------


def _read_parquet(path: Path, zone: Zone, label: str) -> Parsed:
    pa, pq = _arrow(), _arrow("pyarrow.parquet")
    try:
        table = pq.ParquetFile(str(path)).read()  # not pq.read_table: its dataset layer imports pandas
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from exc
    n = table.num_rows
    if n == 0:
        raise DataError(f"{path}: no bars: the Parquet file has no rows")
    names = [_norm(c) for c in table.column_names]

    def find(candidates: Sequence[str]) -> int | None:
        return next((names.index(c) for c in candidates if c in names), None)

    time_index = find((*_DATETIME_NAMES, "time", "date", "__index_level_0__"))
    roles = {role: find(_NAMES[role]) for role in (*_PRICE_ROLES, "volume")}
    missing = [r for r in ("time", *_PRICE_ROLES) if (time_index if r == "time" else roles[r]) is None]
    if missing or time_index is None:
        raise DataError(f"{path}: no {' or '.join(missing)} column: the columns are {table.column_names}")
    row_lines = _line_numbers(n, 1)
    for role, i in [("time", time_index), *roles.items()]:
        if i is not None and table.column(i).null_count:
            bad = _arrow("pyarrow.compute").index(table.column(i).is_valid(), False).as_py()
            raise DataError(f"{path}:{bad + 1}: missing value in {role}")
    seconds, aware = _parquet_times(path, table.column(time_index), names[time_index], row_lines)
    numbers: list[FloatArray] = []
    for role in (*_PRICE_ROLES, "volume"):
        i = roles[role]
        if i is None:
            numbers.append(np.zeros(n))
            continue
        try:
            numbers.append(_numpy_floats(table.column(i).cast(pa.float64())))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataError(
                f"{path}: column {table.column_names[i]!r} is {table.column(i).type}, not a number"
            ) from None
    _check_values(path, row_lines, *numbers)
    return _finish(path, "parquet", seconds, aware, numbers[:4], numbers[4], row_lines, zone, label)


def _parquet_times(path: Path, column: Any, name: str, lines: IntArray) -> tuple[IntArray, bool]:
    pa = _arrow()
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        per_sec = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[kind.unit] if pa.types.is_timestamp(kind) else 1
        if pa.types.is_date(kind):
            column = column.cast(pa.timestamp("s"))
        raw = _numpy(column.cast(pa.int64()), np.int64)
        if (raw % per_sec).any():
            i = int(np.flatnonzero(raw % per_sec)[0])
            raise DataError(f"{path}:{int(lines[i])}: time {column[i]} is not a whole second")
        return raw // per_sec, pa.types.is_timestamp(kind) and kind.tz is not None
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _unix_seconds(path, column, lines), True
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        values = column.cast(pa.string()).cast(pa.binary())
        layout = _guess_layout(path, "generic", name, _raw(values, 0), "both")
        times = _Times((0,), (layout,))
        return _decode_times(path, [values], times, lines), times.aware
    raise DataError(f"{path}: the time column {name!r} is {kind}: expected a timestamp, a date, Unix seconds or text")


# --- the common end -------------------------------------------------------------------------------------------


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
    """DataError at the first row with a bad price or volume."""
    if _values_ok(*columns):
        return
    open_, high, low, close, volume = columns
    checks: list[tuple[BoolArray, Callable[[int], str]]] = []
    for name, values in zip(_PRICE_ROLES, (open_, high, low, close), strict=True):
        checks.append((~(np.isfinite(values) & (values > 0)), _value_message(name + " price", values, "positive")))
    checks.append((~(np.isfinite(volume) & (volume >= 0)), _value_message("volume", volume, "negative")))
    checks.append((high < low, lambda i: f"high {float(high[i])!r} < low {float(low[i])!r}"))
    for name, values in (("open", open_), ("close", close)):
        checks.append(((values < low) | (values > high), _range_message(name, values, low, high)))
    bad = np.zeros(len(lines), dtype=bool)
    for mask, _ in checks:
        bad |= mask
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}:{int(lines[i])}: {next(say(i) for mask, say in checks if mask[i])}")


def _value_message(name: str, values: FloatArray, rule: str) -> Callable[[int], str]:
    def say(i: int) -> str:
        value = float(values[i])
        if not math.isfinite(value):
            return f"{name} {value!r} is not finite"
        return f"{name} {value!r} is {'not positive' if rule == 'positive' else 'negative'}"

    return say


def _range_message(name: str, values: FloatArray, low: FloatArray, high: FloatArray) -> Callable[[int], str]:
    def say(i: int) -> str:
        return f"{name} {float(values[i])!r} is outside [low {float(low[i])!r}, high {float(high[i])!r}]"

    return say


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


def _iso(ts: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ts)).strftime("%Y-%m-%dT%H:%M:%S")


# --- the public entry points ----------------------------------------------------------------------------------

_MT4_RE: Final = re.compile(r"\d{4}\.\d{2}\.\d{2},\d{2}:\d{2},")
_HISTDATA_RE: Final = re.compile(r"\d{8} \d{6};")
_DUKASCOPY_NAMES: Final = ("gmt time", "utc", "time (utc)", "local time")


def detect_format(path: Path) -> str:
    """The format of a source file, from its extension and first lines; DataError when none fits."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    try:
        with path.open("rb") as f:
            head = f.read(65536)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if head[:4] == b"PAR1":
        return "parquet"
    text = _decode(head[: len(head) - len(head) % 2] if head[:2] in (b"\xff\xfe", b"\xfe\xff") else head, strict=False)
    lines = [line.strip() for line in text.split("\n")[:2]]
    first = lines[0] if lines else ""
    if not first:
        raise DataError(f"{path}: empty file" if not head.strip() else f"{path}:1: blank first line")
    if first.lower().startswith("<date>"):
        return "mt5"
    if _MT4_RE.match(first):
        return "mt4"
    if _HISTDATA_RE.match(first):
        return "histdata"
    delimiter = _sniff(first)
    names = [_norm(n) for n in _split(first, delimiter)]
    if all(any(c in names for c in _NAMES[role]) for role in _PRICE_ROLES):
        value = _split(lines[1], delimiter)[0] if len(lines) > 1 and lines[1] else ""
        if names[0] in _DUKASCOPY_NAMES and _SHAPES.get(_shape(value)) in _ALLOWED[("dukascopy", "both")]:
            return "dukascopy"
        if any(n in (*_DATETIME_NAMES, "time", "date") for n in names):
            return "generic"
    raise DataError(
        f"{path}:1: unknown format, first line {first[:80]!r}: expected one of {', '.join(FORMATS)} "
        "(see docs/data.md; --format names one)"
    )


def read_source(path: Path, *, format: str | None = None, tz: str | None = None) -> Parsed:
    """Read a source file into UTC bars, checked row by row; DataError names the file and line of a problem."""
    fmt = detect_format(path) if format is None else format
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    zone, label = _zone(tz, fmt)
    if fmt == "parquet":
        return _read_parquet(path, zone, label)
    return _read_text(path, fmt, zone, label)


def infer_step(ts: IntArray) -> int:
    """The bar step in seconds: the most common positive difference between successive times (ties: the smaller)."""
    steps = np.diff(np.asarray(ts, dtype=np.int64))
    steps = steps[steps > 0]
    if steps.size == 0:
        raise DataError("cannot tell the timeframe: fewer than two distinct bar times")
    week = 7 * _DAY_SEC  # steps up to a week are counted in a table (sorting millions of them is slow)
    counts = np.bincount(steps[steps <= week])
    step = int(np.argmax(counts)) if counts.size else 0
    longer = steps[steps > week]
    if longer.size:
        values, long_counts = np.unique(longer, return_counts=True)
        k = int(np.argmax(long_counts))
        if not counts.size or long_counts[k] > counts[step]:
            step = int(values[k])
    return step


def _floor_div(values: IntArray, divisor: int) -> IntArray:
    """values // divisor for times in seconds, through float64: exact below 2**53, and far faster than int64 //."""
    quotient: IntArray = np.floor(values / divisor).astype(np.int64)
    return quotient


def resample(p: Parsed, step_sec: int) -> Parsed:
    """Coarser bars from finer ones: UTC buckets floor(ts / step) * step, labelled by their start."""
    if step_sec <= 0:
        raise DataError(f"cannot resample to a step of {step_sec} s")
    n = len(p.ts)
    if n == 0:
        return p
    if n > 1:
        if (np.diff(p.ts) <= 0).any():
            raise DataError("cannot resample: bar times are not strictly ascending")
        source = infer_step(p.ts)
        if step_sec < source or step_sec % source:
            raise DataError(
                f"cannot resample {source} s bars to {step_sec} s: the target must be the source step "
                "times a whole number (finer or uneven timeframes cannot be made from coarser bars)"
            )
        misaligned = p.ts != _floor_div(p.ts, source) * source
        if misaligned.any():
            i = int(np.flatnonzero(misaligned)[0])
            raise DataError(
                f"cannot resample: the bar at line {int(p.line[i])} ({_iso(int(p.ts[i]))}Z) does not start "
                f"on a whole {source} s step, so it would straddle two {step_sec} s bars"
            )
    bucket = _floor_div(p.ts, step_sec) * step_sec
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [n])) - 1
    return Parsed(
        ts=bucket[starts],
        open=p.open[starts],
        high=np.maximum.reduceat(p.high, starts),
        low=np.minimum.reduceat(p.low, starts),
        close=p.close[ends],
        volume=np.add.reduceat(p.volume, starts),
        line=p.line[starts],
        format=p.format,
    )
