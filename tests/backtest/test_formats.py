"""Source formats for `swimmy data import`: layouts, UTC times across DST, file:line errors, resampling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swimmy.backtest.data import read_csv
from swimmy.backtest.formats import (
    FORMATS,
    Parsed,
    detect_format,
    infer_step,
    read_source,
    resample,
)
from swimmy.backtest.strategies import TIMEFRAME_SEC
from swimmy.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
BAD = FIXTURES / "bad"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "eurusd-h1-2017" / "EURUSD_H1.csv"

MT4 = FIXTURES / "EURUSD1.csv"
MT4_ATHENS = FIXTURES / "EURUSD15_athens_2017.csv"
MT4_NEW_YORK = FIXTURES / "EURUSD15_new_york_2017.csv"
MT5_H1 = FIXTURES / "EURUSD_H1_mt5.csv"
MT5_D1 = FIXTURES / "EURUSD_D1_mt5.csv"
DUKASCOPY = FIXTURES / "EURUSD_Candlestick_1_Hour_BID_06.01.2017-08.01.2017.csv"
DUKASCOPY_LOCAL = FIXTURES / "EURUSD_Candlestick_5_M_BID_26.03.2017_local.csv"
HISTDATA = FIXTURES / "DAT_ASCII_EURUSD_M1_201703.csv"
GENERIC_UNIX = FIXTURES / "generic_unix.csv"
GENERIC_SEMICOLON = FIXTURES / "generic_semicolon.csv"
GENERIC_ISO = FIXTURES / "generic_iso_offset.tsv"

JAN_2_2017 = 1483315200  # 2017-01-02T00:00:00Z
MINUTE, QUARTER, HOUR, DAY = 60, 900, 3600, 86400


def error_of(path: Path, *, format: str | None = None, tz: str | None = None) -> str:
    with pytest.raises(DataError) as info:
        read_source(path, format=format, tz=tz)
    return str(info.value)


def grid(start: int, step: int, count: int) -> list[int]:
    return [start + step * k for k in range(count)]


def mt4_rows(*times: str) -> bytes:
    """MT4 rows at the given `YYYY.MM.DD,HH:MM` broker times, one flat bar each."""
    return b"".join(f"{t},1.10000,1.10010,1.09990,1.10005,7\r\n".encode() for t in times)


class TestDetect:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            (MT4, "mt4"),
            (MT4_ATHENS, "mt4"),
            (MT5_H1, "mt5"),
            (MT5_D1, "mt5"),
            (DUKASCOPY, "dukascopy"),
            (DUKASCOPY_LOCAL, "dukascopy"),
            (HISTDATA, "histdata"),
            (GENERIC_UNIX, "generic"),
            (GENERIC_SEMICOLON, "generic"),
            (GENERIC_ISO, "generic"),
            (SAMPLE, "generic"),
            (BAD / "bad_number.csv", "mt4"),
        ],
        ids=lambda v: v.name if isinstance(v, Path) else v,
    )
    def test_each_fixture(self, path: Path, expected: str) -> None:
        """Each program's layout is recognised from its first lines (the MT5 one through its UTF-16 BOM)."""
        assert detect_format(path) == expected

    def test_parquet_by_extension_and_by_magic(self, tmp_path: Path) -> None:
        """Parquet is known by its extension, or by its `PAR1` magic under any other name."""
        pq.write_table(
            pa.table({"time": [JAN_2_2017], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}),
            tmp_path / "a.parquet",
        )
        (tmp_path / "a.parquet").rename(tmp_path / "bars.bin")
        assert detect_format(tmp_path / "bars.bin") == "parquet"
        assert detect_format(tmp_path / "missing.parquet") == "parquet"

    def test_unknown_lists_the_formats(self, tmp_path: Path) -> None:
        """An unrecognised file is a DataError that lists every format --format accepts."""
        path = tmp_path / "quotes.csv"
        path.write_text("symbol,bid,ask\nEURUSD,1.05,1.06\n")
        with pytest.raises(DataError) as info:
            detect_format(path)
        assert str(info.value).startswith(f"{path}:1: unknown format, first line 'symbol,bid,ask'")
        assert ", ".join(FORMATS) in str(info.value)

    def test_unknown_format_name(self) -> None:
        """read_source refuses a format name it does not know, listing the ones it does."""
        assert error_of(MT4, format="csv") == f"unknown format 'csv': expected one of {', '.join(FORMATS)}"


class TestFormats:
    def test_mt4(self) -> None:
        """MT4: no header, CRLF, `YYYY.MM.DD,HH:MM`, integer volume; a minute without ticks is simply absent."""
        p = read_source(MT4)
        assert p.format == "mt4"
        assert p.ts.dtype == np.int64 and p.line.dtype == np.int64 and p.open.dtype == np.float64
        # 2017-01-02T09:00Z onwards (UTC by default), 09:12 missing.
        assert p.ts.tolist() == [1483347600 + MINUTE * k for k in range(31) if k != 12]
        assert p.line.tolist() == list(range(1, 31))
        assert (p.open[0], p.high[0], p.low[0], p.close[0], p.volume[0]) == (1.0452, 1.04551, 1.04516, 1.04548, 40.0)
        assert (p.open[-1], p.high[-1], p.low[-1], p.close[-1], p.volume[-1]) == (
            1.04632,
            1.04635,
            1.04614,
            1.04618,
            100,
        )
        assert (p.ts[11], p.ts[12]) == (1483347600 + 11 * MINUTE, 1483347600 + 13 * MINUTE)
        assert all(a.flags.writeable for a in (p.ts, p.open, p.high, p.low, p.close, p.volume, p.line))

    def test_mt5_utf16_h1(self) -> None:
        """MT5 export: UTF-16 LE with BOM, tab-separated `<DATE> <TIME>`; volume is <TICKVOL>, not the zero <VOL>."""
        p = read_source(MT5_H1)
        assert p.format == "mt5"
        assert p.ts.tolist() == grid(JAN_2_2017, HOUR, 24)
        assert p.line.tolist() == list(range(2, 26))
        assert (p.open[0], p.high[0], p.low[0], p.close[0], p.volume[0]) == (1.0516, 1.05163, 1.05142, 1.05146, 400)
        assert (p.open[-1], p.close[-1], p.volume[-1]) == (1.05195, 1.05216, 1410)

    def test_mt5_d1_without_time_column(self) -> None:
        """MT5 writes D1 without <TIME>: each date is its UTC midnight (weekdays only here)."""
        p = read_source(MT5_D1, format="mt5")
        weekdays = [JAN_2_2017 + DAY * d for d in range(26) if d % 7 < 5]
        assert p.ts.tolist() == weekdays
        assert p.ts[-1] == 1485475200  # 2017-01-27T00:00Z
        assert (p.open[-1], p.high[-1], p.low[-1], p.close[-1], p.volume[-1]) == (
            1.0558,
            1.0585,
            1.0552,
            1.0579,
            143000,
        )

    def test_dukascopy_gmt_time(self) -> None:
        """Dukascopy: `Gmt time` DD.MM.YYYY HH:MM:SS.mmm in UTC; the weekend's flat zero-volume bars are kept."""
        p = read_source(DUKASCOPY)
        assert p.format == "dukascopy"
        assert p.ts.tolist() == grid(1483729200, HOUR, 56)  # 2017-01-06T19:00Z, hourly
        assert (p.open[0], p.high[0], p.low[0], p.close[0], p.volume[0]) == (1.053, 1.05338, 1.05296, 1.05335, 49380.0)
        assert p.volume[-1] == 183940.5
        saturday = p.line.tolist().index(24)  # 07.01.2017 17:00, a flat bar
        assert (p.open[saturday], p.high[saturday], p.low[saturday], p.volume[saturday]) == (
            1.05314,
            1.05314,
            1.05314,
            0,
        )

    @pytest.mark.parametrize("header", ["Gmt time", "UTC", "Time (UTC)", "Time"])
    def test_dukascopy_header_variants(self, tmp_path: Path, header: str) -> None:
        """The UTC header variants (and the shipped sample's `Time`) read the same way."""
        path = tmp_path / "d.csv"
        path.write_text(f"{header},Open,High,Low,Close,Volume\n02.01.2017 00:00:00.000,1.1,1.2,1.0,1.15,1.5\n")
        p = read_source(path, format="dukascopy")
        assert (p.ts.tolist(), p.volume.tolist()) == ([JAN_2_2017], [1.5])

    def test_dukascopy_local_time_carries_its_offset(self) -> None:
        """`Local time ... GMT+0200` values convert with their own offset, across a DST change (GMT+0300)."""
        p = read_source(DUKASCOPY_LOCAL)
        assert p.ts.tolist() == grid(1490486400, 5 * MINUTE, 24)  # 2017-03-26T00:00Z in 5-minute steps
        assert p.volume[0] == 410.0 and p.close[-1] == 1.08096
        assert read_source(DUKASCOPY_LOCAL, tz="America/New_York").ts.tolist() == p.ts.tolist()

    def test_histdata_fixed_est(self) -> None:
        """HistData: `YYYYMMDD HHMMSS;...`, EST all year: UTC-5 both before and after the US DST date."""
        p = read_source(HISTDATA)
        assert p.format == "histdata"
        friday = grid(1489181700, MINUTE, 25)  # 2017-03-10 16:35 EST = 21:35Z
        sunday = grid(1489356000, MINUTE, 15)  # 2017-03-12 17:00 EST = 22:00Z (New York is on EDT by then)
        assert p.ts.tolist() == friday + sunday
        assert (p.open[0], p.high[0], p.low[0], p.close[0], p.volume[0]) == (1.0695, 1.06953, 1.06904, 1.06908, 0)

    def test_histdata_tz_overrides_est(self) -> None:
        """--tz replaces HistData's fixed EST: New York time puts the Sunday rows an hour earlier (EDT)."""
        p = read_source(HISTDATA, tz="America/New_York")
        assert p.ts.tolist() == grid(1489181700, MINUTE, 25) + grid(1489352400, MINUTE, 15)

    def test_generic_unix_seconds(self) -> None:
        """Generic `timestamp,open,high,low,close,volume` with Unix seconds, LF."""
        p = read_source(GENERIC_UNIX)
        assert p.format == "generic"
        assert p.ts.tolist() == grid(JAN_2_2017, HOUR, 20)
        assert (p.open[-1], p.high[-1], p.low[-1], p.close[-1], p.volume[-1]) == (
            1.05317,
            1.05323,
            1.05283,
            1.05289,
            143,
        )

    def test_generic_bom_semicolons_short_names(self) -> None:
        """A BOM, `;`, separate Date and Time columns, O/H/L/C, `Tick Volume`, and an extra column ignored."""
        p = read_source(GENERIC_SEMICOLON)
        assert p.ts.tolist() == grid(1483344000, 5 * MINUTE, 20)  # 2017-01-02T08:00Z
        assert (p.open[0], p.high[0], p.low[0], p.close[0], p.volume[0]) == (1.046, 1.04624, 1.04596, 1.04621, 40)
        assert p.volume[-1] == 143

    def test_generic_tsv_iso_offset_no_volume(self) -> None:
        """TSV with ISO 8601 times that carry `+02:00`: UTC from the offset; no volume column gives 0."""
        p = read_source(GENERIC_ISO)
        assert p.ts.tolist() == grid(JAN_2_2017, 30 * MINUTE, 20)
        assert p.volume.tolist() == [0.0] * 20
        assert (p.open[0], p.close[-1]) == (1.047, 1.04756)

    def test_generic_reads_the_shipped_sample_like_the_shipped_reader(self) -> None:
        """The shipped sample (`Time,Open,...` DD.MM.YYYY, UTC) gives what swimmy.backtest.data reads."""
        p = read_source(SAMPLE)
        bars = read_csv(SAMPLE)
        assert p.format == "generic"
        assert np.array_equal(p.ts, bars.timestamps)
        assert np.array_equal(p.close, bars.close) and np.array_equal(p.low, bars.low)

    @pytest.mark.parametrize(
        ("header", "row", "expected"),
        [
            ("time,open,high,low,close", "1483315200.0,1,2,0.5,1.5", JAN_2_2017),
            ("Date,Time,Open,High,Low,Close", "2017.01.02,00:00:00,1,2,0.5,1.5", JAN_2_2017),
            ("datetime|open|high|low|close", "2017-01-02 01:02|1|2|0.5|1.5", JAN_2_2017 + 3720),
            ("DateTime,Open,High,Low,Close", "2017-01-02T01:02:03Z,1,2,0.5,1.5", JAN_2_2017 + 3723),
            ("Date,o,h,l,c", "20170102,1,2,0.5,1.5", JAN_2_2017),
            ('"Date","Open","High","Low","Close"', '"2017-01-02","1","2","0.5","1.5"', JAN_2_2017),
            ("local time,open,high,low,close,vol", "2017-01-02 00:00:00-05:00,1,2,0.5,1.5,3", JAN_2_2017 + 5 * HOUR),
        ],
    )
    def test_generic_time_layouts(self, tmp_path: Path, header: str, row: str, expected: int) -> None:
        """Generic time columns: Unix seconds, date + time, ISO 8601 (T, Z, offsets), YYYYMMDD, quoted fields."""
        path = tmp_path / "g.csv"
        path.write_text(f"{header}\n{row}\n")
        assert read_source(path).ts.tolist() == [expected]

    def test_trailing_blank_lines_are_fine(self, tmp_path: Path) -> None:
        """Blank lines at the end of a file are not rows."""
        path = tmp_path / "m.csv"
        path.write_bytes(MT4.read_bytes() + b"\r\n\r\n  \r\n")
        assert len(read_source(path).ts) == 30


class TestBadRows:
    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("bad_number.csv", "3: bad number in close: '1.0456x'"),
            ("bad_date.csv", "4: bad time '2017.02.30 09:03': expected YYYY.MM.DD and HH:MM"),
            ("bad_time_width.csv", "2: bad time '2017.01.02 9:01': expected YYYY.MM.DD and HH:MM"),
            ("missing_field.csv", "2: missing field(s): 6 fields, expected 7"),
            ("extra_field.csv", "5: too many fields: 8 fields, expected 7"),
            ("blank_line.csv", "3: blank line before more rows"),
            ("non_positive_price.csv", "3: low price 0.0 is not positive"),
            ("non_finite_price.csv", "4: high price inf is not finite"),
            ("high_below_low.csv", "2: high 1.0453 < low 1.04535"),
            ("open_outside.csv", "3: open 1.046 is outside [low 1.04539, high 1.04571]"),
            ("close_outside.csv", "4: close 1.045 is outside [low 1.04534, high 1.04568]"),
            ("negative_volume.csv", "5: volume -38.0 is negative"),
            (
                "duplicate_time.csv",
                "4: duplicate time 2017-01-02T09:02:00Z: line 3 has the same time (after conversion to UTC)",
            ),
            (
                "backwards_time.csv",
                "5: time goes backwards: 2017-01-02T09:01:00Z is before line 4's 2017-01-02T09:03:00Z "
                "(after conversion to UTC)",
            ),
        ],
    )
    def test_names_file_and_line(self, name: str, message: str) -> None:
        """Each kind of bad row is a DataError `<file>:<line>: <what>` at the row's own line."""
        path = BAD / name
        assert error_of(path, format="mt4") == f"{path}:{message}"

    def test_empty_file(self) -> None:
        """An empty file is a DataError, whatever the format."""
        path = BAD / "empty.csv"
        assert error_of(path, format="mt4") == f"{path}: empty file"
        with pytest.raises(DataError, match="empty file"):
            detect_format(path)

    def test_header_only(self) -> None:
        """A header with no rows is a DataError."""
        path = BAD / "header_only.csv"
        assert error_of(path) == f"{path}: no bars: the file has a header and no rows"

    def test_missing_price_column(self, tmp_path: Path) -> None:
        """A header without one of open/high/low/close names what is missing."""
        path = tmp_path / "g.csv"
        path.write_text("time,open,high,close\n1483315200,1,2,1.5\n")
        assert error_of(path, format="generic").startswith(f"{path}:1: no low column in the header")

    @pytest.mark.parametrize("bad", ["24:00", "12:60", "12-30", "1230"])
    def test_time_of_day_out_of_range(self, tmp_path: Path, bad: str) -> None:
        """An MT4 time that is not HH:MM of a real day is a bad time at its line."""
        path = tmp_path / "m.csv"
        path.write_bytes(mt4_rows("2017.01.02,10:00", f"2017.01.02,{bad}"))
        assert error_of(path, format="mt4") == f"{path}:2: bad time '2017.01.02 {bad}': expected YYYY.MM.DD and HH:MM"

    def test_first_row_time_of_an_unknown_layout(self, tmp_path: Path) -> None:
        """A time the generic reader cannot place is a DataError at line 2 naming the layouts it knows."""
        path = tmp_path / "g.csv"
        path.write_text("date,open,high,low,close\n01/02/2017,1,2,0.5,1.5\n")
        assert error_of(path).startswith(f"{path}:2: bad time '01/02/2017': expected Unix seconds, YYYY-MM-DD")

    def test_mt5_time_layout_is_checked(self, tmp_path: Path) -> None:
        """--format mt5 expects `YYYY.MM.DD`: another date layout is a DataError saying so."""
        path = tmp_path / "m.csv"
        path.write_text("<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\n2017-01-02\t00:00:00\t1\t2\t0.5\t1.5\n")
        assert error_of(path) == f"{path}:2: bad time '2017-01-02': expected YYYY.MM.DD"

    def test_milliseconds_are_not_seconds(self, tmp_path: Path) -> None:
        """A millisecond Unix time is a DataError, not a bar in the year 48,000."""
        path = tmp_path / "g.csv"
        path.write_text("timestamp,open,high,low,close\n1483315200000,1,2,0.5,1.5\n")
        assert error_of(path) == f"{path}:2: bad time 1483315200000.0 (milliseconds?): expected whole Unix seconds"

    def test_fraction_of_a_second(self, tmp_path: Path) -> None:
        """Dukascopy milliseconds must be .000: bars are whole seconds."""
        path = tmp_path / "d.csv"
        path.write_text("Gmt time,Open,High,Low,Close,Volume\n02.01.2017 00:00:00.500,1,2,0.5,1.5,1\n")
        assert error_of(path).startswith(f"{path}:2: bad time '02.01.2017 00:00:00.500': expected DD.MM.YYYY")

    def test_first_bad_row_of_a_large_file(self, tmp_path: Path) -> None:
        """Past the first read blocks the line is still exact, and the earliest of two bad rows is the one named."""
        rows = [f"{t},1.10000,1.10010,1.09990,1.10005,7" for t in _mt4_times(200_000)]
        rows[150_000 - 1] = rows[150_000 - 1].replace(",1.10005,", ",1.1OO05,")
        path = tmp_path / "big.csv"
        path.write_text("\n".join(rows) + "\n")
        assert error_of(path) == f"{path}:150000: bad number in close: '1.1OO05'"
        rows[120_000 - 1] = "2017.02.30" + rows[120_000 - 1][10:]
        path.write_text("\n".join(rows) + "\n")
        assert error_of(path).startswith(f"{path}:120000: bad time '2017.02.30 ")

    def test_bad_date_inside_a_run_of_equal_dates(self, tmp_path: Path) -> None:
        """Dates are decoded once per run of equal values; a bad one in the middle of a day still names its line."""
        rows = [f"{t},1.10000,1.10010,1.09990,1.10005,7" for t in _mt4_times(10_000)]
        rows[7_000] = "2017.13.01" + rows[7_000][10:]
        path = tmp_path / "big.csv"
        path.write_text("\n".join(rows) + "\n")
        assert error_of(path).startswith(f"{path}:7001: bad time '2017.13.01 ")


def _mt4_times(n: int) -> list[str]:
    """`YYYY.MM.DD,HH:MM` for n minutes from 2017-01-02 00:00."""
    minutes = np.datetime64("2017-01-02T00:00") + np.arange(n)
    return [f"{s[:10].replace('-', '.')},{s[11:16]}" for s in np.datetime_as_string(minutes).tolist()]


class TestTimeZones:
    def test_athens_both_dst_changes(self) -> None:
        """Europe/Athens: the skipped 03:00-03:59 in March and the doubled 03:00-03:59 in October map to UTC 1:1."""
        p = read_source(MT4_ATHENS, tz="Europe/Athens")
        spring = grid(1490482800, QUARTER, 16)  # 2017-03-25T23:00Z = 01:00 EET ... 05:45 EEST
        autumn = grid(1509231600, QUARTER, 16)  # 2017-10-28T23:00Z = 02:00 EEST ... 04:45 EET
        assert p.ts.tolist() == spring + autumn
        assert p.line.tolist() == list(range(1, 33))
        # Lines 21-24 are the first 03:00-03:45 (EEST, UTC+3), lines 25-28 the second (EET, UTC+2).
        assert p.ts[20] == 1509235200 and p.ts[24] == 1509238800  # 00:00Z and 01:00Z

    def test_new_york_both_dst_changes(self) -> None:
        """America/New_York: 02:00-02:59 skipped on 12 March, 01:00-01:59 doubled on 5 November."""
        p = read_source(MT4_NEW_YORK, tz="America/New_York")
        spring = grid(1489294800, QUARTER, 16)  # 2017-03-12T05:00Z = 00:00 EST ... 04:45 EDT
        autumn = grid(1509854400, QUARTER, 16)  # 2017-11-05T04:00Z = 00:00 EDT ... 02:45 EST
        assert p.ts.tolist() == spring + autumn

    def test_repeated_hour_of_h1_bars(self, tmp_path: Path) -> None:
        """H1 bars: the same local 03:00 twice is the EEST hour then the EET hour (the second pass goes back)."""
        path = tmp_path / "h1.csv"
        path.write_bytes(mt4_rows("2017.10.29,02:00", "2017.10.29,03:00", "2017.10.29,03:00", "2017.10.29,04:00"))
        assert read_source(path, tz="Europe/Athens").ts.tolist() == grid(1509231600, HOUR, 4)

    def test_repeated_hour_seen_once_is_the_earlier(self, tmp_path: Path) -> None:
        """A local time in the repeated hour that does not come back is read as the first (fold=0) one."""
        path = tmp_path / "h1.csv"
        path.write_bytes(mt4_rows("2017.10.29,02:00", "2017.10.29,03:30", "2017.10.29,05:00"))
        assert read_source(path, tz="Europe/Athens").ts.tolist() == [1509231600, 1509237000, 1509246000]

    def test_missing_hour_is_an_error(self) -> None:
        """A local time inside the spring-forward gap does not exist: DataError at its line."""
        path = BAD / "spring_gap_athens.csv"
        assert error_of(path, tz="Europe/Athens") == (
            f"{path}:3: time 2017-03-26T03:30:00 does not exist in Europe/Athens (the clocks jump forward over it)"
        )
        assert len(read_source(path, tz="+02:00").ts) == 4  # a fixed offset has no gap

    @pytest.mark.parametrize(("tz", "shift"), [("UTC", 0), ("+02:00", -7200), ("-05:00", 18000), ("+0530", -19800)])
    def test_fixed_offsets(self, tz: str, shift: int) -> None:
        """A fixed offset moves every row by the same amount, all year."""
        assert read_source(MT4, tz=tz).ts.tolist() == [t + shift for t in read_source(MT4).ts.tolist()]

    def test_unknown_zone(self) -> None:
        """An unknown zone name is a DataError with an example of a good one."""
        message = error_of(MT4, tz="Mars/Olympus_Mons")
        assert message.startswith("unknown time zone 'Mars/Olympus_Mons'")
        assert "Europe/Athens" in message and "+02:00" in message

    def test_tz_on_dukascopy_gmt(self) -> None:
        """--tz overrides Dukascopy's UTC default."""
        assert read_source(DUKASCOPY, tz="+01:00").ts[0] == 1483729200 - 3600


class TestParquet:
    def write(self, tmp_path: Path, time: pa.Array, name: str = "time", **extra: list[float]) -> Path:
        n = len(time)
        columns = {name: time, "Open": [1.1] * n, "High": [1.2] * n, "Low": [1.0] * n, "Close": [1.15] * n, **extra}
        path = tmp_path / "bars.parquet"
        pq.write_table(pa.table(columns), path)
        return path

    def test_tz_aware_timestamps_are_instants(self, tmp_path: Path) -> None:
        """An Arrow timestamp with a zone is converted to UTC; --tz does not move it."""
        times = pa.array([JAN_2_2017 * 10**9, (JAN_2_2017 + HOUR) * 10**9], pa.timestamp("ns", tz="Europe/Athens"))
        path = self.write(tmp_path, times, volume=[5.0, 6.0])
        p = read_source(path, tz="America/New_York")
        assert (p.format, p.ts.tolist(), p.volume.tolist()) == ("parquet", [JAN_2_2017, JAN_2_2017 + HOUR], [5, 6])
        assert p.line.tolist() == [1, 2]  # the row number + 1

    def test_naive_timestamps_take_tz(self, tmp_path: Path) -> None:
        """A naive Arrow timestamp is wall-clock time in --tz (UTC by default)."""
        path = self.write(tmp_path, pa.array([JAN_2_2017], pa.timestamp("s")), name="datetime")
        assert read_source(path).ts.tolist() == [JAN_2_2017]
        assert read_source(path, tz="Europe/Athens").ts.tolist() == [JAN_2_2017 - 2 * HOUR]

    def test_integer_seconds_and_no_volume(self, tmp_path: Path) -> None:
        """An integer time column is Unix seconds; without a volume column the volume is 0."""
        path = self.write(tmp_path, pa.array([JAN_2_2017, JAN_2_2017 + 60], pa.int64()), name="timestamp")
        p = read_source(path)
        assert (p.ts.tolist(), p.volume.tolist(), p.close.tolist()) == (
            [JAN_2_2017, JAN_2_2017 + 60],
            [0, 0],
            [1.15] * 2,
        )

    def test_dates_and_text(self, tmp_path: Path) -> None:
        """A date32 column is midnight; a text column is read like a generic CSV's."""
        path = self.write(tmp_path, pa.array([17168], pa.date32()), name="date")  # 2017-01-02
        assert read_source(path).ts.tolist() == [JAN_2_2017]
        path = self.write(tmp_path, pa.array(["2017-01-02 01:00:00"]))
        assert read_source(path, tz="+01:00").ts.tolist() == [JAN_2_2017]

    def test_pandas_index_column(self, tmp_path: Path) -> None:
        """An unnamed pandas DatetimeIndex written to Parquet (`__index_level_0__`) is the time."""
        path = self.write(tmp_path, pa.array([JAN_2_2017 * 1000], pa.timestamp("ms")), name="__index_level_0__")
        assert read_source(path).ts.tolist() == [JAN_2_2017]

    def test_bad_rows_name_the_row(self, tmp_path: Path) -> None:
        """A null, a bad price or a repeated time in Parquet names its line (row number + 1)."""
        path = self.write(tmp_path, pa.array([JAN_2_2017, None, JAN_2_2017 + 120], pa.int64()))
        assert error_of(path) == f"{path}:2: missing value in time"
        path = self.write(tmp_path, pa.array([JAN_2_2017, JAN_2_2017], pa.int64()))
        assert error_of(path).startswith(f"{path}:2: duplicate time 2017-01-02T00:00:00Z: line 1 has the same time")
        path = tmp_path / "negative.parquet"
        table = {"timestamp": [JAN_2_2017, JAN_2_2017 + 60], "o": [1.1, -1.1], "h": [1.2, 1.2], "l": [1.0, 1.0]}
        pq.write_table(pa.table({**table, "c": [1.15, 1.15]}), path)
        assert error_of(path) == f"{path}:2: open price -1.1 is not positive"

    def test_not_parquet(self, tmp_path: Path) -> None:
        """A file that is not Parquet, read as Parquet, is a DataError naming it."""
        path = tmp_path / "bars.parquet"
        path.write_text("time,open\n")
        assert error_of(path).startswith(f"{path}: not a readable Parquet file: ")

    def test_sub_second_timestamps(self, tmp_path: Path) -> None:
        """A timestamp with a fraction of a second is refused rather than truncated."""
        path = self.write(tmp_path, pa.array([JAN_2_2017 * 1000 + 1], pa.timestamp("ms", tz="UTC")))
        assert error_of(path).startswith(f"{path}:1: time ")


def parsed(ts: list[int], opens: list[float], highs: list[float], lows: list[float], closes: list[float]) -> Parsed:
    n = len(ts)
    return Parsed(
        ts=np.array(ts, dtype=np.int64),
        open=np.array(opens),
        high=np.array(highs),
        low=np.array(lows),
        close=np.array(closes),
        volume=np.arange(1, n + 1, dtype=np.float64),
        line=np.arange(2, n + 2, dtype=np.int64),
        format="mt4",
    )


class TestResample:
    def test_m1_to_m5_with_gaps(self) -> None:
        """M1 -> M5: first open, max high, min low, last close, summed volume, first line; empty buckets absent."""
        t = 1483347600  # 09:00Z
        m1 = parsed(
            [t, t + 60, t + 120, t + 240, t + 360, t + 420, t + 660],  # 09:00 01 02 04 | 06 07 | 11
            [10, 11, 12, 13, 20, 21, 30],
            [11, 15, 13, 14, 22, 25, 31],
            [9, 10, 8, 12, 19, 18, 29],
            [11, 12, 13, 14, 21, 22, 30.5],
        )
        m5 = resample(m1, TIMEFRAME_SEC["M5"])
        assert m5.ts.tolist() == [t, t + 300, t + 600]
        assert m5.open.tolist() == [10, 20, 30]
        assert m5.high.tolist() == [15, 25, 31]
        assert m5.low.tolist() == [8, 18, 29]
        assert m5.close.tolist() == [14, 22, 30.5]
        assert m5.volume.tolist() == [1 + 2 + 3 + 4, 5 + 6, 7]
        assert m5.line.tolist() == [2, 6, 8]
        assert m5.format == "mt4"

    def test_m1_to_h1_skips_an_empty_hour(self) -> None:
        """M1 -> H1 across a missing hour: bars only for hours with data, labelled by their start."""
        t = 1483347600  # 09:00Z
        m1 = parsed(
            [t + 3480, t + 3540, t + 3600, t + 5400, t + 10860],
            [1, 2, 3, 4, 5],
            [1.5, 2.5, 3.5, 4.5, 5.5],
            [0.5, 1.5, 2.5, 3.5, 4.5],
            [1.2, 2.2, 3.2, 4.2, 5.2],
        )
        h1 = resample(m1, TIMEFRAME_SEC["H1"])
        assert h1.ts.tolist() == [t, t + 3600, t + 3 * 3600]  # 09:00, 10:00, 12:00 (no 11:00)
        assert (h1.open.tolist(), h1.close.tolist()) == ([1, 3, 5], [2.2, 4.2, 5.2])
        assert (h1.high.tolist(), h1.low.tolist(), h1.volume.tolist()) == ([2.5, 4.5, 5.5], [0.5, 2.5, 4.5], [3, 7, 5])

    def test_h1_to_d1_in_utc_days(self) -> None:
        """H1 -> D1: days are UTC midnight to midnight."""
        m = JAN_2_2017
        h1 = parsed(
            [m + 22 * 3600, m + 23 * 3600, m + DAY, m + DAY + 3600, m + 3 * DAY + 36000],
            [1, 2, 3, 4, 5],
            [2, 3, 4, 5, 6],
            [0.5, 1, 2, 3, 4],
            [1.5, 2.5, 3.5, 4.5, 5.5],
        )
        d1 = resample(h1, TIMEFRAME_SEC["D1"])
        assert d1.ts.tolist() == [m, m + DAY, m + 3 * DAY]
        assert (d1.open.tolist(), d1.high.tolist(), d1.low.tolist(), d1.close.tolist()) == (
            [1, 3, 5],
            [3, 5, 6],
            [0.5, 2, 4],
            [2.5, 4.5, 5.5],
        )
        assert (d1.volume.tolist(), d1.line.tolist()) == ([3, 7, 5], [2, 4, 6])

    def test_fixture_m1_to_m5(self) -> None:
        """The MT4 fixture's 30 M1 bars (09:00-09:30, 09:12 missing) make seven M5 bars."""
        m5 = resample(read_source(MT4), 300)
        assert m5.ts.tolist() == grid(1483347600, 300, 7)
        assert m5.open[0] == 1.0452 and m5.close[0] == read_source(MT4).close[4]
        assert m5.volume.sum() == read_source(MT4).volume.sum()

    @pytest.mark.parametrize(
        ("ts", "step", "message"),
        [
            ([0, 300, 600], 60, "cannot resample 300 s bars to 60 s"),
            ([0, 900, 1800], 1200, "cannot resample 900 s bars to 1200 s"),
            ([1800, 5400, 9000], 14400, "does not start on a whole 3600 s step"),
            ([0, 60, 60], 300, "not strictly ascending"),
            ([0, 60], 0, "cannot resample to a step of 0 s"),
        ],
    )
    def test_refused(self, ts: list[int], step: int, message: str) -> None:
        """Finer or uneven targets, misaligned bars, unordered times and a zero step are DataErrors."""
        n = len(ts)
        with pytest.raises(DataError, match=message.replace("(", r"\(")):
            resample(parsed(ts, [1] * n, [1] * n, [1] * n, [1] * n), step)

    def test_infer_step(self) -> None:
        """The step is the most common positive difference: a weekend gap or a missing bar does not change it."""
        assert infer_step(np.array([0, 60, 120, 240, 300, 172800, 172860], dtype=np.int64)) == 60
        assert infer_step(read_source(MT4_ATHENS, tz="Europe/Athens").ts) == QUARTER
        assert infer_step(np.array([0, 60, 360], dtype=np.int64)) == 60  # a tie goes to the smaller step
        fortnight = 14 * DAY
        assert infer_step(np.array([0, fortnight, 2 * fortnight, 2 * fortnight + 60], dtype=np.int64)) == fortnight
        with pytest.raises(DataError, match="fewer than two"):
            infer_step(np.array([5], dtype=np.int64))

    def test_timeframes(self) -> None:
        """The timeframe names and their seconds."""
        assert TIMEFRAME_SEC == {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400, "D1": 86400}


class TestImport:
    def test_module_does_not_load_pyarrow(self) -> None:
        """Importing the module (as the daemon and workers do) leaves pyarrow unloaded."""
        code = "import sys, swimmy.backtest.formats; print('pyarrow' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"

    def test_reading_does_not_load_pandas(self, tmp_path: Path) -> None:
        """Reading text and Parquet never imports pandas (pyarrow's to_numpy() would: 0.3 s a run, where installed)."""
        parquet = tmp_path / "bars.parquet"
        pq.write_table(
            pa.table({"time": [JAN_2_2017], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]}), parquet
        )
        code = (
            "import sys; from pathlib import Path; from swimmy.backtest.formats import read_source\n"
            f"for p in {[str(MT4), str(MT5_H1), str(DUKASCOPY), str(GENERIC_UNIX), str(parquet)]!r}:\n"
            "    read_source(Path(p), tz='Europe/Athens')\n"
            "print('pandas' in sys.modules)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"
