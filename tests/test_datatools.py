"""`swimmy data check` and `swimmy data import` from the command line, on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import REPO, run_cli

from swimmy.backtest.canonical import canonical_path, write_canonical

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
