"""The broker (SPEC §4): credit, routing by request_id, liveness, requeue, quarantine, data hashes, timeouts."""

from __future__ import annotations

from typing import Any

import pytest

from swimmy.backtest.client import BacktestClient, Outcome
from swimmy.testing import CapturingEmitter, FakeClock, RecordingRouter
from swimmy.wire.messages import (
    WORK_VERSION,
    Message,
    busy_body,
    encode,
    encode_work,
    parse,
    ready_body,
    result_body,
)

STRATEGY = {"name": "sma_cross-EURUSD-H1-abcdef12", "family": "sma_cross", "params": {"fast": 10, "slow": 30},
            "symbol": "EURUSD", "timeframe": "H1", "sl_pips": 0, "tp_pips": 0}
METRICS = {"trades": 12, "wins": 7, "losses": 5, "win_rate": 7 / 12, "pnl_pips": 40.5, "profit_factor": 1.4,
           "sharpe": 0.8, "sortino": 1.1, "max_drawdown": 0.05, "psr": 0.9}
HASH = "aaaabbbbccccdddd"
A, B = b"identity-a", b"identity-b"


def msg(body: dict[str, Any]) -> Message:
    m = parse([encode_work(body)], 1 << 20, version=WORK_VERSION)
    assert isinstance(m, Message), m
    return m


def make(**kw: Any) -> tuple[BacktestClient, CapturingEmitter, FakeClock, RecordingRouter, list[Outcome]]:
    clock, emit, router = FakeClock(), CapturingEmitter(), RecordingRouter()
    outcomes: list[Outcome] = []
    client = BacktestClient(router, emit, clock, timeout_sec=kw.pop("timeout_sec", 120),
                            worker_timeout_sec=kw.pop("worker_timeout_sec", 5), max_attempts=kw.pop("max_attempts", 3),
                            universe_hash=lambda u: HASH if u == "EURUSD_H1" else None,
                            costs_for=lambda symbol: {"spread_pips": 0.8, "slippage_pips": 0.2, "pip": 0.0001}, **kw)
    return client, emit, clock, router, outcomes


def ready(client: BacktestClient, identity: bytes, worker: str, credit: int = 2, data_hash: str = HASH) -> None:
    assert client.handle_ready(identity, msg(ready_body(worker=worker, credit=credit,
                                                        data={"EURUSD_H1": data_hash}))) is None


def answer(client: BacktestClient, identity: bytes, request_id: str, status: str = "ok", **kw: Any) -> None:
    body = result_body(request_id=request_id, strategy_name=STRATEGY["name"], status=status,
                       metrics=METRICS if status == "ok" else None, bars=100, start_ts=1, end_ts=2,
                       elapsed_ms=3.5, worker=identity.decode(), **kw)
    assert client.handle_result(identity, msg(body)) is None


def submit(client: BacktestClient, outcomes: list[Outcome], purpose: str = "is", **kw: Any) -> str:
    rid = client.submit(purpose, STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append, **kw)
    assert rid is not None
    return rid


class TestCredit:
    def test_nothing_is_sent_beyond_a_workers_credit_and_a_result_returns_one(self) -> None:
        """A worker with credit 2 holds two requests; the third waits in the daemon until a result comes back."""
        client, _, _, router, outcomes = make()
        ready(client, A, "a", credit=2)
        rids = [submit(client, outcomes) for _ in range(3)]
        assert [b["request_id"] for b in router.to(A)] == rids[:2]
        assert client.queued() == 1 and client.free_credit() == 0
        answer(client, A, rids[0])
        assert [b["request_id"] for b in router.to(A)] == rids
        assert [o.request_id for o in outcomes] == [rids[0]]

    def test_the_request_carries_the_data_hash_and_the_daemons_costs(self) -> None:
        client, _, _, router, outcomes = make()
        ready(client, A, "a")
        submit(client, outcomes)
        (body,) = router.to(A)
        assert body["v"] == 2 and body["type"] == "BACKTEST" and body["purpose"] == "is"
        assert body["data_hash"] == HASH
        assert body["costs"] == {"spread_pips": 0.8, "slippage_pips": 0.2, "pip": 0.0001}

    def test_no_worker_with_the_data_means_refused(self) -> None:
        """No worker at all, or only one with other data: submit refuses (the owner's error path)."""
        client, emit, _, router, outcomes = make()
        assert client.submit("oos", STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append) is None
        client.universes = ("EURUSD_H1",)
        ready(client, A, "a", data_hash="ffffffffffffffff")
        assert client.submit("oos", STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append) is None
        assert router.sent == []
        (mismatch,) = emit.of_type("worker.data_mismatch")
        assert mismatch.data == {"worker": "a", "universe": "EURUSD_H1", "data_hash": HASH,
                                 "theirs": "ffffffffffffffff"}
        ready(client, A, "a", data_hash="ffffffffffffffff")
        assert len(emit.of_type("worker.data_mismatch")) == 1  # once per worker, universe and hash

    def test_work_goes_only_to_the_worker_with_our_data(self) -> None:
        client, _, _, router, outcomes = make()
        ready(client, A, "a", credit=5, data_hash="ffffffffffffffff")
        ready(client, B, "b", credit=1)
        submit(client, outcomes)
        submit(client, outcomes)
        assert router.to(A) == [] and len(router.to(B)) == 1 and client.queued() == 1

    def test_qualification_work_goes_before_is_work(self) -> None:
        """OOS, WFV and manual requests jump the queue of IS requests."""
        client, _, _, router, outcomes = make()
        ready(client, A, "a", credit=1)
        first = submit(client, outcomes)
        later_is = submit(client, outcomes)
        oos = submit(client, outcomes, "oos")
        answer(client, A, first)
        assert [b["request_id"] for b in router.to(A)] == [first, oos]
        answer(client, A, oos)
        assert router.to(A)[-1]["request_id"] == later_is

    def test_a_full_pipe_keeps_the_request_queued(self) -> None:
        client, _, _, router, outcomes = make()
        router.full.add(A)
        ready(client, A, "a")
        rid = submit(client, outcomes)
        assert router.sent == [] and client.queued() == 1
        router.full.clear()
        client.pump()
        assert router.to(A)[0]["request_id"] == rid


class TestLiveness:
    def test_a_silent_worker_is_dead_and_its_requests_go_to_another_at_once(self) -> None:
        """worker_timeout_sec without a word: worker.lost, backtest.requeued, and the other worker gets them."""
        client, emit, clock, router, outcomes = make()
        ready(client, A, "a", credit=2)
        rids = [submit(client, outcomes) for _ in range(2)]
        ready(client, B, "b", credit=2)
        for _ in range(4):  # b keeps beating (READY while idle); a says nothing
            clock.advance(1.5)
            ready(client, B, "b", credit=2)
            client.check()
        (lost,) = emit.of_type("worker.lost")
        assert lost.data["worker"] == "a" and "no BUSY beat" in lost.data["reason"]
        requeued = emit.of_type("backtest.requeued")
        assert sorted(e.data["request_id"] for e in requeued) == sorted(rids)
        assert all(e.data["worker"] == "a" and e.severity == "warning" for e in requeued)
        assert [e.data["attempts"] for e in requeued] == [1, 0]  # only the one it was running counts as a death
        assert sorted(b["request_id"] for b in router.to(B)) == sorted(rids)
        for rid in rids:
            answer(client, B, rid)
        assert sorted(o.request_id for o in outcomes) == sorted(rids) and all(o.status == "ok" for o in outcomes)

    def test_an_idle_worker_that_stops_sending_ready_is_dead(self) -> None:
        client, emit, clock, _, _ = make()
        ready(client, A, "a")
        clock.advance(5.1)
        client.check()
        (lost,) = emit.of_type("worker.lost")
        assert "silent for 5.1s" in lost.data["reason"] and client.live_workers() == 0

    def test_a_worker_holding_work_without_busy_beats_is_dead_though_it_sends_ready(self) -> None:
        """A wedged backtest thread: the process may still talk, but no BUSY means its work is lost."""
        client, emit, clock, _, outcomes = make()
        ready(client, A, "a")
        submit(client, outcomes)
        for _ in range(3):
            clock.advance(2)
            ready(client, A, "a")  # the loop is alive...
            client.check()
        (lost,) = emit.of_type("worker.lost")
        assert "no BUSY" in lost.data["reason"]

    def test_busy_beats_keep_a_long_backtest_alive(self) -> None:
        client, emit, clock, _, outcomes = make()
        ready(client, A, "a")
        rid = submit(client, outcomes)
        for i in range(20):
            clock.advance(1)
            assert client.handle_busy(A, msg(busy_body(worker="a", request_id=rid, progress=i / 20))) is None
            client.check()
        assert emit.of_type("worker.lost") == []
        answer(client, A, rid)
        assert outcomes[0].status == "ok"

    def test_an_embedded_worker_that_exits_loses_its_requests_at_once(self) -> None:
        client, emit, _, router, outcomes = make()
        ready(client, A, "a")
        rid = submit(client, outcomes)
        client.worker_gone("a", "process exited with code -9")
        assert emit.of_type("backtest.requeued")[0].data["reason"].endswith("process exited with code -9")
        ready(client, B, "b")
        assert router.to(B)[0]["request_id"] == rid

    def test_a_worker_that_reconnects_under_a_new_identity_replaces_its_old_entry(self) -> None:
        client, emit, _, router, outcomes = make()
        ready(client, A, "a")
        rid = submit(client, outcomes)
        ready(client, B, "a")  # the same worker id on a new connection: it restarted
        assert emit.of_type("worker.lost")[0].data["reason"].startswith("reconnected")
        assert router.to(B)[0]["request_id"] == rid


class TestQuarantine:
    def test_a_request_that_kills_max_attempts_workers_is_quarantined_and_never_sent_again(self) -> None:
        client, emit, _, router, outcomes = make(max_attempts=3)
        rid = None
        for n in range(3):
            identity = f"id-{n}".encode()
            ready(client, identity, f"w{n}")
            if rid is None:
                rid = submit(client, outcomes)
            assert router.to(identity)[0]["request_id"] == rid
            client.worker_gone(f"w{n}", "process exited with code 17")
        assert [e.data["attempts"] for e in emit.of_type("backtest.requeued")] == [1, 2]
        (q,) = emit.of_type("backtest.quarantined")
        assert q.severity == "error" and q.data["request_id"] == rid and q.data["attempts"] == 3
        assert outcomes[0].status == "quarantined" and "quarantined" in (outcomes[0].error or "")
        ready(client, b"id-9", "w9")
        assert router.to(b"id-9") == [] and not client.is_inflight(rid)

    def test_only_the_request_a_worker_was_running_is_blamed_for_its_death(self) -> None:
        """A worker runs its requests in the order sent: the second one only waited, so it is not poison."""
        client, emit, _, _, outcomes = make(max_attempts=1)
        ready(client, A, "a", credit=2)
        running = submit(client, outcomes)
        waiting = submit(client, outcomes)
        client.worker_gone("a", "process exited with code 17")
        (q,) = emit.of_type("backtest.quarantined")
        assert q.data["request_id"] == running
        (requeued,) = emit.of_type("backtest.requeued")
        assert requeued.data["request_id"] == waiting and requeued.data["attempts"] == 0
        assert client.is_inflight(waiting) and not client.is_inflight(running)

    def test_a_late_beat_of_a_lost_worker_claims_nothing(self) -> None:
        """The worker died (send failed); its last BUSY arrives after: the request stays queued for another."""
        client, _, _, router, outcomes = make()
        ready(client, A, "a")
        rid = submit(client, outcomes)
        client.worker_gone("a", "send failed: Host unreachable")
        assert client.handle_busy(A, msg(busy_body(worker="a", request_id=rid, progress=0.0))) is None
        assert client.live_workers() == 0 and client.queued() == 1
        ready(client, B, "b")
        assert router.to(B)[0]["request_id"] == rid

    def test_a_data_mismatch_is_requeued_never_counted_against_the_strategy(self) -> None:
        """The worker's file changed since its READY: the answer is discarded and the request goes elsewhere."""
        client, emit, _, router, outcomes = make(max_attempts=1)
        ready(client, A, "a")
        rid = submit(client, outcomes)
        answer(client, A, rid, status="error", error="data mismatch: worker a has EURUSD_H1 with hash x")
        assert outcomes == [] and emit.of_type("backtest.completed") == []
        (requeued,) = emit.of_type("backtest.requeued")
        assert requeued.data["reason"].startswith("data mismatch") and requeued.data["attempts"] == 0
        assert client.free_credit("EURUSD_H1") == 0  # a gets none of this universe until a new READY
        ready(client, B, "b")
        answer(client, B, router.to(B)[0]["request_id"])
        assert outcomes[0].status == "ok" and outcomes[0].metrics is not None


class TestTimeouts:
    def test_resend_once_with_the_same_request_id_then_timeout(self) -> None:
        client, emit, clock, router, outcomes = make(timeout_sec=120)
        ready(client, A, "a", credit=5)
        rid = submit(client, outcomes, "oos")
        clock.advance(121)
        ready(client, A, "a", credit=5)
        client.handle_busy(A, msg(busy_body(worker="a", request_id=rid, progress=None)))
        client.check()
        assert [b["request_id"] for b in router.to(A)] == [rid, rid]
        clock.advance(121)
        ready(client, A, "a", credit=5)
        client.handle_busy(A, msg(busy_body(worker="a", request_id=rid, progress=None)))
        client.check()
        (event,) = emit.of_type("backtest.timeout")
        assert event.data["attempts"] == 2 and outcomes[0].status == "timeout"

    def test_a_late_answer_still_reaches_its_owner_and_a_duplicate_is_ignored(self) -> None:
        client, emit, clock, _, outcomes = make(timeout_sec=10, worker_timeout_sec=1000)
        ready(client, A, "a", credit=5)
        rid = submit(client, outcomes, "oos")
        clock.advance(11)
        client.check()
        clock.advance(11)
        client.check()
        answer(client, A, rid)
        answer(client, A, rid)
        assert [o.status for o in outcomes] == ["timeout", "ok"]
        completed = emit.of_type("backtest.completed")
        assert len(completed) == 1 and completed[0].data["late"] is True and client.ignored == 1


class TestRouting:
    def test_the_strategy_is_the_one_the_request_was_for_not_the_workers_word(self) -> None:
        client, emit, _, _, outcomes = make()
        ready(client, A, "a")
        rid = submit(client, outcomes, "oos")
        body = result_body(request_id=rid, strategy_name="someone-else", status="ok", metrics=METRICS, bars=1,
                           start_ts=1, end_ts=2, elapsed_ms=1, worker="a")
        client.handle_result(A, msg(body))
        assert emit.of_type("backtest.completed")[0].data["strategy"] == STRATEGY["name"]
        assert outcomes[0].strategy == STRATEGY["name"]

    def test_an_error_result_is_never_a_sharpe_of_zero(self) -> None:
        client, emit, _, _, outcomes = make()
        ready(client, A, "a")
        rid = submit(client, outcomes, "oos")
        answer(client, A, rid, status="error", error="no bars")
        (event,) = emit.of_type("backtest.completed")
        assert event.severity == "error" and event.data["sharpe"] is None and outcomes[0].metrics is None

    def test_is_results_are_not_one_event_each_unless_debug(self) -> None:
        """IS backtest.completed is debug: written only when the log level is debug (SPEC §2.4, §5)."""
        for debug, expected in ((False, 0), (True, 1)):
            client, emit, _, _, outcomes = make(debug_events=debug)
            ready(client, A, "a")
            answer(client, A, submit(client, outcomes))
            events = emit.of_type("backtest.completed")
            assert len(events) == expected and all(e.severity == "debug" for e in events)

    def test_a_restarted_daemon_leaves_a_recovered_request_with_the_worker_that_still_runs_it(self) -> None:
        """BUSY for a re-queued request claims it: it is not sent to anyone else."""
        client, _, _, router, outcomes = make()
        rid = submit(client, outcomes, "wfv_fold", recover=True)
        assert client.queued() == 1
        assert client.handle_busy(A, msg(busy_body(worker="a", request_id=rid, progress=0.5))) is None
        ready(client, B, "b")
        assert router.sent == []
        answer(client, A, rid)
        assert outcomes[0].status == "ok"


class TestRejections:
    @pytest.mark.parametrize("body", [
        {"type": "READY", "worker": "a", "credit": 0, "data": {}},
        {"type": "READY", "worker": "a", "credit": 2, "data": ["EURUSD_H1"]},
        {"type": "READY", "credit": 2, "data": {}},
        {"type": "BUSY", "worker": "a", "request_id": 5},
        {"type": "BACKTEST_RESULT", "status": "ok", "metrics": METRICS},
        {"type": "BACKTEST_RESULT", "request_id": "r", "status": "ok", "metrics": {"sharpe": "high"}},
    ])
    def test_bad_work_messages_are_refused_with_a_reason(self, body: dict[str, Any]) -> None:
        client, _, _, _, _ = make()
        handler = {"READY": client.handle_ready, "BUSY": client.handle_busy,
                   "BACKTEST_RESULT": client.handle_result}[body["type"]]
        assert handler(A, msg(body)) is not None

    def test_a_v1_message_on_the_work_socket_is_bad_version(self) -> None:
        rejected = parse([encode({"type": "READY", "worker": "a", "credit": 2, "data": {}})], 1 << 20,
                         version=WORK_VERSION)
        assert not isinstance(rejected, Message) and rejected.reason == "bad_version"


class TestIncompatible:
    def test_a_heartbeat_peer_named_worker_without_ready_is_reported_once(self) -> None:
        client, emit, clock, _, _ = make()
        client.note_peer("worker-old")
        client.note_peer("worker-new")
        ready(client, A, "new")
        clock.advance(11)
        client.check()
        client.check()
        (event,) = emit.of_type("worker.incompatible")
        assert event.data["source"] == "worker-old" and "v1" in event.data["reason"]
