"""Time zones for the source readers (formats.py): which zone `--tz` names, and wall-clock seconds to UTC.

The zone is an IANA name, `UTC` or a fixed offset like `+02:00`; zoneinfo is asked once per day of data,
not per row. A time the clocks jump over is an error; a repeated hour's second pass is told by time going
back.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from swimmy.errors import DataError

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


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


def _floor_div(values: IntArray, divisor: int) -> IntArray:
    """values // divisor for times in seconds, through float64: exact below 2**53, and far faster than int64 //."""
    quotient: IntArray = np.floor(values / divisor).astype(np.int64)
    return quotient


def _iso(ts: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ts)).strftime("%Y-%m-%dT%H:%M:%S")
