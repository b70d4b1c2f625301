"""`swimmy data check` and `swimmy data import` from the command line, on real files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from helpers import REPO, run_cli

from swimmy.backtest.canonical import canonical_path, read_sidecar, write_canonical
from swimmy.backtest.data import data_hash, load_bars

SAMPLE = REPO / "data" / "eurusd-h1-2017"


def config(tmp_path: Path, data_dir: Path, symbols: list[str], timeframes: list[str]) -> Path:
    path = tmp_path / "swimmy.toml"
    quoted = ", ".join(f'"{s}"' for s in symbols)
    frames = ", ".join(f'"{t}"' for t in timeframes)
    path.write_text(f'[school]\ndata_dir = "{data_dir}"\nsymbols = [{quoted}]\ntimeframes = [{frames}]\n')
    return path


class TestCheck:
    def test_the_shipped_sample_is_clean(self, tmp_path: Path) -> None:
        result = run_cli("data", "check", "--config", str(config(tmp_path, SAMPLE, ["EURUSD"], ["H1"])))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "EURUSD_H1" in result.stdout and "6,225 bars" in result.stdout
        assert "2017-01-01T22:00Z .. 2017-12-29T21:00Z  ok" in result.stdout

    def test_each_problem_is_reported_and_the_exit_code_is_1(self, tmp_path: Path) -> None:
        """A gap, M5 bars named H1, an unreadable CSV: each universe says what is wrong; the others are fine."""
        data = tmp_path / "data"
        data.mkdir()
        (data / "EURUSD_H1.csv").write_bytes((SAMPLE / "EURUSD_H1.csv").read_bytes())
        ts = 1_483_315_200 + 3600 * np.arange(240, dtype=np.int64)
        ts[120:] += 14 * 86_400  # two weeks missing
        close = np.full(240, 1.1)
        write_canonical(canonical_path(data, "GAPPY", "H1"), ts, close, close + 1e-4, close - 1e-4, close,
                        np.zeros(240), meta={})
        m5 = 1_483_315_200 + 300 * np.arange(100, dtype=np.int64)
        close = np.full(100, 1.1)
        write_canonical(canonical_path(data, "MISNAMED", "H1"), m5, close, close, close, close, np.zeros(100),
                        meta={})
        (data / "BROKEN_H1.csv").write_text("timestamp,open,high,low,close\n1483308000,1.1,1.0,1.2,1.1\n")
        result = run_cli("data", "check", "--config",
                         str(config(tmp_path, data, ["EURUSD", "GAPPY", "MISNAMED", "BROKEN"], ["H1"])))
        assert result.returncode == 1
        out = result.stdout
        assert "EURUSD_H1" in out and "6,225 bars" in out
        assert "problem (gap): 1 gaps longer than a weekend" in out and "longest is 337 h" in out
        assert "problem (spacing): bars are usually 5 min apart, but H1 is 1 h" in out
        assert f"BROKEN_H1  {data}/BROKEN_H1.csv  UNUSABLE" in out
        assert f"{data}/BROKEN_H1.csv:2: high 1.0 < low 1.2" in out
        assert "3 of 4 universes have problems" in out


FIXTURES = REPO / "tests" / "fixtures" / "data"


class TestImport:
    def test_an_mt4_export_in_broker_time_becomes_the_universe_the_daemon_reads(self, tmp_path: Path) -> None:
        """MT4 history (Athens time) -> the canonical file: UTC bars, its hash, and `data check` clean."""
        data = tmp_path / "data"
        cfg = config(tmp_path, data, ["EURUSD"], ["M15"])
        result = run_cli("data", "import", str(FIXTURES / "EURUSD15_athens_2017.csv"), "--symbol", "EURUSD",
                         "--timeframe", "M15", "--tz", "Europe/Athens", "--config", str(cfg))
        assert result.returncode == 0, result.stderr
        out = dict(line.split(": ", 1) for line in result.stdout.splitlines())
        assert out["universe"] == "EURUSD_M15" and out["format"] == "mt4"
        assert out["path"] == str(data / "EURUSD_M15.npy")
        bars = load_bars(data, "EURUSD", "M15")
        assert out["bars"] == f"{len(bars):,}" and out["data_hash"] == data_hash(data, "EURUSD", "M15")
        first_local = FIXTURES.joinpath("EURUSD15_athens_2017.csv").read_text().splitlines()[0].split(",")[:2]
        local = datetime.strptime(" ".join(first_local), "%Y.%m.%d %H:%M").replace(tzinfo=ZoneInfo("Europe/Athens"))
        assert int(bars.timestamps[0]) == int(local.timestamp()), "broker time is converted to UTC"
        side = read_sidecar(data / "EURUSD_M15.npy")
        assert side is not None and side["format"] == "mt4" and side["tz"] == "Europe/Athens"
        check = run_cli("data", "check", "--config", str(cfg))
        assert "EURUSD_M15" in check.stdout and "ohlc" not in check.stdout

    def test_resampling_writes_the_coarser_universe(self, tmp_path: Path) -> None:
        """--resample-to H1 from M1 HistData (EST without DST): bars labelled by their UTC hour."""
        data = tmp_path / "data"
        cfg = config(tmp_path, data, ["EURUSD"], ["H1"])
        result = run_cli("data", "import", str(FIXTURES / "DAT_ASCII_EURUSD_M1_201703.csv"), "--symbol", "EURUSD",
                         "--timeframe", "M1", "--resample-to", "H1", "--config", str(cfg))
        assert result.returncode == 0, result.stderr
        assert "universe: EURUSD_H1" in result.stdout and "format: histdata" in result.stdout
        bars = load_bars(data, "EURUSD", "H1")
        assert (bars.timestamps % 3600 == 0).all() and (np.diff(bars.timestamps) > 0).all()

    def test_a_bad_row_names_file_and_line_and_writes_nothing(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        cfg = config(tmp_path, data, ["EURUSD"], ["M1"])
        bad = FIXTURES / "bad" / "high_below_low.csv"
        result = run_cli("data", "import", str(bad), "--symbol", "EURUSD", "--timeframe", "M1", "--config", str(cfg))
        assert result.returncode == 1
        assert f"{bad}:" in result.stderr and "high" in result.stderr
        assert not (data / "EURUSD_M1.npy").exists()

    def test_a_timeframe_that_is_not_the_files_is_refused(self, tmp_path: Path) -> None:
        """An M15 file imported as H1 would skew every annualised figure: refused, naming both."""
        data = tmp_path / "data"
        cfg = config(tmp_path, data, ["EURUSD"], ["H1"])
        result = run_cli("data", "import", str(FIXTURES / "EURUSD15_athens_2017.csv"), "--symbol", "EURUSD",
                         "--timeframe", "H1", "--tz", "Europe/Athens", "--config", str(cfg))
        assert result.returncode == 1
        assert "usually 900 s apart, but --timeframe H1 is 3600 s" in result.stderr
        assert not data.exists() or not any(data.iterdir())
