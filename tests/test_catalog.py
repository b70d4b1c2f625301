"""`strategies import` / `strategies list` / `backtest NAME` from the command line, on a real store."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import read_events, run_cli, wait_until, write_config

from swimmy.store import Store

GOOD = """
[sma]
family = "sma_cross"
params = { fast = 10, slow = 30 }
symbol = "EURUSD"
timeframe = "H1"

[rsi]
family = "rsi_reversion"
params = { period = 14, lower = 30, upper = 70 }
symbol = "EURUSD"
timeframe = "H1"
sl_pips = 40
tp_pips = 80

[same-rules-as-sma]
family = "sma_cross"
params = { slow = 30.0, fast = 10.0 }
symbol = "EURUSD"
timeframe = "H1"
sl_pips = 0
"""


def strategies_file(tmp_path: Path, body: str = GOOD) -> Path:
    path = tmp_path / "strategies.toml"
    path.write_text(body)
    return path


class TestImport:
    def test_import_adds_generation_0_strategies_and_never_duplicates_rules(self, tmp_path: Path) -> None:
        """Names follow <family>-<symbol>-<timeframe>-<hash8>; identical rules are skipped, not added twice."""
        config = write_config(tmp_path)
        result = run_cli("strategies", "import", str(strategies_file(tmp_path)), "--config", str(config))
        assert result.returncode == 0, result.stderr
        with Store.open_readonly(tmp_path / "var" / "school.db") as store:
            rows = store.list_strategies()
        assert len(rows) == 2
        assert {r.family for r in rows} == {"sma_cross", "rsi_reversion"}
        for r in rows:
            assert r.name.startswith(f"{r.family}-EURUSD-H1-") and len(r.name.rsplit("-", 1)[1]) == 8
            assert r.generation == 0 and r.rank == "incubator" and r.is_sharpe is None
        assert "duplicates: ['sma_cross-EURUSD-H1-" in result.stdout
        again = run_cli("strategies", "import", str(strategies_file(tmp_path)), "--config", str(config))
        assert again.returncode == 0
        assert "added: []" in again.stdout

    def test_a_symbol_or_timeframe_the_config_does_not_trade_is_refused_naming_it(self, tmp_path: Path) -> None:
        """Exit 2 and nothing imported: such a row could never be backtested and would only wait."""
        config = write_config(tmp_path)
        body = GOOD + '\n[gbp]\nfamily = "sma_cross"\nparams = { fast = 5, slow = 50 }\nsymbol = "GBPUSD"\n' \
                      'timeframe = "H1"\n'
        result = run_cli("strategies", "import", str(strategies_file(tmp_path, body)), "--config", str(config))
        assert result.returncode == 2
        assert "GBPUSD H1 is not traded by this config" in result.stderr and "sma_cross-GBPUSD-H1-" in result.stderr
        assert not (tmp_path / "var" / "school.db").exists()

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ('[x]\nfamily = "nope"\nparams = {}\nsymbol = "EURUSD"\ntimeframe = "H1"\n',
             "[x]: unknown strategy family"),
            ('[x]\nfamily = "sma_cross"\nparams = { fast = 30, slow = 10 }\nsymbol = "EURUSD"\ntimeframe = "H1"\n',
             "[x]:"),
            ("[x\n", "not valid TOML"),
            ("", "no strategy tables"),
        ],
    )
    def test_a_bad_file_exits_2_naming_the_table(self, tmp_path: Path, body: str, message: str) -> None:
        """A bad import file is refused whole with exit 2 and nothing is written."""
        config = write_config(tmp_path)
        result = run_cli("strategies", "import", str(strategies_file(tmp_path, body)), "--config", str(config))
        assert result.returncode == 2
        assert message in result.stderr
        assert not (tmp_path / "var" / "school.db").exists()

    def test_import_goes_through_the_daemon_when_it_runs(self, tmp_path: Path, daemon_factory: object) -> None:
        """With the daemon holding the database lock, the import is done by the daemon (the only writer)."""
        config = write_config(tmp_path)
        daemon = daemon_factory(config)  # type: ignore[operator]
        telemetry = tmp_path / "var" / "telemetry.jsonl"
        wait_until(lambda: any(e["event_type"] == "daemon.started" for e in read_events(telemetry)), 20, "start")
        result = run_cli("strategies", "import", str(strategies_file(tmp_path)), "--config", str(config))
        assert result.returncode == 0, result.stderr
        assert "added: ['" in result.stdout
        commands = [e for e in read_events(telemetry) if e["event_type"] == "control.command"]
        assert commands and commands[-1]["data"]["command"] == "strategies.import"
        assert daemon.stop() == 0
        with Store.open_readonly(tmp_path / "var" / "school.db") as store:
            assert len(store.list_strategies()) == 2


class TestListAndBacktest:
    def test_list_prints_the_population_as_a_table(self, tmp_path: Path) -> None:
        """`strategies list` prints a row per strategy and the count; --rank filters."""
        config = write_config(tmp_path)
        run_cli("strategies", "import", str(strategies_file(tmp_path)), "--config", str(config))
        result = run_cli("strategies", "list", "--config", str(config))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].split()[:3] == ["name", "rank", "gen"]
        assert result.stdout.splitlines()[0].split()[5] == "dsr"  # every IS result's DSR is shown (SPEC §5)
        assert "(2 strategies)" in result.stdout
        assert "incubator" in result.stdout
        assert "(0 strategies)" in run_cli("strategies", "list", "--config", str(config), "--rank", "A").stdout

    def test_list_shows_the_dsr_and_the_verdicts(self) -> None:
        from swimmy.school.catalog import render_table
        from swimmy.store import StrategyRow

        row = StrategyRow(name="sma_cross-EURUSD-H1-0000abcd", rules_hash="h", family="sma_cross",
                          params={"fast": 5, "slow": 50}, symbol="EURUSD", timeframe="H1", rank="S", is_sharpe=2.1,
                          is_dsr=0.987, oos_decision="pass", wfv_decision="validated")
        line = render_table([row]).splitlines()[2].split()
        assert line[5] == "0.99" and line[-2:] == ["pass", "validated"]

    def test_backtest_name_runs_offline_on_the_shipped_data(self, tmp_path: Path) -> None:
        """`swimmy backtest NAME` prints the metrics of a stored strategy without a daemon."""
        config = write_config(tmp_path)
        run_cli("strategies", "import", str(strategies_file(tmp_path)), "--config", str(config))
        with Store.open_readonly(tmp_path / "var" / "school.db") as store:
            name = next(r.name for r in store.list_strategies() if r.family == "sma_cross")
        result = run_cli("backtest", name, "--config", str(config), "--from", "2017-03-01", "--to", "2017-06-01")
        assert result.returncode == 0, result.stderr
        assert name in result.stdout
        assert "bars: 1,5" in result.stdout or "bars: 1,4" in result.stdout  # ~3 months of H1 bars
        for key in ("trades", "sharpe", "profit_factor", "max_drawdown", "psr"):
            assert f"  {key}" in result.stdout
        assert "2017-03-01" in result.stdout

    def test_backtest_of_an_unknown_strategy_exits_2(self, tmp_path: Path) -> None:
        """An unknown name is a usage error."""
        config = write_config(tmp_path)
        run_cli("strategies", "import", str(strategies_file(tmp_path)), "--config", str(config))
        result = run_cli("backtest", "sma_cross-EURUSD-H1-00000000", "--config", str(config))
        assert result.returncode == 2
        assert "unknown strategy" in result.stderr
