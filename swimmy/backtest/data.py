"""Market data: one file of bars per universe (symbol and timeframe), as numpy arrays.

The canonical file, `SYMBOL_TF.npy` (swimmy/backtest/canonical.py, written by `swimmy
data import`), is memory-mapped: nothing is parsed. Without one, `SYMBOL_TF.csv` is read,
in one of two layouts (the header picks one):

- `timestamp,open,high,low,close[,volume]`: Unix seconds, an integer or a float with `.0`;
- `Time,Open,High,Low,Close,Volume`: `DD.MM.YYYY HH:MM:SS.mmm` in UTC (the Dukascopy export).

Volume is read and ignored. Every problem is a DataError of the form `<file>:<line>: <what>`
(the header is line 1), so an operator can open the file at the bad line. Parsing is bulk
(split, then numpy) and checks are vector operations; the slow per-row scan runs only
to locate the first bad line once a check has failed.

`load_bars` caches per process by (resolved path, mtime_ns, size); the cached arrays are
read-only, since every backtest of the process shares them.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NoReturn

import numpy as np
import numpy.typing as npt

from swimmy.backtest.canonical import EXTENSION, canonical_path, file_hash, open_canonical
from swimmy.backtest.engine import Bars
from swimmy.config import Config
from swimmy.errors import DataError

UNIX_HEADERS: Final = (
    ("timestamp", "open", "high", "low", "close"),
    ("timestamp", "open", "high", "low", "close", "volume"),
)
DUKASCOPY_HEADER: Final = ("Time", "Open", "High", "Low", "Close", "Volume")
ACCEPTED: Final = (
    "'timestamp,open,high,low,close[,volume]' (Unix seconds) "
    "or 'Time,Open,High,Low,Close,Volume' (DD.MM.YYYY HH:MM:SS.mmm, UTC)"
)

_DUKASCOPY_FORMAT: Final = "DD.MM.YYYY HH:MM:SS.mmm"
_DUKASCOPY_LEN: Final = len(_DUKASCOPY_FORMAT)
_DIGITS: Final = [i for i, c in enumerate(_DUKASCOPY_FORMAT) if c.isalpha()]
_SEPARATORS: Final = [(i, c) for i, c in enumerate(_DUKASCOPY_FORMAT) if not c.isalpha()]
_PRICE_NAMES: Final = ("open", "high", "low", "close")
_MAX_EXACT_FLOAT: Final = 2.0**53

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_cache: dict[str, tuple[int, int, Bars]] = {}
_hash_cache: dict[str, tuple[int, int, str]] = {}


def universe_name(symbol: str, timeframe: str) -> str:
    """`<SYMBOL>_<TF>`: how READY and the events name a universe."""
    return f"{symbol}_{timeframe}"


@functools.lru_cache(maxsize=256)
def _candidates(data_dir: Path, symbol: str, timeframe: str) -> tuple[str, str, str]:
    """A universe's canonical and CSV paths as text, and the CSV's as the user named it, once per process.

    A worker asks on every request, and pathlib's objects cost tens of µs there; `os.stat` on text does not.
    """
    canonical = canonical_path(data_dir, symbol, timeframe).resolve()
    named_csv = data_dir / f"{symbol}_{timeframe}.csv"
    return str(canonical), str(named_csv.resolve()), str(named_csv)


def _current_file(data_dir: Path, symbol: str, timeframe: str) -> tuple[str, os.stat_result]:
    """`data_path`'s file (resolved, as text) and its stat; OSError when there is none."""
    canonical, csv, _ = _candidates(data_dir, symbol, timeframe)
    try:
        return canonical, os.stat(canonical)
    except FileNotFoundError:
        return csv, os.stat(csv)


def universe_dir(cfg: Config, symbol: str) -> Path:
    """Where a symbol's file lives: `school.synthetic_dir` for a `[synthetic.SYMBOL]` universe, else `data_dir`."""
    if symbol in cfg.synthetic and cfg.school.synthetic_dir is not None:
        return cfg.school.synthetic_dir
    return cfg.school.data_dir


def data_path(data_dir: Path, symbol: str, timeframe: str) -> Path:
    """The file that holds a universe's bars: the canonical `.npy` when there is one, else the `.csv`."""
    canonical = canonical_path(data_dir, symbol, timeframe)
    if canonical.exists():
        return canonical
    return data_dir / f"{symbol}_{timeframe}.csv"


def data_hash(data_dir: Path, symbol: str, timeframe: str) -> str | None:
    """The content hash (sha256, first 16 hex digits) of a universe's file; None when there is no readable file.

    Cached per process by (mtime_ns, size), like the bars: a changed file gets a new hash at once.
    """
    try:
        key, st = _current_file(data_dir, symbol, timeframe)
    except OSError:
        return None
    hit = _hash_cache.get(key)
    if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    try:
        value = file_hash(Path(key))
    except OSError:
        return None
    _hash_cache[key] = (st.st_mtime_ns, st.st_size, value)
    return value


def load_bars(data_dir: Path, symbol: str, timeframe: str) -> Bars:
    """The bars of a universe (`data_path`), read once per process while the file is unchanged.

    A canonical `.npy` is mapped, not read: the arrays are views of the page cache that every process
    on the machine shares. A `.csv` is parsed into arrays of this process.
    """
    try:
        key, st = _current_file(data_dir, symbol, timeframe)
    except FileNotFoundError:
        path = data_path(data_dir, symbol, timeframe)
        raise DataError(f"no data for {symbol} {timeframe}: {path} does not exist") from None
    except OSError as exc:
        path = data_path(data_dir, symbol, timeframe)
        raise DataError(f"no data for {symbol} {timeframe}: cannot read {path}: {exc.strerror}") from exc
    hit = _cache.get(key)
    if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    resolved = Path(key)
    named = resolved if resolved.suffix == EXTENSION else Path(_candidates(data_dir, symbol, timeframe)[2])
    bars = open_canonical(resolved) if resolved.suffix == EXTENSION else read_csv(named)
    # One entry per file: a changed file replaces its old bars instead of piling up next to them.
    _cache[key] = (st.st_mtime_ns, st.st_size, bars)
    return bars


def clear_cache() -> None:
    """Forget every cached file."""
    _cache.clear()
    _hash_cache.clear()


def read_csv(path: Path) -> Bars:
    """Parse and check one CSV of bars (no cache); DataError names the file and line of any problem."""
    lines = _read_lines(path)
    header = tuple(lines[0].split(","))
    if header in UNIX_HEADERS:
        parse_time: Callable[[Path, Sequence[str]], IntArray] = _unix_seconds
    elif header == DUKASCOPY_HEADER:
        parse_time = _dukascopy_seconds
    else:
        raise DataError(f"{path}:1: unknown header {lines[0]!r}: expected {ACCEPTED}")
    body = _body(path, lines)
    columns = _columns(path, body, len(header))
    timestamps = parse_time(path, columns[0])
    prices = [_floats(path, columns[i + 1], name) for i, name in enumerate(_PRICE_NAMES)]
    _check_prices(path, *prices)
    _check_increasing(path, timestamps)
    for a in (timestamps, *prices):
        a.flags.writeable = False
    return Bars(timestamps=timestamps, open=prices[0], high=prices[1], low=prices[2], close=prices[3], source=str(path))


def _read_lines(path: Path) -> list[str]:
    """The file's lines without their ends (LF or CRLF: the shipped sample is CRLF); a UTF-8 BOM is dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file: {exc}") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    # Split on \n only (not str.splitlines, which also splits on form feeds and the like) so that
    # list index + 1 is the file's line number.
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines[0].strip():
        raise DataError(f"{path}:1: empty file: expected a header, {ACCEPTED}")
    return lines


def _body(path: Path, lines: list[str]) -> list[str]:
    """The data lines: trailing blank lines dropped (a blank line before more data is caught by _columns)."""
    end = len(lines)
    while end > 1 and not lines[end - 1].strip():
        end -= 1
    if end == 1:
        raise DataError(f"{path}: no bars: the file has a header and no rows")
    return lines[1:end]


def _line(index: int) -> int:
    """The file line of body row `index` (the header is line 1)."""
    return index + 2


def _columns(path: Path, body: list[str], width: int) -> list[list[str]]:
    """Split the rows into `width` columns of strings, after checking every row has `width` fields.

    Neither layout quotes its fields, so a plain split is exact and, at 100k rows, several times
    faster than the csv module plus a transpose.
    """
    commas = width - 1
    if any(line.count(",") != commas for line in body):
        i = next(i for i, line in enumerate(body) if line.count(",") != commas)
        got = body[i].count(",") + 1
        if not body[i].strip():
            raise DataError(f"{path}:{_line(i)}: blank line before more rows")
        what = "missing column(s)" if got < width else "too many fields"
        raise DataError(f"{path}:{_line(i)}: {what}: {got} fields, expected {width} like the header")
    fields = ",".join(body).split(",")
    return [fields[c::width] for c in range(width)]


def _floats(path: Path, column: Sequence[str], name: str) -> FloatArray:
    try:
        return np.array(column, dtype=np.float64)
    except ValueError:
        pass
    for i, raw in enumerate(column):
        try:
            float(raw)
        except ValueError:
            raise DataError(f"{path}:{_line(i)}: bad number in {name}: {raw!r}") from None
    raise DataError(f"{path}: bad number in {name}")  # numpy refused what float() takes: not seen in practice


def _unix_seconds(path: Path, column: Sequence[str]) -> IntArray:
    """Integers, or floats that are whole numbers (`1483308000.0`)."""
    try:
        return np.array(column, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    as_float = _floats(path, column, "timestamp")
    whole = np.isfinite(as_float) & (np.abs(as_float) < _MAX_EXACT_FLOAT)
    whole[whole] = as_float[whole] == np.floor(as_float[whole])
    if not whole.all():
        i = int(np.flatnonzero(~whole)[0])
        raise DataError(f"{path}:{_line(i)}: bad timestamp {column[i]!r}: expected whole Unix seconds")
    return as_float.astype(np.int64)


def _dukascopy_seconds(path: Path, column: Sequence[str]) -> IntArray:
    """`DD.MM.YYYY HH:MM:SS.mmm` (UTC) to Unix seconds, decoded digit by digit in numpy."""
    n = len(column)
    lengths = np.fromiter(map(len, column), dtype=np.int64, count=n)
    if (lengths != _DUKASCOPY_LEN).any():
        _bad_time(path, column, int(np.flatnonzero(lengths != _DUKASCOPY_LEN)[0]))
    codes = np.array(column, dtype=f"U{_DUKASCOPY_LEN}").view(np.uint32).reshape(n, _DUKASCOPY_LEN)
    ok = np.ones(n, dtype=bool)
    for pos, sep in _SEPARATORS:
        ok &= codes[:, pos] == ord(sep)
    digits = codes.astype(np.int64) - ord("0")
    for pos in _DIGITS:
        ok &= (digits[:, pos] >= 0) & (digits[:, pos] <= 9)

    def number(start: int, width: int) -> IntArray:
        value = np.zeros(n, dtype=np.int64)
        for pos in range(start, start + width):
            value = value * 10 + digits[:, pos]
        return value

    day, month, year = number(0, 2), number(3, 2), number(6, 4)
    hour, minute, second, millis = number(11, 2), number(14, 2), number(17, 2), number(20, 3)
    ok &= (month >= 1) & (month <= 12) & (hour < 24) & (minute < 60) & (second < 60)
    ok &= millis == 0  # bars are whole seconds; a fraction would be silently lost
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0)
    first_day = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    next_first_day = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    ok &= (day >= 1) & (day <= next_first_day - first_day)
    if not ok.all():
        _bad_time(path, column, int(np.flatnonzero(~ok)[0]))
    days = first_day + day - 1
    seconds: IntArray = days * 86400 + hour * 3600 + minute * 60 + second
    return seconds


def _bad_time(path: Path, column: Sequence[str], i: int) -> NoReturn:
    raw = column[i]
    reason = f"expected {_DUKASCOPY_FORMAT} (UTC)"
    if len(raw) == _DUKASCOPY_LEN:
        try:
            datetime.strptime(raw, "%d.%m.%Y %H:%M:%S.%f").replace(tzinfo=UTC)
        except ValueError as exc:
            if "out of range" in str(exc):
                reason = f"{exc}; {reason}"
        else:
            if not raw.endswith(".000"):
                reason = "not a whole second"
    raise DataError(f"{path}:{_line(i)}: bad timestamp {raw!r}: {reason}")


def _check_prices(path: Path, open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray) -> None:
    found = first_bad_bar(open_, high, low, close)
    if found is not None:
        i, message = found
        raise DataError(f"{path}:{_line(i)}: {message}")


def first_bad_bar(open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray,
                  volume: FloatArray | None = None) -> tuple[int, str] | None:
    """The first row with a bad price (or volume) and what is wrong with it; None when every row is good.

    Prices must be finite and positive, the volume finite and not negative, high >= low, open and close inside
    [low, high]. Shared by the daemon's CSV reader and `data import` (formatbars.py), so both say it alike.
    """
    # Each check with what to say about row i; the first failing row of any check is reported.
    checks: list[tuple[npt.NDArray[np.bool_], Callable[[int], str]]] = []
    for name, values in zip(_PRICE_NAMES, (open_, high, low, close), strict=True):
        checks.append((~(np.isfinite(values) & (values > 0)), _value_message(f"{name} price", values, "positive")))
    if volume is not None:
        checks.append((~(np.isfinite(volume) & (volume >= 0)), _value_message("volume", volume, "negative")))
    checks.append((high < low, lambda i: f"high {float(high[i])!r} < low {float(low[i])!r}"))
    for name, values in (("open", open_), ("close", close)):
        checks.append(((values < low) | (values > high), _range_message(name, values, low, high)))
    bad = np.zeros(len(open_), dtype=bool)
    for mask, _ in checks:
        bad |= mask
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    return i, next(describe(i) for mask, describe in checks if mask[i])


def _value_message(name: str, values: FloatArray, rule: str) -> Callable[[int], str]:
    def describe(i: int) -> str:
        value = float(values[i])
        if not math.isfinite(value):
            return f"{name} {value!r} is not finite"
        return f"{name} {value!r} is {'not positive' if rule == 'positive' else 'negative'}"

    return describe


def _range_message(name: str, values: FloatArray, low: FloatArray, high: FloatArray) -> Callable[[int], str]:
    def describe(i: int) -> str:
        return f"{name} {float(values[i])!r} is outside [low {float(low[i])!r}, high {float(high[i])!r}]"

    return describe


def _check_increasing(path: Path, timestamps: IntArray) -> None:
    steps = np.diff(timestamps)
    if (steps > 0).all():
        return
    j = int(np.flatnonzero(steps <= 0)[0]) + 1
    previous, current = int(timestamps[j - 1]), int(timestamps[j])
    what = "duplicate timestamp" if current == previous else "timestamps out of order (unsorted)"
    raise DataError(
        f"{path}:{_line(j)}: {what}: {current} ({_iso(current)}) is not after line {_line(j - 1)}'s "
        f"{previous} ({_iso(previous)})"
    )


def _iso(ts: int) -> str:
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of range"
