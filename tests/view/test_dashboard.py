"""The dashboard's data (/api/dashboard): population over time, milestones, the best strategies, bounded."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import orjson
from test_metrics_http import FULL

from swimmy.store import StrategyRow
from swimmy.testing import FakeClock
from swimmy.view import dashboard as dash
from swimmy.view.dashboard import Dashboard

BEST = [StrategyRow(name="ema-1", rules_hash="h", family="ema_cross", params={"fast": 5}, symbol="EURUSD",
                    timeframe="H1", rank="S", is_sharpe=1.5, is_dsr=0.97, is_trades=80, oos_decision="pass",
                    oos_sharpe=0.9, wfv_decision="validated")]


def make(clock: FakeClock, figures: list, reasons: list[str] | None = None) -> Dashboard:  # type: ignore[type-arg]
    return Dashboard(clock, figures=lambda: figures[0], reasons=lambda: reasons or [], best=lambda n: BEST[:n],
                     sample_sec=30.0)


def test_state_tells_health_population_milestones_and_the_best() -> None:
    clock = FakeClock()
    figures = [FULL]
    board = make(clock, figures, ["no backtest worker connected"])
    board.on_event("oos.result", "info", "r1", {"strategy": "ema-1", "decision": "pass", "oos_sharpe": 0.9})
    board.on_event("heartbeat.sent", "info", "h", {})  # not a milestone
    board.on_event("peer.silent", "warning", "p", {"source": "exec-1"})
    state = orjson.loads(board.state_bytes())
    assert state["status"] == "DEGRADED" and state["reasons"] == ["no backtest worker connected"]
    assert state["population"]["S"] == [0] and state["population"]["graveyard"] == [9]
    assert [m["text"] for m in state["milestones"]] == [
        "peer.silent exec-1", "OOS pass for ema-1: Sharpe 0.90, PSR -, - trades"]
    assert state["milestones"][1]["strategy"] == "ema-1" and state["milestones"][0]["severity"] == "warning"
    assert state["top"][0] == {"name": "ema-1", "rank": "S", "family": "ema_cross", "universe": "EURUSD_H1",
                               "sharpe": 1.5, "dsr": 0.97, "trades": 80, "max_drawdown": None, "oos": "pass",
                               "oos_sharpe": 0.9, "wfv": "validated"}
    assert state["figures"]["trials"] == 480 and state["figures"]["workers_alive"] == 1


def test_the_document_is_made_at_most_once_a_second() -> None:
    clock = FakeClock()
    figures = [FULL]
    board = make(clock, figures)
    first = board.state_bytes()
    board.on_event("peer.silent", "warning", "p", {"source": "exec-1"})
    assert board.state_bytes() is first
    clock.advance(1.0)
    assert b"exec-1" in board.state_bytes()


async def test_run_samples_every_interval_with_the_backtest_rate() -> None:
    clock = FakeClock()
    figures = [FULL]
    board = make(clock, figures)
    task = asyncio.create_task(board.run())
    await asyncio.sleep(0)
    assert len(board.history) == 1
    for _ in range(30):
        clock.advance(1.0)
        await asyncio.sleep(0)
    done = replace(FULL.backtests, completed=FULL.backtests.completed + 300)
    figures[0] = replace(FULL, strategies={"S": 1}, backtests=done)
    for _ in range(31):
        clock.advance(1.0)
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(board.history) == 3
    assert board.history[-1][1] == {"S": 1}
    assert board.history[-1][2] == 300 / 30  # backtests per second since the previous sample, 30 s before


def test_history_and_milestones_are_bounded(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    board = make(clock, [FULL])
    for n in range(dash.HISTORY + 50):
        clock.advance(30.0)
        board.sample()
        board.on_event("peer.silent", "warning", "p", {"source": f"p{n}"})
    assert len(board.history) == dash.HISTORY and len(board.milestones) == dash.MAX_EVENTS
    state = board.state()
    assert len(state["population"]["t"]) == dash.MAX_POINTS
    assert state["population"]["t"][-1] == round(clock.time())  # the newest point is always kept
    assert len(orjson.dumps(state)) < 60_000


def test_the_population_history_survives_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Samples go to the store (7 days kept); a new dashboard reads the last 24 h back."""
    from swimmy.store import Store

    clock = FakeClock()
    with Store.open(tmp_path / "school.db") as store:
        def record(at: float, counts: dict[str, int]) -> None:
            store.add_population_sample(at, counts, dash.KEEP_SEC)

        first = Dashboard(clock, figures=lambda: FULL, reasons=list, best=lambda n: [], record=record)
        for _ in range(3):
            first.sample()
            clock.advance(30.0)
        old = clock.time() - 2 * 86_400
        store.add_population_sample(old, {"S": 7}, dash.KEEP_SEC)  # older than a day: kept, but not charted
        again = Dashboard(clock, figures=lambda: FULL, reasons=list, best=lambda n: [],
                          recorded=store.population_samples, record=record)
        assert [round(t) for t, _, _ in again.history] == [round(t) for t, _, _ in first.history]
        assert again.history[0][1] == {"incubator": 5, "B": 2, "A": 1, "S": 0, "graveyard": 9}
        clock.advance(8 * 86_400)
        again.sample()  # a week later: the old samples are forgotten by the store
        assert [round(t) for t, _ in store.population_samples(0)] == [round(clock.time())]


def test_a_store_that_refuses_a_sample_costs_the_chart_nothing() -> None:
    from swimmy.errors import StoreError

    def full_disk(at: float, counts: dict[str, int]) -> None:
        raise StoreError("database or disk is full")

    board = Dashboard(FakeClock(), figures=lambda: FULL, reasons=list, best=lambda n: [], record=full_disk)
    board.sample()
    assert board.record_failures == 1 and len(board.history) == 1
