"""The compiled MT4 reader (fastcsv.py): the same bars as the general reader to the bit, or it steps aside."""

from __future__ import annotations

import calendar
import random
from pathlib import Path

import numpy as np
import pytest

from swimmy.backtest import fastcsv, formats
from swimmy.backtest.formats import infer_step, read_source
from swimmy.errors import DataError


def random_rows(n: int, seed: int) -> list[str]:
    """Plain MT4 lines with the number shapes a broker writes and some it rarely does: 0..10 decimals,
    whole numbers, leading zeros, long mantissas (up to the 15 digits the fast path takes), 29 February."""
    rng = random.Random(seed)
    t = calendar.timegm((2016, 2, 28, 0, 0, 0))
    rows = []
    for _ in range(n):
        t += 60 * rng.choice((1, 1, 1, 5, 60, 1440))
        day = np.datetime64(t, "s").astype(str)
        decimals = rng.choice((0, 1, 3, 5, 5, 5, 7, 10))
        low = rng.uniform(0.5, 150.0)
        prices = sorted(round(low + rng.uniform(0, 0.01 * low), decimals) or 1.0 for _ in range(4))
        text = [f"{p:.{decimals}f}" for p in (prices[1], prices[3], prices[0], prices[2])]
        if rng.random() < 0.05:
            text[0] = "0" + text[0]  # a leading zero
        volume = rng.choice(("0", "7", "372", "12345", "0.5", "100000000000"))
        rows.append(f"{day[:10].replace('-', '.')},{day[11:16]},{','.join(text)},{volume}")
    return rows


def expected(rows: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """An independent reading: Python's float() (correctly rounded) and calendar.timegm."""
    seconds, values = [], []
    for row in rows:
        date, time, *numbers = row.split(",")
        y, mo, d = (int(x) for x in date.split("."))
        hh, mi = (int(x) for x in time.split(":"))
        seconds.append(calendar.timegm((y, mo, d, hh, mi, 0)))
        values.append([float(x) for x in numbers])
    return np.array(seconds, dtype=np.int64), np.array(values, dtype=np.float64).T


def parse(data: bytes, threads: int = 1) -> fastcsv.Columns | None:
    return fastcsv.parse_mt4(np.frombuffer(data, dtype=np.uint8), threads=threads)


def general(path: Path, monkeypatch: pytest.MonkeyPatch, tz: str) -> formats.Parsed:
    """The general (pyarrow) reader, with the fast path switched off."""
    with monkeypatch.context() as m:
        m.setattr(formats, "_read_mt4_fast", lambda *_: None)
        return read_source(path, format="mt4", tz=tz)


class TestValues:
    def test_bit_for_bit_with_python_float(self) -> None:
        """Every number equals Python's correctly rounded float() to the last bit; every time is timegm's."""
        rows = random_rows(20_000, seed=7)
        got = parse(("\n".join(rows) + "\n").encode())
        assert got is not None
        seconds, values = expected(rows)
        assert np.array_equal(got.seconds, seconds)
        for k, column in enumerate([*got.prices, got.volume]):
            assert np.array_equal(column.view(np.int64), values[k].view(np.int64)), k

    def test_same_bars_as_the_general_reader(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Through read_source, the fast path and pyarrow's reader give identical arrays and line numbers."""
        path = tmp_path / "EURUSD1.csv"
        path.write_text("\n".join(random_rows(5_000, seed=11)) + "\n")
        assert fastcsv.parse_mt4(np.fromfile(path, dtype=np.uint8)) is not None  # the fast path takes it
        fast = read_source(path, format="mt4", tz="Etc/GMT-2")  # UTC+2, no DST gaps in random times
        slow = general(path, monkeypatch, "Etc/GMT-2")
        for name in ("ts", "open", "high", "low", "close", "volume", "line"):
            assert np.array_equal(getattr(fast, name), getattr(slow, name)), name

    @pytest.mark.parametrize(
        "data",
        [
            b"\xef\xbb\xbf2017.01.02,00:00,1.1,1.2,1.0,1.1,5\n",  # a BOM
            b"2017.01.02,00:00,1.1,1.2,1.0,1.1,5\r\n2017.01.02,00:01,1.1,1.2,1.0,1.1,5\r\n",  # CRLF
            b"2017.01.02,00:00,1.1,1.2,1.0,1.1,5\n2017.01.02,00:01,1.1,1.2,1.0,1.1,5",  # no final newline
            b"2016.02.29,23:59,1.1,1.2,1.0,1.1,5\n",  # a leap day
        ],
    )
    def test_takes_the_plain_variants(self, data: bytes) -> None:
        got = parse(data)
        assert got is not None
        assert len(got.seconds) == data.count(b"\n") + (not data.endswith(b"\n"))
        assert got.prices[1][0] == 1.2


class TestStepsAside:
    @pytest.mark.parametrize(
        "line",
        [
            "2017.01.02,00:00,1.1e0,1.2,1.0,1.1,5",  # exponent
            "2017.01.02,00:00, 1.1,1.2,1.0,1.1,5",  # a space
            "2017.01.02,00:00,-1.1,1.2,1.0,1.1,5",  # a sign
            "2017.01.02,00:00,+1.1,1.2,1.0,1.1,5",
            "2017.01.02,00:00,1.,1.2,1.0,1.1,5",  # no decimals after the point
            "2017.01.02,00:00,.5,1.2,1.0,1.1,5",  # no digit before it
            "2017.01.02,00:00,1.1234567890123456,1.2,1.0,1.1,5",  # 17 digits: beyond the exact range
            "2017.02.30,00:00,1.1,1.2,1.0,1.1,5",  # 30 February
            "2017.02.29,00:00,1.1,1.2,1.0,1.1,5",  # not a leap year
            "1899.12.31,00:00,1.1,1.2,1.0,1.1,5",  # outside 1900..2199
            "2017.01.02,24:00,1.1,1.2,1.0,1.1,5",
            "2017.01.02,10:60,1.1,1.2,1.0,1.1,5",
            "2017.01.02,10:00:00,1.1,1.2,1.0,1.1,5",  # seconds
            "2017-01-02,10:00,1.1,1.2,1.0,1.1,5",
            "2017.01.02,10:00,1.1,1.2,1.0,1.1,5,9",  # an extra field
            "2017.01.02,10:00,1.1,1.2,1.0,1.1",  # a missing one
            "2017.01.02,10:00,1.1,1.2,1.0,1.1,",  # an empty one
            "",  # a blank line
            "2017.01.02;10:00;1.1;1.2;1.0;1.1;5",
        ],
    )
    def test_any_line_not_plain(self, line: str) -> None:
        """One odd line anywhere (here the second of three) and the whole file goes to the general reader."""
        ok = "2017.01.02,00:00,1.1,1.2,1.0,1.1,5"
        assert parse(f"{ok}\n{ok}\n".encode()) is not None
        assert parse(f"{ok}\n{line}\n{ok}\n".encode()) is None

    def test_trailing_blank_lines(self) -> None:
        assert parse(b"2017.01.02,00:00,1.1,1.2,1.0,1.1,5\n\n") is None

    def test_bad_rows_still_name_their_line(self, tmp_path: Path) -> None:
        """A file the fast path leaves alone still gets the general reader's file:line message."""
        rows = [f"2017.01.02,00:{m:02d},1.1,1.2,1.0,1.1,5" for m in range(50)]
        rows[30] = rows[30].replace("1.2", "1.2e0")
        rows[40] = rows[40].replace(",1.0,", ",1.3,")  # low above high: the fast path would check it, too
        path = tmp_path / "x.csv"
        path.write_text("\n".join(rows) + "\n")
        with pytest.raises(DataError) as err:
            read_source(path, format="mt4", tz="UTC")
        assert str(err.value) == f"{path}:41: high 1.2 < low 1.3"

    def test_a_value_error_found_on_the_fast_path(self, tmp_path: Path) -> None:
        """On a plain file the fast path reads, the checks are formats.py's: same message, same line."""
        rows = [f"2017.01.02,00:{m:02d},1.1,1.2,1.0,1.1,5" for m in range(50)]
        rows[40] = rows[40].replace(",1.0,", ",1.3,")
        path = tmp_path / "x.csv"
        path.write_text("\n".join(rows) + "\n")
        assert parse(path.read_bytes()) is not None
        with pytest.raises(DataError) as err:
            read_source(path, format="mt4", tz="UTC")
        assert str(err.value) == f"{path}:41: high 1.2 < low 1.3"


class TestTwoThreads:
    def test_halves_meet_exactly(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Split in the middle, the second thread's rows follow the first's with none lost or doubled."""
        monkeypatch.setattr(fastcsv, "_SPLIT_BYTES", 0)
        rows = random_rows(3_001, seed=3)
        data = ("\n".join(rows) + "\n").encode()
        one, two = parse(data, threads=1), parse(data, threads=2)
        assert one is not None and two is not None
        assert len(two.seconds) == 3_001
        assert np.array_equal(one.seconds, two.seconds)
        assert all(np.array_equal(a, b) for a, b in zip([*one.prices, one.volume], [*two.prices, two.volume],
                                                         strict=True))

    def test_an_odd_line_in_the_second_half(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(fastcsv, "_SPLIT_BYTES", 0)
        rows = random_rows(3_001, seed=5)
        rows[2_900] = rows[2_900].replace(",", ";", 1)
        assert parse(("\n".join(rows) + "\n").encode(), threads=2) is None


class TestStepCounts:
    def test_infer_step_agrees_with_numpy(self) -> None:
        """The one-pass histogram gives the most common positive step, ties to the smaller, longer steps
        (beyond a week) included, as the plain numpy computation does."""
        rng = np.random.default_rng(4)
        week = 7 * 86_400
        for _ in range(200):
            steps = rng.choice([-60, 0, 60, 300, 3600, week, week + 60, 2 * week], size=rng.integers(1, 40))
            ts = np.concatenate([[1_500_000_000], 1_500_000_000 + np.cumsum(steps)]).astype(np.int64)
            positive = np.diff(ts)[np.diff(ts) > 0]
            if positive.size == 0:
                continue
            values, counts = np.unique(positive, return_counts=True)
            assert infer_step(ts) == int(values[np.argmax(counts)])
