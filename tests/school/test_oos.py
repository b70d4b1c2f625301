"""The OOS requester (SPEC §5), on a real store with the real backtest client and a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from schoolkit import Kit, make_kit

from swimmy.config import OosConfig
from swimmy.school.oos import (
    AlreadyPendingError,
    OosRequester,
    UnknownStrategyError,
    decide_request,
    holdout_verdict,
    is_mirror,
    next_backoff,
)
from swimmy.store import OosRow

OOS_START = 1_790_000_000


def requester(kit: Kit, reranked: list[str] | None = None) -> OosRequester:
    return OosRequester(kit.cfg, kit.store, kit.client, kit.emit, kit.clock,
                        oos_start=lambda symbol, timeframe: OOS_START,
                        rerank=lambda name, why: (reranked if reranked is not None else []).append(name))


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return make_kit(tmp_path, {"school": {"cycle_sec": 10}, "oos": {"request_interval_sec": 600}})


class TestRules:
    @pytest.mark.parametrize(
        ("status", "age", "backoff", "action", "new_status"),
        [
            (None, 0, None, "request", "sent"),
            ("sent", 599, None, "throttled", None),
            ("sent", 601, None, "request", "retry"),
            ("retry", 10, None, "throttled", None),
            ("error", 5, 10.0, "backoff", None),
            ("error", 10, 10.0, "request", "retry"),
        ],
    )
    def test_decide_request(self, status: str | None, age: float, backoff: float | None, action: str,
                            new_status: str | None) -> None:
        """Young non-error rows are throttled; error rows wait out their backoff; old rows are retried."""
        row = None if status is None else OosRow("s", "r", 1000.0 - age, status, 1, None, backoff)
        decision = decide_request(row, 1000.0, interval_sec=600)
        assert (decision.action, decision.status) == (action, new_status)

    @pytest.mark.parametrize(("previous", "expected"), [(None, 10.0), (10.0, 20.0), (320.0, 600.0), (600.0, 600.0)])
    def test_backoff_doubles_from_cycle_sec_up_to_the_interval(self, previous: float | None, expected: float) -> None:
        """cycle_sec, then doubling, capped at request_interval_sec."""
        assert next_backoff(previous, cycle_sec=10, interval_sec=600) == expected

    @pytest.mark.parametrize(("is_s", "oos_s", "mirror"), [(1.2, 1.2, True), (0.0, 0.0, False), (1.2, 1.1, False),
                                                           (None, 1.2, False)])
    def test_mirror(self, is_s: float | None, oos_s: float | None, mirror: bool) -> None:
        """oos_sharpe == is_sharpe != 0 is a mirror."""
        assert is_mirror(is_s, oos_s) is mirror


class TestHoldoutVerdict:
    @pytest.mark.parametrize(("sharpe", "psr", "trades", "decision", "why"), [
        (0.8, 0.95, 40, "pass", "trades 40"),
        (0.35, 0.90, 20, "pass", "trades 20"),  # every minimum met exactly
        (0.8, 0.95, 19, "fail", "trades 19 < 20"),
        (0.34, 0.95, 40, "fail", "sharpe 0.340 < 0.35"),
        (0.8, 0.89, 40, "fail", "psr 0.890 < 0.9"),
        (None, None, 0, "fail", "trades 0 < 20"),
        (0.8, None, 40, "fail", "psr null"),
    ])
    def test_trades_sharpe_and_psr_are_all_needed(self, sharpe: float | None, psr: float | None, trades: int,
                                                   decision: str, why: str) -> None:
        """SPEC §5: a Sharpe of 0.35 over 90 days passes ~40% of noise alone; the PSR and the trades make it mean."""
        got = holdout_verdict(sharpe, psr, trades, OosConfig())
        assert got[0] == decision and got[1].startswith(why)


class TestRequests:
    def test_the_dsr_is_judged_again_before_a_look(self, kit: Kit) -> None:
        """A candidate whose DSR has fallen below the gate as the ledger grew gets no look at the holdout."""
        kit.add("stale", is_dsr=0.99)
        oos = OosRequester(kit.cfg, kit.store, kit.client, kit.emit, kit.clock,
                           oos_start=lambda symbol, timeframe: OOS_START, rerank=lambda name, why: None,
                           dsr_now=lambda row: 0.5)
        oos.tick()
        assert kit.events("oos.requested") == []

    def test_a_manual_look_below_the_dsr_gate_is_recorded_but_promotes_nothing(self, kit: Kit) -> None:
        """`swimmy oos request` on a strategy the DSR gate has not let through: its pass is `ungated`, not A."""
        kit.add("below", is_dsr=0.5)
        oos = OosRequester(kit.cfg, kit.store, kit.client, kit.emit, kit.clock,
                           oos_start=lambda symbol, timeframe: OOS_START, rerank=lambda name, why: None)
        oos.request_now("below")
        kit.answer(kit.pipe.last("oos"), sharpe=0.9)
        (result,) = kit.events("oos.result")
        assert result.data["decision"] == "ungated" and "DSR below the A gate" in result.data["why"]
        assert kit.store.get_strategy("below").oos_decision == "ungated"  # type: ignore[union-attr]

    def test_one_look_per_universe_per_tick_best_dsr_first(self, kit: Kit) -> None:
        """The holdout is spent sparingly: of three candidates only the best DSR is sent this tick."""
        for name, dsr in (("low", 0.96), ("best", 0.999), ("mid", 0.98)):
            kit.add(name, is_dsr=dsr)
        requester(kit).tick()
        assert [e.data["strategy"] for e in kit.events("oos.requested")] == ["best"]

    def test_every_verdict_is_counted_as_a_look(self, kit: Kit) -> None:
        """The looks callback runs once per OOS verdict (not for errors)."""
        looked: list[str] = []
        kit.add("cand")
        oos = OosRequester(kit.cfg, kit.store, kit.client, kit.emit, kit.clock,
                           oos_start=lambda symbol, timeframe: OOS_START, rerank=lambda name, why: None,
                           look=lambda row: looked.append(row.name))
        oos.tick()
        kit.answer(kit.pipe.last("oos"), status="error", error="boom")
        assert looked == []
        kit.clock.advance(700)
        oos.tick()
        kit.answer(kit.pipe.last("oos"), sharpe=0.1)
        assert looked == ["cand"] and kit.events("oos.result")[-1].data["decision"] == "fail"


    def test_an_a_candidate_without_oos_gets_oos_requested(self, kit: Kit) -> None:
        """Seed Task 2: an A candidate with no OOS result -> oos.requested, a row `sent`, a BACKTEST on the wire."""
        kit.add("cand")
        requester(kit).tick()
        (event,) = kit.events("oos.requested")
        request = kit.pipe.last("oos")
        assert event.correlation_id == request["request_id"] == event.data["request_id"]
        assert event.data == {"request_id": request["request_id"], "strategy": "cand", "oos_kind": "a-rank",
                              "status": "sent", "start_ts": OOS_START, "end_ts": None}
        assert request["start_ts"] == OOS_START and request["end_ts"] is None
        row = kit.store.get_oos_row("cand")
        assert row is not None and row.status == "sent" and row.request_id == request["request_id"]

    def test_only_a_base_candidates_without_oos_are_considered(self, kit: Kit) -> None:
        """Below the A base, OOS already known, or graveyard: no request."""
        kit.add("weak", sharpe=0.2)
        kit.add("known", oos_sharpe=0.5)
        kit.add("dead", rank="graveyard")
        kit.add("few-trades", is_trades=5)
        requester(kit).tick()
        assert kit.events("oos.requested") == []

    def test_throttle_at_599_and_601(self, kit: Kit) -> None:
        """599 s after a request: one oos.throttled (not one per tick); 601 s: a retry with a new request_id."""
        kit.add("cand")
        oos = requester(kit)
        oos.tick()
        first = kit.pipe.last("oos")["request_id"]
        kit.clock.advance(599)
        oos.tick()
        oos.tick()
        (throttled,) = kit.events("oos.throttled")
        assert throttled.correlation_id == first
        assert throttled.data["status"] == "throttled" and throttled.data["age_sec"] == 599
        kit.clock.advance(2)
        oos.tick()
        second = kit.events("oos.requested")[-1]
        assert second.data["status"] == "retry" and second.data["request_id"] != first

    def test_refused_dispatch_gives_dispatch_failed_and_an_error_row(self, kit: Kit) -> None:
        """No worker (the PUSH refuses): oos.dispatch_failed and an `error` row."""
        kit.add("cand")
        kit.pipe.open = False
        requester(kit).tick()
        (failed,) = kit.events("oos.dispatch_failed")
        assert failed.severity == "error" and failed.data["status"] == "error"
        row = kit.store.get_oos_row("cand")
        assert row is not None and row.status == "error" and row.backoff_sec == 10

    def test_an_error_row_is_retried_after_its_doubling_backoff_with_a_new_request_id(self, kit: Kit) -> None:
        """Backoff 10 s then 20 s; each attempt has its own request_id."""
        kit.add("cand")
        oos = requester(kit)
        kit.pipe.open = False
        oos.tick()
        kit.clock.advance(9)
        oos.tick()
        assert len(kit.events("oos.dispatch_failed")) == 1
        kit.clock.advance(1)
        oos.tick()
        assert len(kit.events("oos.dispatch_failed")) == 2
        row = kit.store.get_oos_row("cand")
        assert row is not None and row.backoff_sec == 20
        kit.pipe.open = True
        kit.clock.advance(20)
        oos.tick()
        ids = [e.data["request_id"] for e in kit.events("oos.dispatch_failed") + kit.events("oos.requested")]
        assert len(set(ids)) == 3
        assert kit.events("oos.requested")[0].data["status"] == "retry"


class TestResults:
    def test_a_result_is_stored_and_promotes_with_latency(self, kit: Kit) -> None:
        """oos_sharpe >= min_sharpe: stored, row done, oos.result with latency_sec, the strategy re-ranked."""
        kit.add("cand")
        reranked: list[str] = []
        oos = requester(kit, reranked)
        oos.tick()
        kit.clock.advance(42)
        kit.answer(kit.pipe.last("oos"), sharpe=0.8)
        (result,) = kit.events("oos.result")
        assert result.data["status"] == "received" and result.data["latency_sec"] == 42
        assert result.data["oos_sharpe"] == 0.8 and result.data["decision"] == "pass"
        assert result.data["oos_psr"] == 0.97 and result.data["oos_trades"] == 50
        row = kit.store.get_strategy("cand")
        assert row is not None and row.oos_sharpe == 0.8 and row.oos_decision == "pass" and row.oos_psr == 0.97
        assert kit.store.get_oos_row("cand").status == "done"  # type: ignore[union-attr]
        assert reranked == ["cand"]

    def test_an_error_result_leaves_oos_null_and_the_row_error(self, kit: Kit) -> None:
        """An error result is never stored as a Sharpe: oos_sharpe stays NULL, the row is `error`."""
        kit.add("cand")
        requester(kit).tick()
        kit.answer(kit.pipe.last("oos"), status="error", error="no bars in range")
        (result,) = kit.events("oos.result")
        assert result.severity == "error" and result.data["status"] == "error" and result.data["oos_sharpe"] is None
        assert kit.store.get_strategy("cand").oos_sharpe is None  # type: ignore[union-attr]
        row = kit.store.get_oos_row("cand")
        assert row is not None and row.status == "error" and row.last_error == "no bars in range"

    def test_a_stale_result_changes_nothing(self, kit: Kit) -> None:
        """A result for a request that is not the strategy's latest: oos.stale_ignored, nothing stored."""
        kit.add("cand")
        oos = requester(kit)
        oos.tick()
        old = kit.pipe.last("oos")
        kit.clock.advance(601)
        oos.tick()
        kit.answer(old, sharpe=0.9)
        (stale,) = kit.events("oos.stale_ignored")
        assert stale.correlation_id == old["request_id"]
        assert kit.store.get_strategy("cand").oos_sharpe is None  # type: ignore[union-attr]
        assert kit.store.get_oos_row("cand").status == "retry"  # type: ignore[union-attr]

    def test_a_mirror_result_is_rejected(self, kit: Kit) -> None:
        """OOS Sharpe equal to the IS Sharpe: oos.mirror_rejected, row error, nothing stored."""
        kit.add("cand", sharpe=1.2)
        requester(kit).tick()
        kit.answer(kit.pipe.last("oos"), sharpe=1.2)
        assert kit.events("oos.mirror_rejected")[0].data["oos_sharpe"] == 1.2
        assert kit.store.get_strategy("cand").oos_sharpe is None  # type: ignore[union-attr]
        row = kit.store.get_oos_row("cand")
        assert row is not None and row.status == "done" and row.last_error is not None
        assert row.last_error.startswith("mirror")
        kit.clock.advance(10_000)
        requester(kit).tick()  # the same question would get the same answer: not asked again
        assert len(kit.events("oos.requested")) == 1

    def test_in_flight_rows_survive_a_restart_and_their_results_are_accepted(self, tmp_path: Path) -> None:
        """Start-up prunes error and old rows; a young in-flight row is adopted and its result stored."""
        kit = make_kit(tmp_path)
        for name in ("inflight", "errored", "ancient"):
            kit.add(name)
        now = kit.clock.time()
        kit.store.put_oos_row(OosRow("inflight", "R-1", now - 100, "sent", 1))
        kit.store.put_oos_row(OosRow("errored", "R-2", now - 5, "error", 1, "boom", 10))
        kit.store.put_oos_row(OosRow("ancient", "R-3", now - 3 * 600 - 1, "sent", 1))
        kit.store.close()
        restarted = make_kit(tmp_path, clock=kit.clock)  # same file, new process
        oos = requester(restarted)
        oos.startup()
        assert [r.strategy for r in restarted.store.list_oos_rows()] == ["inflight"]
        restarted.answer({"request_id": "R-1", "strategy": {"name": "inflight"}, "start_ts": OOS_START,
                          "end_ts": None}, sharpe=0.7)
        assert restarted.store.get_strategy("inflight").oos_sharpe == 0.7  # type: ignore[union-attr]
        assert restarted.events("oos.result")[0].correlation_id == "R-1"


class TestManual:
    def test_manual_request_bypasses_the_throttle_but_not_a_request_in_flight(self, kit: Kit) -> None:
        """Unknown -> exit 2; in flight -> exit 1; after an answer it goes at once."""
        kit.add("cand")
        oos = requester(kit)
        with pytest.raises(UnknownStrategyError):
            oos.request_now("nope")
        oos.request_now("cand")
        with pytest.raises(AlreadyPendingError):
            oos.request_now("cand")
        kit.answer(kit.pipe.last("oos"), sharpe=0.2)
        assert oos.request_now("cand") != kit.events("oos.requested")[0].data["request_id"]
