"""Progress of long offline work (`backtest NAME`, `backtest --rank`, `data import`): a rich bar on a terminal's
stderr, and not one byte more than before anywhere else."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, write_config
from rich.console import Console

from swimmy.backtest.data import data_hash, load_bars, universe_dir
from swimmy.backtest.strategies import StrategySpec
from swimmy.cli import datatools
from swimmy.cli.backtest import run_offline, run_offline_rank
from swimmy.cli.main import main
from swimmy.cli.progress import progress
from swimmy.config import load_config
from swimmy.school.catalog import row_for
from swimmy.school.universes import holdout_start
from swimmy.store import Store

FIXTURES = REPO / "tests" / "fixtures" / "data"
RANKED = {  # rank -> rules, on the shipped EURUSD H1 year
    "A": [StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1"),
          StrategySpec("rsi_reversion", {"period": 14, "lower": 30, "upper": 70}, "EURUSD", "H1", 40, 80),
          StrategySpec("donchian_breakout", {"period": 55}, "EURUSD", "H1")],
    "B": [StrategySpec("ema_cross", {"fast": 5, "slow": 50}, "EURUSD", "H1")],
    "graveyard": [StrategySpec("bollinger_breakout", {"period": 20, "k": 2.0}, "EURUSD", "H1")],
}


def terminal() -> tuple[Console, io.StringIO]:
    """A console that takes a StringIO for a terminal, as a test's stand-in for a real one."""
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=160, color_system=None), screen


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "var").mkdir()
    path = write_config(tmp_path)
    with Store.open(tmp_path / "var" / "school.db") as store:
        for rank, specs in RANKED.items():
            for spec in specs:
                row = row_for(spec, 1.0)
                assert store.add_strategy(row)
                store.set_rank(row.name, rank, 2.0)
    return path


@pytest.fixture
def is_bars(config: Path) -> int:
    """The bars before the holdout of the shipped EURUSD H1 year, as the school splits it."""
    cfg = load_config(config)
    bars = load_bars(universe_dir(cfg, "EURUSD"), "EURUSD", "H1")
    start = holdout_start(bars.timestamps, cfg.oos.window_fraction, cfg.oos.holdout_min_days)
    return int(np.searchsorted(bars.timestamps, start))


def names(rank: str) -> set[str]:
    return {spec.name() for spec in RANKED[rank]}


class TestBacktestRank:
    def test_one_line_per_strategy_of_the_rank_and_none_of_another(
            self, config: Path, is_bars: int, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["backtest", "--rank", "A", "--config", str(config)]) == 0
        captured = capsys.readouterr()
        lines = captured.out.splitlines()
        assert lines[0].split() == ["name", "family", "bars", "trades", "sharpe", "profit_factor", "win_rate",
                                    "max_drawdown", "psr", "pnl_pips"]
        rows = [line.split() for line in lines[2:-2]]
        assert {row[0] for row in rows} == names("A") and len(rows) == 3
        assert {row[1] for row in rows} == {"sma_cross", "rsi_reversion", "donchian_breakout"}
        # No OOS verdict yet: each stops where its universe's holdout starts (SPEC §5), the IS range's bars.
        assert all(row[2] == f"{is_bars:,}" and len(row) == 10 for row in rows)
        assert not any(name in captured.out for name in names("B") | names("graveyard"))
        assert lines[-2].startswith("(3 strategies of rank A from the first bar to the last bar, ")
        assert lines[-1] == "(3 without an OOS verdict stop at their universe's holdout; --to DATE looks past it)"
        assert captured.err == "", "stderr is no terminal: no bar, not even an empty line"

    def test_from_and_to_bound_every_backtest(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        argv = ["backtest", "--rank", "B", "--config", str(config), "--from", "2017-03-01", "--to", "2017-06-01"]
        assert main(argv) == 0
        row = capsys.readouterr().out.splitlines()[2].split()
        assert row[0] in names("B") and 1_400 < int(row[2].replace(",", "")) < 1_600  # ~3 months of H1 bars

    def test_a_forced_terminal_shows_the_bar_n_of_m_with_the_strategy_names(self, config: Path) -> None:
        console, screen = terminal()
        out = io.StringIO()
        assert run_offline_rank(load_config(config), "A", None, None, out=out, console=console) == 0
        drawn = screen.getvalue()
        assert "3/3" in drawn and "rank A" in drawn
        assert any(name in drawn for name in names("A"))
        assert len(out.getvalue().splitlines()) == 2 + 3 + 2, "the results stay on `out`, not on the bar's console"

    def test_no_store_yet_is_an_empty_table_and_a_note(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["backtest", "--rank", "S", "--config", str(write_config(tmp_path))]) == 0
        captured = capsys.readouterr()
        assert "(0 strategies of rank S" in captured.out and "no strategy store at" in captured.err


class TestHoldout:
    def test_a_verdict_or_an_explicit_to_looks_past_the_holdout(
            self, config: Path, is_bars: int, capsys: pytest.CaptureFixture[str]) -> None:
        name = RANKED["A"][0].name()
        assert main(["backtest", name, "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert f"bars: {is_bars:,} " in out and "stops at the holdout" in out
        assert main(["backtest", name, "--config", str(config), "--to", "2018-01-01"]) == 0
        out = capsys.readouterr().out
        assert "bars: 6,225 " in out and "holdout" not in out
        with Store.open(load_config(config).school.db_path) as store:
            store.set_oos_verdict(name, sharpe=0.1, psr=0.5, trades=9, decision="fail", now=3.0)
            store.set_oos_data_hash(name, data_hash(REPO / "data" / "eurusd-h1-2017", "EURUSD", "H1") or "")
        assert main(["backtest", name, "--config", str(config)]) == 0
        assert "bars: 6,225 " in capsys.readouterr().out


class TestBacktestName:
    def test_no_terminal_no_extra_stderr(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        name = RANKED["A"][0].name()
        assert main(["backtest", name, "--config", str(config)]) == 0
        captured = capsys.readouterr()
        assert captured.out.startswith(name) and "  sharpe" in captured.out
        assert captured.err == ""

    def test_a_forced_terminal_shows_the_phases(self, config: Path) -> None:
        console, screen = terminal()
        name = RANKED["A"][1].name()
        assert run_offline(load_config(config), name, None, None, out=io.StringIO(), console=console) == 0
        assert "backtesting " + name + " on 6,225 bars" in screen.getvalue()

    @pytest.mark.parametrize("argv", [[], ["sma_cross-EURUSD-H1-00000000", "--rank", "A"]])
    def test_neither_or_both_of_name_and_rank_exits_2(
            self, argv: list[str], config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["backtest", *argv, "--config", str(config)]) == 2
        captured = capsys.readouterr()
        assert "give a strategy NAME or --rank RANK (one of them)" in captured.err and captured.out == ""


class TestDataImport:
    def import_args(self, tmp_path: Path) -> dict[str, object]:
        path = tmp_path / "swimmy.toml"
        path.write_text(f'[school]\ndata_dir = "{tmp_path / "data"}"\nsymbols = ["EURUSD"]\ntimeframes = ["H1"]\n')
        return {"cfg": load_config(path), "source": FIXTURES / "DAT_ASCII_EURUSD_M1_201703.csv", "symbol": "EURUSD",
                "timeframe": "M1", "tz": None, "fmt": None, "resample_to": "H1", "out": io.StringIO()}

    def test_a_forced_terminal_shows_each_phase(self, tmp_path: Path) -> None:
        console, screen = terminal()
        args = self.import_args(tmp_path)
        assert datatools.run_import(console=console, **args) == 0  # type: ignore[arg-type]
        drawn = screen.getvalue()
        for phase in ("read DAT_ASCII_EURUSD_M1_201703.csv", "check ", "resample ", "to H1",
                      "write and hash EURUSD_H1.npy", "4/4"):
            assert phase in drawn, phase
        assert "universe: EURUSD_H1" in args["out"].getvalue()  # type: ignore[attr-defined]

    def test_no_terminal_no_extra_stderr(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "swimmy.toml"
        path.write_text(f'[school]\ndata_dir = "{tmp_path / "data"}"\nsymbols = ["EURUSD"]\ntimeframes = ["M1"]\n')
        assert main(["data", "import", str(FIXTURES / "EURUSD1.csv"), "--symbol", "EURUSD", "--timeframe", "M1",
                     "--config", str(path)]) == 0
        captured = capsys.readouterr()
        assert "universe: EURUSD_M1" in captured.out
        assert captured.err == ""


class TestHelper:
    def test_off_a_terminal_nothing_is_drawn_even_with_force_color(
            self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """FORCE_COLOR asks for colour, not for cursor moves in a log: the stream itself must be a terminal."""
        monkeypatch.setenv("FORCE_COLOR", "1")
        with progress("work", 2) as steps:
            steps.update("first")
            steps.advance("second")
            steps.echo("a result", io.StringIO())
        assert not steps.shown
        assert capsys.readouterr() == ("", "")

    def test_a_console_that_is_no_terminal_draws_nothing(self) -> None:
        screen = io.StringIO()
        with progress("work", 1, console=Console(file=screen, force_terminal=False)) as steps:
            steps.advance("done")
        assert not steps.shown and screen.getvalue() == ""


def test_data_check_shows_each_universe_on_a_terminal(config: Path) -> None:
    console, screen = terminal()
    out = io.StringIO()
    assert datatools.run_check(load_config(config), out, console=console) == 0
    assert "data check: EURUSD_H1" in screen.getvalue() and "1/1" in screen.getvalue()
    assert out.getvalue().startswith("EURUSD_H1  ") and out.getvalue().rstrip().endswith("ok")
