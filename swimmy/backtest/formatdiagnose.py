"""The slow pass over a text source that finds its first bad row, once pyarrow's fast read has failed.

The columns are read again as raw bytes, and the earliest row with a bad time or number wins; a read that
fails even so is a row with the wrong number of fields or a blank line, found by Python's csv module.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from swimmy.backtest.formatarrow import _arrow, _raw
from swimmy.backtest.formatbars import _PRICE_ROLES
from swimmy.backtest.formatlayouts import _Layout, _read_table, _Source
from swimmy.backtest.formattimes import _first_bad_time
from swimmy.errors import DataError


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
