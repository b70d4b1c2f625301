"""`swimmy strategies export`: TOML that `strategies import` reads back into the same rules, figures as comments."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from helpers import write_config

from swimmy.backtest.strategies import StrategySpec
from swimmy.cli.main import main
from swimmy.school.catalog import parse_import_file, row_for
from swimmy.store import Store, StrategyRow, TrialRow

SPECS = {  # label -> (rank, rules); every one on EURUSD H1, the universe write_config's school trades
    "sma": ("A", StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1")),
    "rsi": ("A", StrategySpec("rsi_reversion", {"period": 14, "lower": 30, "upper": 70}, "EURUSD", "H1", 40, 80.5)),
    "bollinger": ("A", StrategySpec("bollinger_breakout", {"period": 20, "k": 2.25}, "EURUSD", "H1", 0, 120)),
    "ema": ("B", StrategySpec("ema_cross", {"fast": 5, "slow": 50}, "EURUSD", "H1")),
    "donchian": ("graveyard", StrategySpec("donchian_breakout", {"period": 55}, "EURUSD", "H1", 25, 0)),
    "fresh": ("incubator", StrategySpec("sma_cross", {"fast": 3, "slow": 200}, "EURUSD", "H1")),
}


def rules(row: StrategyRow) -> tuple[object, ...]:
    return (row.name, row.rules_hash, row.family, {k: float(v) for k, v in row.params.items()}, row.symbol,
            row.timeframe, float(row.sl_pips), float(row.tp_pips))


@pytest.fixture
def school(tmp_path: Path) -> tuple[Path, dict[str, StrategyRow]]:
    """A config and its store holding strategies of several families and ranks, A ones with figures."""
    directory = tmp_path / "school"
    (directory / "var").mkdir(parents=True)
    config = write_config(directory)
    rows: dict[str, StrategyRow] = {}
    with Store.open(directory / "var" / "school.db") as store:
        for i, (label, (rank, spec)) in enumerate(SPECS.items()):
            base = row_for(spec, 1_700_000_000.0, generation=i, parent="sma_cross-EURUSD-H1-00000000" if i else None)
            figures = {"is_trades": 120 + i, "is_sharpe": 1.5 - i / 10, "is_dsr": 0.97, "is_psr": 0.99,
                       "is_profit_factor": 1.4, "is_bars": 6225, "oos_sharpe": 0.8, "oos_decision": "pass",
                       "wfv_decision": "validated"} if rank == "A" else {}
            rows[label] = dataclasses.replace(base, rank=rank, **figures)  # type: ignore[arg-type]
            assert store.add_strategy(rows[label])
        store.add_trials([TrialRow("EURUSD_H1", f"{n:016x}", "sma_cross", 0, 0.01, 0.0, 3.0, 6225, 1.0)
                          for n in range(7)])
    return config, rows


def test_rank_a_round_trips_through_a_file_into_a_fresh_store(
        tmp_path: Path, school: tuple[Path, dict[str, StrategyRow]], capsys: pytest.CaptureFixture[str]) -> None:
    """Only the A ones are written; imported elsewhere they have the same rules, hence the same names."""
    config, rows = school
    out = tmp_path / "exported.toml"
    assert main(["strategies", "export", "--config", str(config), "--rank", "A", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"exported: 3\npath: {out}\n"
    text = out.read_text()
    originals = {r.name: r for r in rows.values() if r.rank == "A"}
    assert set(tomllib.loads(text)) == set(originals), "one table per A strategy, named by it, and no other"
    assert [s.name() for s in parse_import_file(out)] == [r.name for r in rows.values() if r.rank == "A"]
    assert text.startswith("# Written by `swimmy strategies export` (swimmy ")
    assert ": 3 strategies of rank A from " in text.splitlines()[0]
    assert "# rank A, generation 1, parent sma_cross-EURUSD-H1-00000000\n" in text
    assert "# IS bars 6,225, trades 121, sharpe 1.40, dsr 0.970, psr 0.990, profit_factor 1.40, trials 7\n" in text
    assert "# OOS sharpe 0.80, pass\n# WFV validated\n" in text
    assert not list(tmp_path.glob(".exported.toml.*")), "the temp file of the atomic write is gone"

    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = write_config(fresh_dir)
    assert main(["strategies", "import", str(out), "--config", str(fresh)]) == 0
    assert "duplicates: []" in capsys.readouterr().out
    with Store.open_readonly(fresh_dir / "var" / "school.db") as store:
        imported = {r.name: r for r in store.list_strategies()}
    assert sorted(imported) == sorted(originals)
    for name, row in imported.items():
        assert rules(row) == rules(originals[name])
        assert row.rank == "incubator" and row.generation == 0 and row.is_sharpe is None  # import starts afresh


def test_export_to_stdout_without_a_rank_is_every_strategy(
        school: tuple[Path, dict[str, StrategyRow]], capsys: pytest.CaptureFixture[str]) -> None:
    config, rows = school
    assert main(["strategies", "export", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    doc = tomllib.loads(captured.out)
    assert set(doc) == {r.name for r in rows.values()}
    donchian = doc[rows["donchian"].name]
    assert donchian == {"family": "donchian_breakout", "symbol": "EURUSD", "timeframe": "H1", "sl_pips": 25.0,
                        "tp_pips": 0.0, "params": {"period": 55}}
    assert "# rank graveyard, generation 4" in captured.out and "# IS not backtested yet" in captured.out
    assert ": 6 strategies from " in captured.out.splitlines()[0]


def test_a_rank_nobody_holds_exports_only_the_header(
        school: tuple[Path, dict[str, StrategyRow]], capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = school
    assert main(["strategies", "export", "--config", str(config), "--rank", "S"]) == 0
    captured = capsys.readouterr()
    assert tomllib.loads(captured.out) == {}
    assert ": 0 strategies of rank S from " in captured.out
    assert "no strategies of rank S in " in captured.err and "nothing to export" in captured.err


def test_no_store_yet_exports_nothing_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Like `strategies list`: exit 0, a note on stderr, and no store is created by looking."""
    config = write_config(tmp_path)
    out = tmp_path / "out.toml"
    assert main(["strategies", "export", "--config", str(config), "--rank", "A", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "no strategy store at " in captured.err and "nothing to export" in captured.err
    assert captured.out == f"exported: 0\npath: {out}\n"
    assert tomllib.loads(out.read_text()) == {}
    assert not (tmp_path / "var" / "school.db").exists()


def test_an_unwritable_out_exits_1_naming_it(
        school: tuple[Path, dict[str, StrategyRow]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = school
    out = tmp_path / "no-such-dir" / "out.toml"
    assert main(["strategies", "export", "--config", str(config), "--out", str(out)]) == 1
    assert f"cannot write {out}" in capsys.readouterr().err
