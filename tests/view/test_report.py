"""`swimmy report NAME`: the figures, the curve's data, the holdout withheld until the OOS verdict."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import write_config

from swimmy.backtest.data import data_hash, load_bars, universe_dir
from swimmy.backtest.engine import Costs, simulate
from swimmy.backtest.strategies import StrategySpec
from swimmy.cli.main import main
from swimmy.config import Config, instrument_costs, load_config
from swimmy.school.catalog import row_for
from swimmy.school.universes import holdout_start
from swimmy.store import Store
from swimmy.view.report import build_report, equity_series, monthly_returns
from swimmy.view.reporthtml import render_report

SPEC = StrategySpec("ema_cross", {"fast": 12, "slow": 48}, "EURUSD", "H1", 40.0, 80.0)
NAME = SPEC.name()


@pytest.fixture
def school(tmp_path: Path) -> Path:
    """A config on the shipped EURUSD H1 sample and a store holding SPEC with its IS figures."""
    path = write_config(tmp_path)
    cfg = load_config(path)
    cfg.school.db_path.parent.mkdir(parents=True, exist_ok=True)
    with Store.open(cfg.school.db_path) as store:
        store.add_strategy(row_for(SPEC, 1_000.0))
        store.record_is_result(NAME, {"sharpe": 1.234, "trades": 57, "psr": 0.91, "profit_factor": 1.4}, "A", 1_001.0)
        store.set_is_dsr(NAME, 0.876, 1_002.0)
    return path


def page_data(page: str) -> dict[str, Any]:
    """The JSON the page embeds for its charts."""
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert found, "the page embeds no report data"
    return json.loads(found.group(1))


def reference(path: Path, end_ts: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The same backtest run directly: the bars' timestamps and per-bar returns."""
    cfg = load_config(path)
    bars = load_bars(universe_dir(cfg, "EURUSD"), "EURUSD", "H1")
    sim = simulate(SPEC, bars, end_ts=end_ts, costs=Costs(**instrument_costs(cfg, "EURUSD")))
    return bars.timestamps[sim.first_bar:sim.first_bar + len(sim.returns)], sim.returns


def test_report_holds_the_figures_and_the_curve_and_stops_before_the_holdout(school: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", NAME, "--config", str(school), "--out", str(out)]) == 0
    page = out.read_text()
    # The figures the store holds, as a trader reads them.
    assert NAME in page and "1.23" in page and "0.876" in page and ">57<" in page
    assert "not drawn until the OOS verdict" in page
    # Self-contained: uPlot and the data are inline, nothing is loaded from anywhere.
    assert "uPlot" in page and not re.search(r'<(script|link)[^>]+(src|href)=', page)
    cfg = load_config(school)
    bars = load_bars(universe_dir(cfg, "EURUSD"), "EURUSD", "H1")
    oos_start = holdout_start(bars.timestamps, cfg.oos.window_fraction, cfg.oos.holdout_min_days)
    assert oos_start is not None
    data = page_data(page)
    ts, returns = reference(school, oos_start)
    assert data["curve"]["t"][-1] == int(ts[-1]) < oos_start
    growth = np.cumprod(1 + returns)
    assert data["curve"]["equity"][-1] == pytest.approx((growth[-1] - 1) * 100, abs=1e-4)
    assert data["holdout"][0] >= oos_start and not data["holdout_shown"]
    assert not any(t["holdout"] for t in data["trades"]) and not any(m["holdout"] for m in data["monthly"])


def current_hash(cfg: Config) -> str:
    digest = data_hash(universe_dir(cfg, "EURUSD"), "EURUSD", "H1")
    assert digest is not None
    return digest


def test_after_the_oos_verdict_the_holdout_is_drawn(school: Path) -> None:
    cfg = load_config(school)
    with Store.open(cfg.school.db_path) as store:
        store.set_oos_verdict(NAME, sharpe=0.5, psr=0.7, trades=12, decision="fail", now=1_003.0)
        store.set_oos_data_hash(NAME, current_hash(cfg))  # as the school does when it counts the look
        report = build_report(cfg, store, NAME, now=0.0)
    ts, _ = reference(school, None)
    assert report.holdout_shown and report.holdout is not None
    assert report.curve["t"][-1] == int(ts[-1]) >= report.holdout[0]
    assert any(m["holdout"] for m in report.monthly)
    page = render_report(report)
    assert ">fail<" in page and "not drawn" not in page


def test_unknown_strategy_is_a_usage_error(school: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "no-such-strategy", "--config", str(school)]) == 2
    assert "unknown strategy 'no-such-strategy'" in capsys.readouterr().err


def test_report_to_stdout(school: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", NAME, "--config", str(school), "--out", "-"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!doctype html>") and page_data(out)["name"] == NAME


def test_thinning_keeps_the_deepest_drawdown() -> None:
    rng = np.random.default_rng(5)
    returns = rng.normal(0, 0.01, 50_000)
    ts = np.arange(len(returns), dtype=np.int64) * 3600
    curve = equity_series(ts, returns, max_points=500)
    growth = np.cumprod(1 + returns)
    deepest = float(np.min(growth / np.maximum.accumulate(np.maximum(growth, 1.0)) - 1)) * 100
    assert len(curve["t"]) == 500 and curve["t"][-1] == ts[-1]
    assert min(curve["drawdown"]) == pytest.approx(deepest, abs=1e-4)
    assert curve["equity"][-1] == pytest.approx((growth[-1] - 1) * 100, abs=1e-4)


def test_monthly_returns_compound_each_calendar_month() -> None:
    start = int(datetime(2020, 1, 30, tzinfo=UTC).timestamp())
    ts = np.array([start + day * 86_400 for day in range(5)], dtype=np.int64)  # Jan 30, 31, Feb 1, 2, 3
    returns = np.array([0.01, 0.02, -0.01, 0.0, 0.03])
    months = monthly_returns(ts, returns, oos_start=int(ts[3]))
    assert [(m["year"], m["month"]) for m in months] == [(2020, 1), (2020, 2)]
    assert months[0]["ret"] == pytest.approx((1.01 * 1.02 - 1) * 100, abs=1e-4)
    assert months[1]["ret"] == pytest.approx((0.99 * 1.0 * 1.03 - 1) * 100, abs=1e-4)
    assert [m["holdout"] for m in months] == [False, True]


@pytest.mark.parametrize("case", ["mirror", "other data", "error"])
def test_a_look_not_counted_on_this_data_keeps_the_holdout_hidden(school: Path, case: str) -> None:
    """A mirror rejection counts no look; a verdict on other data says nothing of this data's holdout."""
    cfg = load_config(school)
    with Store.open(cfg.school.db_path) as store:
        if case == "mirror":
            store.set_oos_verdict(NAME, sharpe=None, psr=None, trades=None, decision="mirror", now=1_003.0)
            store.set_oos_data_hash(NAME, current_hash(cfg))
        elif case == "other data":
            store.set_oos_verdict(NAME, sharpe=0.5, psr=0.7, trades=12, decision="pass", now=1_003.0)
            store.set_oos_data_hash(NAME, "0123456789abcdef")
        else:
            store.set_oos_verdict(NAME, sharpe=None, psr=None, trades=None, decision="error", now=1_003.0)
        report = build_report(cfg, store, NAME, now=0.0)
    assert report.holdout is not None and not report.holdout_shown
    assert report.curve["t"][-1] < report.holdout[0]


def test_a_verdict_from_before_the_hash_was_kept_shows_only_while_the_data_never_changed(school: Path) -> None:
    cfg = load_config(school)
    digest = current_hash(cfg)
    with Store.open(cfg.school.db_path) as store:
        store.set_oos_verdict(NAME, sharpe=0.5, psr=0.7, trades=12, decision="pass", now=1_003.0)
        store.record_holdout_split("EURUSD_H1", digest, 1_500_000_000, 0.25, 90, 1_000.0)
        assert build_report(cfg, store, NAME, now=0.0).holdout_shown
        store.record_holdout_split("EURUSD_H1", "0123456789abcdef", 1_400_000_000, 0.25, 90, 900.0)
        assert not build_report(cfg, store, NAME, now=0.0).holdout_shown


def test_hostile_text_in_a_walk_forward_summary_stays_text(school: Path) -> None:
    """The WFV summary is JSON a worker sent: its strings can end nothing, its odd figures break nothing."""
    from swimmy.store import WfvRow

    hostile = '</script><script>alert(1)</script><!--<script'
    summary = {"wf_sharpe": "NaN-ish", "wf_psr": None, "profitable_folds": 0.5,
               "folds": [{"index": hostile, "train_start_ts": "x", "test_start_ts": 1_500_000_000,
                          "test_end_ts": 1_500_086_400, "status": hostile, "oos_sharpe": 1.0}]}
    cfg = load_config(school)
    with Store.open(cfg.school.db_path) as store:
        store.add_wfv_run(WfvRow("w1", NAME, 1_000.0, "manual", 0.7, status="done", decision=hostile,
                                 summary_json=json.dumps(summary)))
        page = render_report(build_report(cfg, store, NAME, now=0.0))
    assert "<script>alert(1)" not in page and "<!--<script" not in page
    assert page.count("<script") == 3  # the data, uPlot, report.js: nothing else became a script
    assert page_data(page)["wfv"]["summary"]["folds"][0]["status"] == hostile  # the data is intact
    assert "NaN-ish" in page


async def test_the_daemon_makes_reports_in_a_subprocess_bounded_and_cached(school: Path) -> None:
    from swimmy.view.pages import Reports

    cfg = load_config(school)
    with Store.open_readonly(cfg.school.db_path) as store:
        slow = Reports(school, store.get_strategy, timeout_sec=0.05)
        assert await slow.make(NAME) == (500, f"500: the report of {NAME} took longer than 0.05 s\n")
        reports = Reports(school, store.get_strategy)
        assert (await reports.make("-rf"))[0] == 404  # never an option to the subprocess
        assert await reports.make("nope") == (404, "404: no strategy called 'nope'\n")
        status, page = await reports.make(NAME)
        assert status == 200 and page_data(page)["name"] == NAME
        assert await reports.make(NAME) == (200, page) and reports.made == 1  # the second one is the cached page
