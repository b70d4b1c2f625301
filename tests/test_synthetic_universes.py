"""Synthetic universes as the school uses them: `swimmy data generate`, `ensure_synthetic` at start-up, dev.toml.

Small bar counts throughout (the generators are tested in tests/test_synth.py); real files in tmp_path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from pathlib import Path

import orjson
import pytest

from swimmy.backtest import synth
from swimmy.backtest.data import data_hash, data_path, read_csv, universe_dir
from swimmy.backtest.engine import Costs, run_backtest
from swimmy.backtest.strategies import StrategySpec
from swimmy.config import Config, load_config
from swimmy.errors import ConfigError, UsageError
from tests.helpers import REPO, run_cli, write_config


def _output(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _config(tmp_path: Path, synthetic: dict[str, dict[str, object]], symbols: list[str],
            school: dict[str, object] | None = None) -> Config:
    sections: dict[str, dict[str, object]] = {
        "school": {"symbols": symbols, "synthetic_dir": "var/data", **(school or {})}
    }
    sections.update({f"synthetic.{name}": table for name, table in synthetic.items()})
    return load_config(write_config(tmp_path, sections))


# --- swimmy data generate --------------------------------------------------------------------------------------------


def test_data_generate_writes_the_universe_with_a_stable_hash(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"school": {"synthetic_dir": "var/data"}})
    args = ["data", "generate", "--kind", "planted_trend", "--symbol", "SYNTH_T", "--timeframe", "H4",
            "--config", str(config), "--bars", "1500", "--seed", "11"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    out = _output(first.stdout)
    path = tmp_path / "var" / "data" / "SYNTH_T_H4.csv"
    assert Path(out["path"]) == path
    assert out["bars"] == "1500" and out["seed"] == "11" and out["kind"] == "planted_trend"
    assert len(read_csv(path)) == 1500
    assert out["data_hash"] == _sha(path) == data_hash(path.parent, "SYNTH_T", "H4")
    assert synth.is_synthetic(path)
    # The same seed again (overwriting its own file) gives the same bytes; another seed does not.
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert _output(again.stdout)["data_hash"] == out["data_hash"]
    other = run_cli(*args[:-1], "12")
    assert other.returncode == 0, other.stderr
    assert _output(other.stdout)["data_hash"] != out["data_hash"]
    # Without school.synthetic_dir it goes into school.data_dir.
    plain = write_config(tmp_path, {"school": {"data_dir": "mydata"}}, name="plain.toml")
    done = run_cli("data", "generate", "--kind", "random_walk", "--symbol", "SYNTH_R", "--timeframe", "D1",
                   "--config", str(plain), "--bars", "300", "--noise", "garch")
    assert done.returncode == 0, done.stderr
    assert Path(_output(done.stdout)["path"]) == tmp_path / "mydata" / "SYNTH_R_D1.csv"
    assert len(read_csv(tmp_path / "mydata" / "SYNTH_R_D1.csv")) == 300


def test_data_generate_refuses_bad_arguments_and_real_files(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"school": {"data_dir": "data"}})
    base = ["data", "generate", "--config", str(config), "--bars", "200"]
    cases = {
        "timeframe": ["--kind", "random_walk", "--symbol", "SYNTH_X", "--timeframe", "H2"],
        "symbol": ["--kind", "random_walk", "--symbol", "../evil", "--timeframe", "H1"],
        "kind": ["--kind", "sine", "--symbol", "SYNTH_X", "--timeframe", "H1"],
        "bars": ["--kind", "random_walk", "--symbol", "SYNTH_X", "--timeframe", "H1", "--bars", "0"],
    }
    for what, extra in cases.items():
        done = run_cli(*base, *extra)
        assert done.returncode == 2, (what, done.stdout, done.stderr)
        assert what in done.stderr, (what, done.stderr)
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
    # A file that swimmy did not generate is never overwritten, and the message names it.
    real = tmp_path / "data" / "EURUSD_H1.csv"
    real.parent.mkdir(exist_ok=True)
    real.write_text("timestamp,open,high,low,close\n1,1.1,1.2,1.0,1.1\n")
    done = run_cli(*base, "--kind", "random_walk", "--symbol", "EURUSD", "--timeframe", "H1")
    assert done.returncode == 2
    assert str(real) in done.stderr and "refusing to overwrite" in done.stderr
    assert real.read_text() == "timestamp,open,high,low,close\n1,1.1,1.2,1.0,1.1\n"
    assert sorted(p.name for p in real.parent.iterdir()) == ["EURUSD_H1.csv"]


def test_generate_never_overwrites_a_file_it_did_not_write(tmp_path: Path) -> None:
    path = data_path(tmp_path, "SYNTH_X", "H1")
    path.write_text("mine\n")
    with pytest.raises(UsageError, match="refusing to overwrite"):
        synth.generate("random_walk", "SYNTH_X", "H1", 100, 0, data_dir=tmp_path)
    assert path.read_text() == "mine\n"
    path.unlink()
    synth.generate("random_walk", "SYNTH_X", "H1", 100, 0, data_dir=tmp_path)
    synth.generate("random_walk", "SYNTH_X", "H1", 120, 0, data_dir=tmp_path)  # its own file: replaced
    assert len(read_csv(path)) == 120
    assert orjson.loads(synth.marker_path(path).read_bytes())["bars"] == 120
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- ensure_synthetic ------------------------------------------------------------------------------------------------


def test_ensure_synthetic_generates_only_what_is_traded_and_missing(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        {
            "SYNTH_RW": {"kind": "random_walk", "seed": 5, "bars": 400},
            "SYNTH_TREND": {"kind": "planted_trend", "seed": 6, "bars": 500, "noise": "garch"},
            "SYNTH_IDLE": {"kind": "random_walk", "seed": 7, "bars": 400},  # not in school.symbols
        },
        ["EURUSD", "SYNTH_RW", "SYNTH_TREND"],
    )
    directory = tmp_path / "var" / "data"
    assert universe_dir(cfg, "SYNTH_RW") == directory
    rw, trend = data_path(directory, "SYNTH_RW", "H1"), data_path(directory, "SYNTH_TREND", "H1")
    synth.generate("random_walk", "SYNTH_RW", "H1", 400, 5, data_dir=directory)  # already there
    before = (rw.stat().st_mtime_ns, _sha(rw))
    assert synth.ensure_synthetic(cfg) == [trend]
    assert (rw.stat().st_mtime_ns, _sha(rw)) == before
    assert len(read_csv(trend)) == 500
    expected = synth.to_bars(synth.planted_trend(500, 6, kind="garch"))
    assert read_csv(trend).close.tolist() == expected.close.tolist()
    assert not data_path(directory, "SYNTH_IDLE", "H1").exists()
    # Idempotent: nothing to do the second time, nothing touched.
    stamps = {p: p.stat().st_mtime_ns for p in directory.iterdir()}
    assert synth.ensure_synthetic(cfg) == []
    assert {p: p.stat().st_mtime_ns for p in directory.iterdir()} == stamps


def test_ensure_synthetic_is_the_same_bytes_everywhere_and_follows_the_config(tmp_path: Path) -> None:
    tables = {"SYNTH_TREND": {"kind": "planted_trend", "seed": 3, "bars": 300}}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = _config(tmp_path / "a", tables, ["SYNTH_TREND"])
    two = _config(tmp_path / "b", tables, ["SYNTH_TREND"])
    [a] = synth.ensure_synthetic(one)
    [b] = synth.ensure_synthetic(two)
    assert a != b and a.read_bytes() == b.read_bytes()  # two hosts, one data_hash
    # The config's seed changes: the stale file is regenerated, not kept.
    changed = _config(tmp_path / "a", {"SYNTH_TREND": {**tables["SYNTH_TREND"], "seed": 4}}, ["SYNTH_TREND"])
    assert synth.ensure_synthetic(changed) == [a]
    assert a.read_bytes() != b.read_bytes()
    assert orjson.loads(synth.marker_path(a).read_bytes())["seed"] == 4
    # A file under a synthetic name that swimmy did not write is left alone.
    synth.marker_path(b).unlink()
    b.write_text("hand made\n")
    assert synth.ensure_synthetic(changed) == []
    assert synth.ensure_synthetic(two) == []
    assert b.read_text() == "hand made\n"


def test_ensure_synthetic_without_a_synthetic_dir_uses_the_data_dir(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"school": {"data_dir": "d", "symbols": ["SYNTH_RW"]},
                                   "synthetic.SYNTH_RW": {"bars": 200}})
    cfg = load_config(path)
    assert synth.ensure_synthetic(cfg) == [tmp_path / "d" / "SYNTH_RW_H1.csv"]


def test_ensure_synthetic_names_the_file_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the directory should be\n")
    cfg = _config(tmp_path, {"SYNTH_RW": {"bars": 200}}, ["SYNTH_RW"], {"synthetic_dir": "blocker/data"})
    with pytest.raises(ConfigError) as caught:
        synth.ensure_synthetic(cfg)
    assert str(tmp_path / "blocker" / "data" / "SYNTH_RW_H1.csv") in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("command", ["run", "worker"])
def test_run_and_worker_exit_2_when_the_synthetic_dir_is_unwritable(tmp_path: Path, command: str) -> None:
    (tmp_path / "blocker").write_text("x\n")
    config = write_config(tmp_path, {"school": {"symbols": ["SYNTH_RW"], "synthetic_dir": "blocker/data"},
                                     "synthetic.SYNTH_RW": {"bars": 200}})
    extra = ["--exit-after", "1"] if command == "run" else []
    done = run_cli(command, "--config", str(config), *extra, timeout=20)
    assert done.returncode == 2, done.stderr
    assert str(tmp_path / "blocker" / "data" / "SYNTH_RW_H1.csv") in done.stderr


# --- the shipped dev.toml --------------------------------------------------------------------------------------------


def _dev() -> Config:
    return load_config(REPO / "config" / "dev.toml")


def test_dev_config_names_two_synthetic_universes_under_var() -> None:
    cfg = _dev()
    assert set(cfg.synthetic) == {"SYNTH_RW", "SYNTH_TREND"}
    assert cfg.synthetic["SYNTH_RW"].kind == "random_walk"
    assert cfg.synthetic["SYNTH_TREND"].kind == "planted_trend"
    assert cfg.synthetic["SYNTH_RW"].seed != cfg.synthetic["SYNTH_TREND"].seed  # independent noise
    assert all(u.bars == 30_000 and u.noise == "gaussian" for u in cfg.synthetic.values())
    assert {"EURUSD", "SYNTH_RW", "SYNTH_TREND"} <= set(cfg.school.symbols)
    assert cfg.school.synthetic_dir == REPO / "var" / "data"  # under var/, never in the tracked sample
    assert universe_dir(cfg, "SYNTH_TREND") == REPO / "var" / "data"
    assert universe_dir(cfg, "EURUSD") == cfg.school.data_dir == REPO / "data" / "eurusd-h1-2017"


def test_dev_seeds_are_typical_draws() -> None:
    """What the comment in dev.toml says: each seed's best slow sma_cross Sharpe is near its population mean
    (planted trend 3.00, random walk 0.34, over seeds 0-99; bench/synth_calibration.py)."""
    cfg = _dev()
    costs = Costs(spread_pips=0.8, slippage_pips=0.2, pip=0.0001)
    grid = [{"fast": f, "slow": s} for f, s in itertools.product((5, 10, 20, 30), (50, 100, 150, 200))]

    def best(series: synth.SynthSeries) -> float:
        bars = synth.to_bars(series)
        values = [run_backtest(StrategySpec("sma_cross", p, "SYNTH", "H1"), bars, costs=costs).metrics["sharpe"]
                  for p in grid]
        return max(-math.inf if v is None else float(v) for v in values)

    trend, rw = cfg.synthetic["SYNTH_TREND"], cfg.synthetic["SYNTH_RW"]
    assert best(synth.planted_trend(trend.bars, trend.seed)) == pytest.approx(3.00, abs=0.05)
    assert best(synth.random_walk(rw.bars, rw.seed)) == pytest.approx(0.34, abs=0.05)


def test_dev_config_universes_generate_and_load(tmp_path: Path) -> None:
    cfg = _dev()
    cfg = dataclasses.replace(cfg, school=dataclasses.replace(cfg.school, synthetic_dir=tmp_path / "var" / "data"))
    written = synth.ensure_synthetic(cfg)
    assert sorted(p.name for p in written) == ["SYNTH_RW_H1.csv", "SYNTH_TREND_H1.csv"]
    for path in written:
        bars = read_csv(path)
        assert len(bars) == 30_000
    assert synth.ensure_synthetic(cfg) == []
