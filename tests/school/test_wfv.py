"""The WFV scheduler (SPEC §6) on a real store, the real backtest client and a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from schoolkit import Kit, make_kit

from swimmy.config import WfvConfig
from swimmy.school.oos import AlreadyPendingError, UnknownStrategyError
from swimmy.school.wfv import (
    WfvScheduler,
    decide,
    pending_stats,
    plan_tick,
    required_oos,
    split_is_range,
)
from swimmy.store import WfvRow

HOUR = 3600
IS_TS = [1_780_000_000 + i * HOUR for i in range(100)]  # the IS range: 100 bars


def scheduler(kit: Kit, reranked: list[str] | None = None) -> WfvScheduler:
    return WfvScheduler(kit.cfg, kit.store, kit.client, kit.emit, kit.clock,
                        is_timestamps=lambda symbol, timeframe: IS_TS,
                        rerank=lambda name, why: (reranked if reranked is not None else []).append(name))


def kit_with(tmp_path: Path, **wfv: Any) -> Kit:
    return make_kit(tmp_path, {"wfv": {"interval_sec": 3600, "max_pending": 2, "max_per_run": 1, **wfv}})


class TestRules:
    def test_pending_stats(self) -> None:
        """The pure rule: no runs -> (0, None)."""
        assert pending_stats({}, 1000.0) == (0, None)

    @pytest.mark.parametrize(
        ("kw", "last", "pending", "candidates", "start", "deferred"),
        [
            ({"enabled": False}, None, 0, 5, 0, "disabled"),
            ({}, 1000.0 - 3599, 0, 5, 0, "interval"),
            ({}, 1000.0 - 3600, 0, 5, 1, None),
            ({"max_pending": 0}, None, 1, 5, 0, "max_pending"),
            ({}, None, 2, 5, 0, "max_pending"),
            ({}, None, 0, 0, 0, "no_candidates"),
            ({"max_per_run": 3}, None, 1, 5, 1, None),
        ],
    )
    def test_plan_tick(self, kw: dict[str, Any], last: float | None, pending: int, candidates: int, start: int,
                       deferred: str | None) -> None:
        """The guards in order: disabled, interval, max_pending, candidates; starts never exceed max_pending."""
        cfg = WfvConfig(**{"interval_sec": 3600, "max_pending": 2, "max_per_run": 1, **kw})
        plan = plan_tick(cfg, now=1000.0, last_run_at=last, pending=pending, candidates=candidates)
        assert (plan.start, plan.deferred) == (start, deferred)

    @pytest.mark.parametrize(
        ("is_s", "oos_s", "required", "decision", "deg"),
        [
            (1.2, 0.8, 0.1, "validated", 1 / 3),
            (1.0, 0.2, 0.1, "overfit", 0.8),
            (1.0, 0.4, 0.1, "weak", 0.6),
            (1.0, 0.9, 1.0, "weak", 0.1),
            (0.05, 0.5, 0.1, "validated", 0.0),
            (None, 0.5, 0.1, "error", None),
        ],
    )
    def test_decide(self, is_s: float | None, oos_s: float | None, required: float, decision: str,
                    deg: float | None) -> None:
        """validated: OOS > required and degradation < 0.5; overfit: degradation > 0.7; else weak."""
        got, got_deg = decide(is_s, oos_s, required)
        assert got == decision
        assert got_deg == pytest.approx(deg) if deg is not None else got_deg is None

    @pytest.mark.parametrize(("generation", "required"), [(0, 0.0), (2, 0.1), (100, 2.0)])
    def test_required_oos(self, generation: int, required: float) -> None:
        """min(cap, base + step x generation)."""
        assert required_oos(generation, WfvConfig()) == pytest.approx(required)

    def test_split_takes_the_newest_share_of_the_is_range(self) -> None:
        """100 IS bars at 0.2: 80 IS-part bars, 20 OOS-part bars, the split at bar 80."""
        assert split_is_range(IS_TS, 0.2) == (IS_TS[0], IS_TS[80], 80, 20)
        assert split_is_range(IS_TS[:2], 0.2) is None


class TestScheduling:
    def test_wfv_pending_stats_of_runs_started_at_900_and_950(self, tmp_path: Path) -> None:
        """Seed Task 3: wfv_pending_stats(now=1000) with runs started at 900 and 950 -> (2, 100)."""
        kit = kit_with(tmp_path)
        kit.add("a")
        kit.add("b")
        kit.store.add_wfv_run(WfvRow("A", "a", 900.0, "scheduled", 0.2))
        kit.store.add_wfv_run(WfvRow("B", "b", 950.0, "scheduled", 0.2))
        wfv = scheduler(kit)
        wfv.startup()
        assert wfv.wfv_pending_stats(1000.0) == (2, 100.0)

    def test_a_tick_with_one_pending_and_max_pending_0_starts_nothing(self, tmp_path: Path) -> None:
        """Seed Task 3: nothing starts; wfv.deferred says max_pending with the pending figures."""
        kit = kit_with(tmp_path, max_pending=0)
        kit.add("pending-one")
        kit.add("other")
        wfv = scheduler(kit)
        kit.store.add_wfv_run(WfvRow("W0", "pending-one", kit.clock.time() - 10, "scheduled", 0.2))
        wfv.startup()
        wfv.maybe_run_wfv_qualification()
        assert kit.pipe.sent == []
        (deferred,) = kit.events("wfv.deferred")
        assert deferred.correlation_id == "unknown"
        assert deferred.data == {"reason": "max_pending", "pending": 1, "oldest_age_sec": 10.0}

    def test_start_sends_two_parts_over_the_is_range_only(self, tmp_path: Path) -> None:
        """wfv_is and wfv_oos requests with their own request_ids, split inside the IS range; persisted."""
        kit = kit_with(tmp_path)
        kit.add("best", sharpe=1.5)
        kit.add("second", sharpe=1.1)
        wfv = scheduler(kit)
        wfv.tick()
        is_req, oos_req = kit.pipe.last("wfv_is"), kit.pipe.last("wfv_oos")
        assert is_req["strategy"]["name"] == oos_req["strategy"]["name"] == "best"
        assert is_req["request_id"] != oos_req["request_id"]
        assert (is_req["start_ts"], is_req["end_ts"]) == (IS_TS[0], IS_TS[80])
        assert (oos_req["start_ts"], oos_req["end_ts"]) == (IS_TS[80], IS_TS[-1] + 1)
        (started,) = kit.events("wfv.started")
        assert started.data["trigger"] == "scheduled" and started.data["is_bars"] == 80
        assert started.data["oos_bars"] == 20 and started.data["split_ratio"] == 0.2
        assert kit.store.get_wfv_run(started.correlation_id).status == "pending"  # type: ignore[union-attr]
        assert wfv.last_run_at == kit.clock.time()

    def test_interval_guard_and_last_run_time(self, tmp_path: Path) -> None:
        """Within the interval nothing starts; a tick that starts nothing leaves the last-run time alone."""
        kit = kit_with(tmp_path, max_pending=5, pending_timeout_sec=100_000)
        kit.add("a", sharpe=1.5)
        wfv = scheduler(kit)
        wfv.tick()
        first = wfv.last_run_at
        kit.add("b", sharpe=1.4)
        kit.clock.advance(3599)
        wfv.tick()
        assert len(kit.events("wfv.started")) == 1
        assert kit.events("wfv.deferred")[-1].data["reason"] == "interval"
        kit.clock.advance(1)
        wfv.tick()
        assert len(kit.events("wfv.started")) == 2
        kit.clock.advance(3600)
        wfv.tick()  # no candidates left: nothing starts
        assert kit.events("wfv.deferred")[-1].data["reason"] == "no_candidates"
        assert wfv.last_run_at == first + 3600  # type: ignore[operator]

    def test_candidates_are_b_a_s_without_a_result_best_first(self, tmp_path: Path) -> None:
        """Graveyard, incubator and strategies with a WFV result are not candidates; best IS Sharpe first."""
        kit = kit_with(tmp_path, max_per_run=5, max_pending=5)
        kit.add("dead", rank="graveyard", sharpe=3.0)
        kit.add("new", rank="incubator", sharpe=None)
        kit.add("done", rank="A", sharpe=2.5)
        kit.store.set_wfv_decision("done", "weak", 0)
        kit.add("s", rank="S", sharpe=1.0)
        kit.add("b", rank="B", sharpe=2.0)
        scheduler(kit).tick()
        assert [e.data["strategy"] for e in kit.events("wfv.started")] == ["b", "s"]

    def test_deferred_is_one_event_per_change_of_reason(self, tmp_path: Path) -> None:
        """Ten ticks for the same reason are one event."""
        kit = kit_with(tmp_path, enabled=False)
        wfv = scheduler(kit)
        for _ in range(10):
            wfv.tick()
            kit.clock.advance(10)
        assert len(kit.events("wfv.deferred")) == 1


class TestResults:
    def test_result_after_both_parts(self, tmp_path: Path) -> None:
        """Seed Task 4: IS 1.2, OOS 0.8 -> wfv.result with wfv_id, split_ratio, generation, required_oos, ..."""
        kit = kit_with(tmp_path)
        kit.add("gen2", generation=2)
        wfv = scheduler(kit)
        wfv.tick()
        kit.answer(kit.pipe.last("wfv_is"), sharpe=1.2)
        kit.answer(kit.pipe.last("wfv_oos"), sharpe=0.8)
        parts = kit.events("wfv.part_received")
        assert [p.data["part"] for p in parts] == ["IS", "OOS"]
        (result,) = kit.events("wfv.result")
        wfv_id = kit.events("wfv.started")[0].correlation_id
        assert result.correlation_id == wfv_id == result.data["wfv_id"]
        assert all(p.correlation_id == wfv_id for p in parts)
        data = result.data
        assert (data["split_ratio"], data["generation"]) == (0.2, 2)
        assert data["required_oos"] == pytest.approx(0.1)
        assert data["degradation"] == pytest.approx(1 / 3, abs=1e-6)
        assert data["decision"] == "validated" and (data["is_sharpe"], data["oos_sharpe"]) == (1.2, 0.8)
        assert kit.store.get_strategy("gen2").wfv_decision == "validated"  # type: ignore[union-attr]
        assert wfv.pending == {}

    def test_a_failed_part_is_an_error_verdict_and_frees_the_queue(self, tmp_path: Path) -> None:
        """A part that errs: decision error, stored, so the next interval starts the next candidate."""
        kit = kit_with(tmp_path, interval_sec=0)
        kit.add("x", sharpe=1.5)
        kit.add("y", sharpe=1.0)
        wfv = scheduler(kit)
        wfv.tick()
        kit.answer(kit.pipe.last("wfv_is"), status="error", error="no bars")
        kit.answer(kit.pipe.last("wfv_oos"), sharpe=0.8)
        (result,) = kit.events("wfv.result")
        assert result.data["decision"] == "error" and result.severity == "info"
        assert kit.events("wfv.part_received")[0].data["status"] == "error"
        assert kit.store.get_strategy("x").wfv_decision == "error"  # type: ignore[union-attr]
        wfv.tick()
        assert [e.data["strategy"] for e in kit.events("wfv.started")] == ["x", "y"]

    @pytest.mark.parametrize(("affects", "reranked"), [(False, []), (True, ["x"])])
    def test_analysis_only_unless_affects_rank(self, tmp_path: Path, affects: bool, reranked: list[str]) -> None:
        """Only wfv.affects_rank lets a verdict re-rank the strategy."""
        kit = kit_with(tmp_path, affects_rank=affects)
        kit.add("x")
        seen: list[str] = []
        scheduler(kit, seen).tick()
        kit.answer(kit.pipe.last("wfv_is"), sharpe=1.0)
        kit.answer(kit.pipe.last("wfv_oos"), sharpe=0.1)
        assert seen == reranked

    def test_timeout_frees_the_slot_and_the_next_tick_starts_a_new_run(self, tmp_path: Path) -> None:
        """A run older than pending_timeout_sec: wfv.timeout naming the missing parts, then a new run starts."""
        kit = kit_with(tmp_path, max_pending=1, interval_sec=0, pending_timeout_sec=1800)
        kit.add("a", sharpe=1.5)
        kit.add("b", sharpe=1.4)
        wfv = scheduler(kit)
        wfv.tick()
        kit.answer(kit.pipe.last("wfv_is"), sharpe=1.0)
        kit.clock.advance(1801)
        wfv.tick()
        (timeout,) = kit.events("wfv.timeout")
        assert timeout.data["missing"] == ["OOS"] and timeout.data["age_sec"] == 1801
        assert [e.data["strategy"] for e in kit.events("wfv.started")] == ["a", "b"]  # the slot went to the next
        assert kit.store.get_wfv_run(timeout.correlation_id).status == "timeout"  # type: ignore[union-attr]

    def test_a_pending_run_survives_a_restart_and_completes(self, tmp_path: Path) -> None:
        """The pending run is loaded from the store; its parts' results are accepted by the new process."""
        kit = kit_with(tmp_path)
        kit.add("x", generation=1)
        scheduler(kit).tick()
        is_req, oos_req = kit.pipe.last("wfv_is"), kit.pipe.last("wfv_oos")
        kit.store.close()
        again = make_kit(tmp_path, {"wfv": {"interval_sec": 3600}}, clock=kit.clock)
        wfv = scheduler(again)
        wfv.startup()
        assert wfv.pending_stats(again.clock.time()) == (1, 0.0)
        again.answer(is_req, sharpe=1.0)
        again.answer(oos_req, sharpe=0.9)
        (result,) = again.events("wfv.result")
        assert result.data["decision"] == "validated"
        assert result.correlation_id == kit.events("wfv.started")[0].correlation_id


class TestManual:
    def test_manual_start_bypasses_every_guard(self, tmp_path: Path) -> None:
        """Disabled, in the interval, at max_pending: `wfv start` still starts, trigger manual."""
        kit = kit_with(tmp_path, enabled=False, max_pending=0)
        kit.add("x", rank="graveyard")
        wfv = scheduler(kit)
        wfv_id = wfv.start_manual("x")
        (started,) = kit.events("wfv.started")
        assert started.correlation_id == wfv_id and started.data["trigger"] == "manual"
        with pytest.raises(AlreadyPendingError):
            wfv.start_manual("x")
        with pytest.raises(UnknownStrategyError):
            wfv.start_manual("nope")
