"""The backtest client: routing by request_id, one resend, backtest.timeout, duplicates ignored."""

from __future__ import annotations

from typing import Any

import orjson

from swimmy.backtest.client import BacktestClient, Outcome
from swimmy.testing import CapturingEmitter, FakeClock
from swimmy.wire.messages import Message, encode, parse, result_body

STRATEGY = {"name": "sma_cross-EURUSD-H1-abcdef12", "family": "sma_cross", "params": {"fast": 10, "slow": 30},
            "symbol": "EURUSD", "timeframe": "H1", "sl_pips": 0, "tp_pips": 0}
METRICS = {"trades": 12, "wins": 7, "losses": 5, "win_rate": 7 / 12, "pnl_pips": 40.5, "profit_factor": 1.4,
           "sharpe": 0.8, "sortino": 1.1, "max_drawdown": 0.05, "psr": 0.9}


class Pipe:
    """A fake non-blocking PUSH: records frames; refuses when closed."""

    def __init__(self, open_: bool = True) -> None:
        self.sent: list[list[bytes]] = []
        self.open = open_

    def __call__(self, frames: list[bytes]) -> bool:
        if self.open:
            self.sent.append(frames)
        return self.open


def make(pipe: Pipe | None = None) -> tuple[BacktestClient, CapturingEmitter, FakeClock, Pipe, list[Outcome]]:
    clock, emit = FakeClock(), CapturingEmitter()
    pipe = pipe or Pipe()
    outcomes: list[Outcome] = []
    client = BacktestClient(pipe, emit, clock, timeout_sec=120)
    return client, emit, clock, pipe, outcomes


def answer(request_id: str, status: str = "ok", **kw: Any) -> Message:
    body = result_body(request_id=request_id, strategy_name=STRATEGY["name"], status=status,
                       metrics=METRICS if status == "ok" else None, bars=100, start_ts=1, end_ts=2,
                       elapsed_ms=3.5, worker="w1", **kw)
    msg = parse([encode(body)], 1 << 20)
    assert isinstance(msg, Message)
    return msg


class TestRouting:
    def test_a_result_is_routed_by_request_id_to_its_owner(self) -> None:
        """backtest.completed carries the figures; the owner hears ok with the metrics."""
        client, emit, _, pipe, outcomes = make()
        rid = client.submit("is", STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append)
        assert rid is not None
        sent = orjson.loads(pipe.sent[0][0])
        assert sent["type"] == "BACKTEST" and sent["request_id"] == rid and sent["purpose"] == "is"
        assert client.handle_result(answer(rid)) is None
        (event,) = emit.of_type("backtest.completed")
        assert event.correlation_id == rid and event.severity == "info"
        expected = {"request_id": rid, "strategy": STRATEGY["name"], "purpose": "is", "status": "ok", "sharpe": 0.8,
                    "trades": 12, "elapsed_ms": 3.5, "worker": "w1"}
        assert {k: event.data[k] for k in expected} == expected
        assert outcomes[0].status == "ok" and outcomes[0].metrics == METRICS
        assert client.inflight == 0

    def test_an_error_result_is_never_a_sharpe_of_zero(self) -> None:
        """An error answer: severity error, no metrics, the reason passed on."""
        client, emit, _, _, outcomes = make()
        rid = client.submit("oos", STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append)
        assert rid is not None
        client.handle_result(answer(rid, "error", error="no data for GBPUSD H1"))
        (event,) = emit.of_type("backtest.completed")
        assert event.severity == "error" and event.data["sharpe"] is None and event.data["error"]
        assert outcomes[0].status == "error" and outcomes[0].metrics is None
        assert outcomes[0].error == "no data for GBPUSD H1"

    def test_a_refused_send_returns_none(self) -> None:
        """No worker connected (the PUSH refuses): submit says so and nothing is in flight."""
        client, _, _, _, _ = make(Pipe(open_=False))
        assert client.submit("is", STRATEGY, start_ts=None, end_ts=None) is None
        assert client.inflight == 0 and client.refused == 1


class TestTimeouts:
    def test_resend_once_with_the_same_request_id_then_timeout(self) -> None:
        """After timeout_sec the same request goes again; after the second, backtest.timeout and the owner hears it."""
        client, emit, clock, pipe, outcomes = make()
        rid = client.submit("wfv_is", STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append)
        clock.advance(119)
        client.check_timeouts()
        assert len(pipe.sent) == 1
        clock.advance(1)
        client.check_timeouts()
        assert len(pipe.sent) == 2 and pipe.sent[1] == pipe.sent[0]
        assert emit.of_type("backtest.timeout") == []
        clock.advance(120)
        client.check_timeouts()
        (event,) = emit.of_type("backtest.timeout")
        assert event.correlation_id == rid and event.severity == "warning"
        assert event.data["attempts"] == 2 and event.data["purpose"] == "wfv_is"
        assert outcomes[0].status == "timeout"
        assert client.inflight == 0

    def test_the_resend_answered_completes_once_and_a_duplicate_is_ignored(self) -> None:
        """Both copies answered: one backtest.completed, the second answer ignored."""
        client, emit, clock, _, outcomes = make()
        rid = client.submit("is", STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append)
        assert rid is not None
        clock.advance(121)
        client.check_timeouts()
        client.handle_result(answer(rid))
        client.handle_result(answer(rid))
        assert len(emit.of_type("backtest.completed")) == 1
        assert emit.of_type("backtest.completed")[0].data["attempts"] == 2
        assert len(outcomes) == 1 and client.ignored == 1
        assert emit.of_type("backtest.result_ignored")[0].correlation_id == rid

    def test_a_late_answer_after_the_timeout_still_reaches_its_owner_once(self) -> None:
        """After backtest.timeout the owner first hears `timeout`, then the late answer (marked late), once."""
        client, emit, clock, _, outcomes = make()
        rid = client.submit("is", STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append)
        assert rid is not None
        for _ in range(2):
            clock.advance(121)
            client.check_timeouts()
        client.handle_result(answer(rid))
        client.handle_result(answer(rid))
        (late,) = emit.of_type("backtest.completed")
        assert late.data["late"] is True
        assert [o.status for o in outcomes] == ["timeout", "ok"]
        assert len(emit.of_type("backtest.result_ignored")) == 1

    def test_the_strategy_is_the_one_the_request_was_for_not_the_workers_word(self) -> None:
        """Routed by request_id: a worker naming another strategy changes nothing about whose result it is."""
        client, emit, _, _, outcomes = make()
        rid = client.submit("is", STRATEGY, start_ts=None, end_ts=None, on_done=outcomes.append)
        assert rid is not None
        body = result_body(request_id=rid, strategy_name="someone-else", status="ok", metrics=METRICS, bars=1,
                           elapsed_ms=1.0, worker="w1")
        msg = parse([encode(body)], 1 << 20)
        assert isinstance(msg, Message)
        client.handle_result(msg)
        assert emit.of_type("backtest.completed")[0].data["strategy"] == STRATEGY["name"]
        assert outcomes[0].strategy == STRATEGY["name"]


class TestRejections:
    def test_a_result_without_request_id_or_with_bad_metrics_is_rejected(self) -> None:
        """Malformed results are rejections (counted by the dispatcher), never matched by name."""
        client, _, _, _, _ = make()
        bad = parse([encode({"type": "BACKTEST_RESULT", "strategy_name": STRATEGY["name"], "status": "ok"})], 4096)
        assert isinstance(bad, Message)
        assert client.handle_result(bad) is not None
        worse = parse([encode({"type": "BACKTEST_RESULT", "request_id": "x", "status": "ok",
                               "metrics": {"sharpe": "high"}})], 4096)
        assert isinstance(worse, Message)
        rejected = client.handle_result(worse)
        assert rejected is not None and rejected.detail == "metrics.sharpe"
