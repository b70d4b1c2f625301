"""The terminal story (`swimmy run --console`) and the milestone lines it shares with the dashboard."""

from __future__ import annotations

import io
import threading
from dataclasses import replace

from test_metrics_http import FULL

from swimmy.testing import FakeClock
from swimmy.view.story import Story
from swimmy.view.words import describe

RANKED = {"strategy": "ema-1", "from_rank": "A", "to_rank": "S", "reason": "walk-forward validated",
          "sharpe": 1.5, "dsr": 0.98, "trials": 3210, "n_eff": 30.0}


def test_milestones_read_with_their_figures() -> None:
    assert describe("strategy.ranked", RANKED) == (
        "ema-1 promoted A -> S: Sharpe 1.50, DSR 0.980, trials 3,210 (walk-forward validated)")
    assert describe("strategy.ranked", dict(RANKED, from_rank="S", to_rank="A")).startswith("ema-1 demoted S -> A")
    assert describe("strategy.ranked", dict(RANKED, from_rank="incubator", to_rank="B")) is None  # many: counted
    assert describe("oos.result", {"strategy": "ema-1", "status": "received", "decision": "pass", "oos_sharpe": 0.8,
                                   "oos_psr": 0.91, "oos_trades": 40}) == (
        "OOS pass for ema-1: Sharpe 0.80, PSR 0.910, 40 trades")
    wfv = describe("wfv.result", {"strategy": "ema-1", "decision": "validated", "wf_sharpe": 1.1, "wf_psr": 0.97,
                                  "wfe": 0.8, "profitable_folds": 0.8,
                                  "folds": [{"oos_sharpe": 1.0}, {"oos_sharpe": -0.2}]})
    assert wfv == ("WFV validated for ema-1: WF Sharpe 1.10, WF PSR 0.970, WFE 0.80, profitable folds 80%; "
                   "fold test Sharpes 1.00 -0.20")
    audit = {"universe": "EURUSD_H1", "pbo": 0.12, "strategies": 50, "trials": 900, "n_eff": 20.5}
    assert describe("school.audit", audit) == "audit EURUSD_H1: PBO 0.12 over 50 strategies, 900 trials (N_eff 20.5)"
    assert describe("peer.silent", {"source": "exec-1", "silent_sec": 40}) == "peer.silent exec-1"
    assert describe("heartbeat.sent", {}) is None
    assert describe("oos.result", None) is not None  # odd data never raises


def test_story_prints_milestones_and_a_summary_every_interval() -> None:
    out = io.StringIO()
    clock = FakeClock()
    story = Story(out, wall=clock.time, interval_sec=30.0)
    story.on_event("strategy.ranked", "info", "ema-1", RANKED)
    story.on_event("strategy.ranked", "info", "x", dict(RANKED, from_rank="incubator", to_rank="B"))
    story.on_event("heartbeat.sent", "info", "h", {})
    figures = FULL
    story.tick(100.0, figures)  # first tick: starts the interval, prints nothing
    story.tick(120.0, figures)
    later = replace(figures, backtests=replace(figures.backtests, completed=figures.backtests.completed + 600))
    story.tick(130.0, later)
    grown = replace(later, strategies={"incubator": 0, "B": 40, "A": 0, "S": 1, "graveyard": 20})
    story.tick(160.0, grown)
    story.close()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("ema-1 promoted A -> S: Sharpe 1.50, DSR 0.980, trials 3,210 (walk-forward validated)")
    assert lines[0].startswith("08:00:00Z")  # the injected wall clock, UTC
    assert lines[1].endswith("population S 0 · A 1 · B 2 · incubator 5 · graveyard 9 | trials 480 | "
                             "20 backtests/s | workers 1/2")
    # The change since the last summary follows each live rank: B's promotions are told here, not one by one.
    assert lines[2].endswith("population S 1 (+1) · A 0 (-1) · B 40 (+38) · incubator 0 · graveyard 20 | "
                             "trials 480 | 0 backtests/s | workers 1/2")
    assert len(lines) == 3


class StuckTerminal(io.StringIO):
    """A terminal that stops reading (a paused pane, ^S) until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(5)
        return super().write(text)


def test_a_terminal_that_stops_reading_never_blocks_the_loop() -> None:
    out = StuckTerminal()
    story = Story(out, maxsize=3)
    for n in range(10):
        story.on_event("oos.result", "info", str(n), {"strategy": f"s{n}", "decision": "pass"})
    assert story.dropped >= 6  # the writer holds one, the queue three: the rest are counted, not waited for
    out.release.set()
    story.close()


def test_the_summary_is_due_every_interval_and_drops_are_told_at_the_end() -> None:
    out = StuckTerminal()
    story = Story(out, interval_sec=30.0, maxsize=2)
    assert story.due(100.0)  # the first tick starts the interval
    story.tick(100.0, FULL)
    assert not story.due(129.9) and story.due(130.0)
    for n in range(6):
        story.on_event("oos.result", "info", str(n), {"strategy": f"s{n}", "decision": "pass"})
    dropped = story.dropped
    assert dropped >= 3  # one line in the writer's hand, two queued, the rest dropped
    out.release.set()
    story.close(timeout_sec=2.0)
    assert f"the terminal fell behind: {dropped} story lines were dropped" in out.getvalue()
