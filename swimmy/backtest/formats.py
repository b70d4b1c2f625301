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

This module holds the entry points and the two readers' top levels (the text reader stays here so that
tests can swap out its fast path); the parts live beside it: formatarrow (pyarrow on first use),
formatzones (time zones), formattimes (time columns), formatbars (Parsed and the checks), formatlayouts
(text files and their fields) and formatdiagnose (the first bad row).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from swimmy.backtest.formatarrow import _arrow, _line_numbers, _numpy, _numpy_floats, _raw
from swimmy.backtest.formatbars import _PRICE_ROLES, Parsed, _check_values, _finish, _values_ok
from swimmy.backtest.formatdiagnose import _diagnose
from swimmy.backtest.formatlayouts import (
    _ALLOWED,
    _DATETIME_NAMES,
    _HISTDATA_LAYOUT,
    _MT4_LAYOUT,
    _NAMES,
    _decode,
    _guess_layout,
    _headered_layout,
    _load,
    _norm,
    _read_table,
    _sniff,
    _split,
    _time_type,
)
from swimmy.backtest.formattimes import _SHAPES, _decode_times, _shape, _Times, _unix_seconds
from swimmy.backtest.formatzones import _DAY_SEC, Zone, _floor_div, _iso, _zone
from swimmy.errors import DataError

__all__ = ["FORMATS", "Parsed", "detect_format", "infer_step", "read_source", "resample"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FORMATS: Final = ("generic", "mt4", "mt5", "dukascopy", "histdata", "parquet")


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
    row_lines = columns.lines
    if not _values_ok(*columns.prices, columns.volume):
        _check_values(path, row_lines, *columns.prices, columns.volume)
    return _finish(path, "mt4", columns.seconds, False, columns.prices, columns.volume, row_lines, zone, label)


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
    from swimmy.backtest.fastcsv import step_counts  # numba: only the import tools call this

    week = 7 * _DAY_SEC  # steps up to a week are counted in a table (sorting millions of them is slow)
    counts, longer, positive = step_counts(np.ascontiguousarray(ts, dtype=np.int64), week)
    if positive == 0:
        raise DataError("cannot tell the timeframe: fewer than two distinct bar times")
    short = positive > len(longer)
    step = int(np.argmax(counts)) if short else 0
    if longer.size:
        values, long_counts = np.unique(longer, return_counts=True)
        k = int(np.argmax(long_counts))
        if not short or long_counts[k] > counts[step]:
            step = int(values[k])
    return step


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
