"""Text sources for the source readers (formats.py): the file to read, where each format keeps its fields,
and how pyarrow's CSV reader is asked to read them.

MetaTrader 4 and HistData files have fixed layouts; the others name their columns in a header, and a time
column's layout is guessed from its first value. A file is read in place unless it is UTF-16 or ends in
blank lines (then from memory).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from swimmy.backtest.formatarrow import _arrow, _pool
from swimmy.backtest.formatbars import _PRICE_ROLES
from swimmy.backtest.formattimes import _SHAPES, _UNIX_RE, _shape, _Times
from swimmy.errors import DataError


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
