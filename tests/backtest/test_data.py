"""Market data CSVs: both layouts, file:line errors, the shipped sample, the per-process cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from swimmy.backtest.data import clear_cache, load_bars, read_csv
from swimmy.errors import DataError

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "eurusd-h1-2017" / "EURUSD_H1.csv"
UNIX = "timestamp,open,high,low,close,volume"
DUKA = "Time,Open,High,Low,Close,Volume"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def write(tmp_path: Path, *lines: str, name: str = "EURUSD_H1.csv", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


def unix_rows(n: int, start: int = 1483308000) -> list[str]:
    return [f"{start + 3600 * i},1.1000,1.1010,1.0990,1.1005,{100 + i}" for i in range(n)]


def error_of(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_csv(path)
    return str(info.value)


class TestLayouts:
    def test_unix_seconds_with_volume(self, tmp_path: Path) -> None:
        """`timestamp,open,high,low,close,volume` gives int64 seconds and float64 prices; volume is ignored."""
        path = write(tmp_path, UNIX, "1483308000,1.05,1.06,1.04,1.055,10", "1483311600,1.055,1.07,1.05,1.06,x")
        bars = read_csv(path)
        assert bars.timestamps.dtype == np.int64
        assert bars.timestamps.tolist() == [1483308000, 1483311600]
        assert bars.open.dtype == bars.high.dtype == bars.low.dtype == bars.close.dtype == np.float64
        assert bars.open.tolist() == [1.05, 1.055]
        assert bars.high.tolist() == [1.06, 1.07]
        assert bars.low.tolist() == [1.04, 1.05]
        assert bars.close.tolist() == [1.055, 1.06]
        assert bars.source == str(path)

    def test_unix_seconds_without_volume_and_float_seconds(self, tmp_path: Path) -> None:
        """Volume is optional in the Unix layout, and a timestamp may be written as a float with .0."""
        path = write(tmp_path, "timestamp,open,high,low,close", "1483308000.0,1,2,0.5,1.5", "1483311600,1,2,0.5,1.5")
        assert read_csv(path).timestamps.tolist() == [1483308000, 1483311600]

    def test_dukascopy_layout_crlf(self, tmp_path: Path) -> None:
        """`Time,Open,...` with DD.MM.YYYY HH:MM:SS.mmm (UTC) and CRLF line ends parses to Unix seconds."""
        path = write(
            tmp_path,
            DUKA,
            "01.01.2017 22:00:00.000,1.05236,1.05253,1.05221,1.05227,143539993.3",
            "29.02.2020 23:59:59.000,1.1,1.2,1.0,1.1,1",
            "31.12.2099 00:00:01.000,1.1,1.2,1.0,1.1,1",
            newline="\r\n",
        )
        bars = read_csv(path)
        assert bars.timestamps.tolist() == [1483308000, 1583020799, 4102358401]
        assert bars.close.tolist() == [1.05227, 1.1, 1.1]

    def test_trailing_blank_lines_are_fine(self, tmp_path: Path) -> None:
        """Blank lines at the end of a file are ignored."""
        path = write(tmp_path, UNIX, *unix_rows(3), "", "", "")
        assert len(read_csv(path).timestamps) == 3

    def test_utf8_bom_is_ignored(self, tmp_path: Path) -> None:
        """A UTF-8 byte order mark before the header (spreadsheet exports) does not hide the header."""
        path = tmp_path / "EURUSD_H1.csv"
        path.write_bytes(b"\xef\xbb\xbf" + "\n".join([UNIX, *unix_rows(2)]).encode() + b"\n")
        assert len(read_csv(path).timestamps) == 2

    def test_arrays_are_read_only(self, tmp_path: Path) -> None:
        """The arrays are shared through the cache, so nobody may write into them."""
        bars = read_csv(write(tmp_path, UNIX, *unix_rows(2)))
        for a in (bars.timestamps, bars.open, bars.high, bars.low, bars.close):
            with pytest.raises(ValueError, match="read-only"):
                a[0] = 0


class TestRowErrors:
    @pytest.mark.parametrize(
        ("rows", "line", "fragment"),
        [
            (["1483308000,1.1,1.2,1.0,1.1x,1"], 2, "bad number in close: '1.1x'"),
            ([*unix_rows(2), "1483318800,1.1,,1.0,1.1,1"], 4, "bad number in high: ''"),
            ([*unix_rows(1), "1483311600,1.1,1.2,1.0,1"], 3, "missing column(s): 5 fields, expected 6"),
            ([*unix_rows(1), "1483311600,1.1,1.2,1.0,1.1,1,9"], 3, "too many fields: 7 fields, expected 6"),
            ([*unix_rows(1), "", *unix_rows(1, start=1483400000)], 3, "blank line before more rows"),
            (["soon,1.1,1.2,1.0,1.1,1"], 2, "bad number in timestamp: 'soon'"),
            ([*unix_rows(2), "1483315200.5,1.1,1.2,1.0,1.1,1"], 4, "bad timestamp '1483315200.5': expected whole"),
            (["1483308000,0,1.2,0,1.1,1"], 2, "open price 0.0 is not positive"),
            (["1483308000,1.1,1.2,-1.0,1.1,1"], 2, "low price -1.0 is not positive"),
            (["1483308000,1.1,nan,1.0,1.1,1"], 2, "high price nan is not finite"),
            (["1483308000,1.1,1.2,1.0,inf,1"], 2, "close price inf is not finite"),
            ([*unix_rows(1), "1483311600,1.1,1.0,1.2,1.1,1"], 3, "high 1.0 < low 1.2"),
            ([*unix_rows(1), "1483311600,1.3,1.2,1.0,1.1,1"], 3, "open 1.3 is outside [low 1.0, high 1.2]"),
            ([*unix_rows(1), "1483311600,1.1,1.2,1.0,0.9,1"], 3, "close 0.9 is outside [low 1.0, high 1.2]"),
        ],
    )
    def test_bad_row_names_file_and_line(self, tmp_path: Path, rows: list[str], line: int, fragment: str) -> None:
        """A bad row is a DataError `<file>:<line>: <what>`, the header being line 1."""
        path = write(tmp_path, UNIX, *rows)
        message = error_of(path)
        assert message.startswith(f"{path}:{line}: "), message
        assert fragment in message

    def test_first_bad_line_wins(self, tmp_path: Path) -> None:
        """With several bad rows of different kinds the earliest line is reported."""
        rows = unix_rows(10)
        rows[6] = rows[6].replace("1.1010", "1.0000")  # high < low on line 8
        rows[3] = rows[3].replace("1.1005", "2.0")  # close above high on line 5
        message = error_of(write(tmp_path, UNIX, *rows))
        assert ":5: close 2.0 is outside" in message

    def test_unsorted_timestamps(self, tmp_path: Path) -> None:
        """Timestamps going backwards name the line and both timestamps."""
        rows = [*unix_rows(3), "1483311600,1.1,1.2,1.0,1.1,1"]
        path = write(tmp_path, UNIX, *rows)
        message = error_of(path)
        assert message == (
            f"{path}:5: timestamps out of order (unsorted): 1483311600 (2017-01-01T23:00:00Z) "
            "is not after line 4's 1483315200 (2017-01-02T00:00:00Z)"
        )

    def test_duplicate_timestamp(self, tmp_path: Path) -> None:
        """A repeated timestamp is named a duplicate, with the line and both timestamps."""
        rows = [*unix_rows(2), unix_rows(2)[1]]
        path = write(tmp_path, UNIX, *rows)
        message = error_of(path)
        assert message.startswith(f"{path}:4: duplicate timestamp: 1483311600 ")
        assert "line 3's 1483311600" in message

    @pytest.mark.parametrize(
        ("stamp", "fragment"),
        [
            ("01/01/2017 22:00:00.000", "expected DD.MM.YYYY HH:MM:SS.mmm (UTC)"),
            ("1.1.2017 22:00:00.000", "expected DD.MM.YYYY HH:MM:SS.mmm (UTC)"),
            ("2017-01-01 22:00:00.000", "expected DD.MM.YYYY"),
            ("01.13.2017 22:00:00.000", "expected DD.MM.YYYY"),
            ("29.02.2017 22:00:00.000", "day is out of range for month"),
            ("01.01.2017 24:00:00.000", "expected DD.MM.YYYY"),
            ("01.01.2017 22:00:00.500", "not a whole second"),
            ("", "expected DD.MM.YYYY"),
        ],
    )
    def test_bad_dukascopy_timestamp(self, tmp_path: Path, stamp: str, fragment: str) -> None:
        """A Time value that is not a real UTC DD.MM.YYYY HH:MM:SS.000 names its file and line."""
        good = "01.01.2017 21:00:00.000,1.1,1.2,1.0,1.1,1"
        path = write(tmp_path, DUKA, good, good.replace("21:00", "21:30"), f"{stamp},1.1,1.2,1.0,1.1,1")
        message = error_of(path)
        assert message.startswith(f"{path}:4: bad timestamp {stamp!r}: "), message
        assert fragment in message


class TestFileErrors:
    def test_missing_file(self, tmp_path: Path) -> None:
        """No CSV for a symbol and timeframe says which and where it looked."""
        with pytest.raises(DataError) as info:
            load_bars(tmp_path, "EURUSD", "H1")
        assert str(info.value) == f"no data for EURUSD H1: {tmp_path / 'EURUSD_H1.csv'} does not exist"

    def test_read_csv_missing_file(self, tmp_path: Path) -> None:
        """read_csv of a missing path is a DataError naming it."""
        assert error_of(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'} does not exist"

    @pytest.mark.parametrize(
        "header",
        [
            "date,open,high,low,close",
            "Timestamp,Open,High,Low,Close",
            "timestamp,open,high,low,close,volume,spread",
            "Time,Open,High,Low,Close",
            "time,open,high,low,close,volume",
            "timestamp, open, high, low, close",
        ],
    )
    def test_unknown_header(self, tmp_path: Path, header: str) -> None:
        """A header other than the two layouts (case-sensitive) names the file, line 1 and both accepted headers."""
        path = write(tmp_path, header, "1483308000,1.1,1.2,1.0,1.1")
        message = error_of(path)
        assert message.startswith(f"{path}:1: unknown header {header!r}")
        assert "'timestamp,open,high,low,close[,volume]'" in message
        assert "'Time,Open,High,Low,Close,Volume'" in message

    def test_empty_file(self, tmp_path: Path) -> None:
        """A zero-byte file is a DataError asking for a header."""
        path = tmp_path / "EURUSD_H1.csv"
        path.write_bytes(b"")
        assert error_of(path).startswith(f"{path}:1: empty file")

    def test_header_only(self, tmp_path: Path) -> None:
        """A header with no rows (blank lines do not count) is a DataError."""
        path = write(tmp_path, UNIX, "", "")
        assert error_of(path) == f"{path}: no bars: the file has a header and no rows"


class TestShippedSample:
    def test_sample_loads(self) -> None:
        """The shipped EURUSD H1 2017 sample has 6,225 strictly increasing bars from 2017-01-01T22:00Z."""
        bars = load_bars(SAMPLE.parent, "EURUSD", "H1")
        assert len(bars.timestamps) == 6225
        assert int(bars.timestamps[0]) == 1483308000
        assert bool((np.diff(bars.timestamps) > 0).all())
        assert len(bars.open) == len(bars.high) == len(bars.low) == len(bars.close) == 6225
        assert bool((bars.low <= bars.high).all())
        assert 1.0 < float(bars.close.mean()) < 1.3
        assert bars.source == str(SAMPLE)


class TestCache:
    def test_same_object_while_unchanged(self, tmp_path: Path) -> None:
        """A second load of an unchanged file returns the very same Bars."""
        write(tmp_path, UNIX, *unix_rows(3))
        first = load_bars(tmp_path, "EURUSD", "H1")
        assert load_bars(tmp_path, "EURUSD", "H1") is first

    def test_changed_file_is_read_again(self, tmp_path: Path) -> None:
        """A file whose size or mtime changed is parsed again."""
        path = write(tmp_path, UNIX, *unix_rows(3))
        first = load_bars(tmp_path, "EURUSD", "H1")
        write(tmp_path, UNIX, *unix_rows(4))
        second = load_bars(tmp_path, "EURUSD", "H1")
        assert second is not first
        assert len(second.timestamps) == 4
        # Same size, new mtime: the cache must not trust the size alone.
        path.write_bytes(path.read_bytes().replace(b"1.1005", b"1.1006"))
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        third = load_bars(tmp_path, "EURUSD", "H1")
        assert third is not second
        assert float(third.close[0]) == 1.1006

    def test_a_file_that_turns_bad_is_an_error_not_a_stale_hit(self, tmp_path: Path) -> None:
        """When a cached file changes into a bad one, load_bars reports the error."""
        write(tmp_path, UNIX, *unix_rows(3))
        load_bars(tmp_path, "EURUSD", "H1")
        path = write(tmp_path, UNIX, *unix_rows(3), "oops")
        with pytest.raises(DataError, match=f"{path}:5: "):
            load_bars(tmp_path, "EURUSD", "H1")

    def test_clear_cache(self, tmp_path: Path) -> None:
        """clear_cache forgets every file."""
        write(tmp_path, UNIX, *unix_rows(3))
        first = load_bars(tmp_path, "EURUSD", "H1")
        clear_cache()
        assert load_bars(tmp_path, "EURUSD", "H1") is not first

    def test_symbols_are_cached_apart(self, tmp_path: Path) -> None:
        """Each symbol and timeframe has its own entry."""
        write(tmp_path, UNIX, *unix_rows(3), name="EURUSD_H1.csv")
        write(tmp_path, UNIX, *unix_rows(5), name="USDJPY_H1.csv")
        assert len(load_bars(tmp_path, "EURUSD", "H1").timestamps) == 3
        assert len(load_bars(tmp_path, "USDJPY", "H1").timestamps) == 5


class TestVolume:
    @pytest.mark.parametrize("layout", ["unix", "dukascopy"])
    def test_100k_rows(self, tmp_path: Path, layout: str) -> None:
        """100,000 rows parse and validate, first to last (their speed is bench/data_bench.py's, not a test's)."""
        start = 1483308000
        if layout == "unix":
            lines = [UNIX, *unix_rows(100_000, start=start)]
        else:
            stamps = np.arange(start, start + 3600 * 100_000, 3600).astype("datetime64[s]").astype(str)
            lines = [DUKA]
            for s in stamps:
                day = f"{s[8:10]}.{s[5:7]}.{s[0:4]} {s[11:19]}.000"
                lines.append(f"{day},1.1000,1.1010,1.0990,1.1005,100.5")
        path = write(tmp_path, *lines)
        bars = read_csv(path)
        assert len(bars.timestamps) == 100_000
        assert int(bars.timestamps[0]) == start and int(bars.timestamps[-1]) == start + 3600 * 99_999
