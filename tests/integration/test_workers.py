"""Embedded workers end to end: real worker processes, the shipped data, kills, timeouts and restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
from helpers import read_events, wait_until, write_config

from swimmy.config import load_config
from swimmy.daemon.control import request
from swimmy.wire.zmq import Wire

pytestmark = pytest.mark.slow

SMA = {"name": "sma-test", "family": "sma_cross", "params": {"fast": 10, "slow": 30}, "symbol": "EURUSD",
       "timeframe": "H1", "sl_pips": 0, "tp_pips": 0}


def events(tmp_path: Path, event_type: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in read_events(tmp_path / "var" / "telemetry.jsonl")
            if e["event_type"] == event_type and all(e["data"].get(k) == v for k, v in match.items())]


def submit(config: Path, strategy: dict[str, Any], **args: Any) -> str:
    cfg = load_config(config)

    async def go() -> dict[str, Any]:
        wire = Wire(cfg.zmq)
        try:
            return await request(wire, cfg.control.endpoint, "backtest.submit", {"strategy": strategy, **args},
                                 timeout_sec=10, curve=False)
        finally:
            wire.close()

    reply = asyncio.run(go())
    assert reply["ok"], reply
    return str(reply["result"]["request_id"])


def start(tmp_path: Path, daemon_factory: Any, workers: int = 1, **sections: dict[str, Any]) -> tuple[Path, Any]:
    config = write_config(tmp_path, {"workers": {"embedded": workers}, "debug": {"enabled": True}, **sections})
    daemon = daemon_factory(config)
    wait_until(lambda: len(events(tmp_path, "worker.started")) >= workers, 20, "workers to start")
    # a worker that has started still has to connect: wait until each one acks a heartbeat and has sent
    # READY on the work socket (the two sockets connect independently: an ack alone does not mean that
    # the broker can give it work, and a submit would then be refused)
    wait_until(lambda: len({e["data"]["source"] for e in events(tmp_path, "heartbeat.recv")}) >= workers, 30,
               "every worker to ack a heartbeat")
    wait_until(lambda: len({e["data"]["worker"] for e in events(tmp_path, "worker.ready")}) >= workers, 30,
               "every worker's READY")
    return config, daemon


class TestEndToEnd:
    def test_a_backtest_through_a_real_worker(self, tmp_path: Path, daemon_factory: Any) -> None:
        """daemon -> embedded worker -> result: backtest.completed with the metrics, matched by request_id."""
        config, daemon = start(tmp_path, daemon_factory, heartbeat={"interval_sec": 0.2})
        rid = submit(config, SMA)
        (done,) = wait_until(lambda: events(tmp_path, "backtest.completed", request_id=rid), 20, "the result")
        assert done["correlation_id"] == rid
        assert done["data"]["status"] == "ok" and done["data"]["trades"] > 0
        assert isinstance(done["data"]["sharpe"], float)
        assert done["data"]["worker"] == "embedded-1"
        # workers being started at start-up are not "none alive": the first heartbeat is OK, not DEGRADED
        assert events(tmp_path, "heartbeat.sent")[0]["data"]["status"] == "OK"
        assert daemon.stop() == 0

    @pytest.mark.parametrize(
        ("strategy", "extra", "reason"),
        [
            ({**SMA, "family": "martingale"}, {}, "unknown strategy family 'martingale'"),
            (SMA, {"start_ts": 1_000_000_000, "end_ts": 1_000_003_600}, "no bars"),
        ],
    )
    def test_a_request_the_worker_cannot_serve_gets_an_error_result(
        self, tmp_path: Path, daemon_factory: Any, strategy: dict[str, Any], extra: dict[str, Any], reason: str
    ) -> None:
        """Missing symbol, bad family, a range with no bars: an error result with the reason, never silence."""
        config, daemon = start(tmp_path, daemon_factory, heartbeat={"interval_sec": 0.2})
        rid = submit(config, strategy, **extra)
        (done,) = wait_until(lambda: events(tmp_path, "backtest.completed", request_id=rid), 20, "the answer")
        assert done["severity"] == "error" and done["data"]["status"] == "error"
        assert reason in done["data"]["error"]
        assert done["data"]["sharpe"] is None
        assert daemon.stop() == 0


class TestFailures:
    def test_a_worker_killed_mid_request_is_restarted_and_the_request_requeued_and_answered(
        self, tmp_path: Path, daemon_factory: Any
    ) -> None:
        """Kill -9 mid-backtest: worker.exited, the request re-queued at once (not after a timeout), answered."""
        config, daemon = start(tmp_path, daemon_factory, heartbeat={"interval_sec": 0.2})
        pid = events(tmp_path, "worker.started")[0]["data"]["pid"]
        rid = submit(config, SMA, debug={"sleep_sec": 1.5})
        time.sleep(0.4)  # the worker has taken the request and is inside its (slowed) backtest
        os.kill(pid, signal.SIGKILL)
        (exited,) = wait_until(lambda: events(tmp_path, "worker.exited"), 10, "worker.exited")
        assert exited["severity"] == "error" and exited["data"]["exit_code"] == -9
        (requeued,) = wait_until(lambda: events(tmp_path, "backtest.requeued", request_id=rid), 10, "requeued")
        assert requeued["data"]["worker"] == "embedded-1" and "exited with code -9" in requeued["data"]["reason"]
        assert not events(tmp_path, "backtest.completed", request_id=rid), "a lost request was counted as done"
        (done,) = wait_until(lambda: events(tmp_path, "backtest.completed", request_id=rid), 20, "the re-sent request")
        assert done["data"]["status"] == "ok" and done["seq"] > requeued["seq"]
        new_pids = {e["data"]["pid"] for e in events(tmp_path, "worker.started")} - {pid}
        assert len(new_pids) == 1
        assert daemon.stop() == 0
        for p in [pid, *new_pids]:
            with pytest.raises(ProcessLookupError):
                os.kill(p, 0)

    def test_a_request_that_times_out_twice_gives_backtest_timeout(self, tmp_path: Path, daemon_factory: Any) -> None:
        """No answer within timeout_sec twice: backtest.timeout; the late answer is marked late, its copy ignored."""
        config, daemon = start(tmp_path, daemon_factory, heartbeat={"interval_sec": 0.2},
                               backtest={"timeout_sec": 1})
        rid = submit(config, SMA, debug={"sleep_sec": 3.5})
        (timeout,) = wait_until(lambda: events(tmp_path, "backtest.timeout", request_id=rid), 20, "backtest.timeout")
        assert timeout["data"]["attempts"] == 2 and timeout["severity"] == "warning"
        (late,) = wait_until(lambda: events(tmp_path, "backtest.completed", request_id=rid), 20, "the late answer")
        assert late["data"]["late"] is True and late["seq"] > timeout["seq"]
        wait_until(lambda: events(tmp_path, "backtest.result_ignored", request_id=rid), 20, "the resend's answer")
        assert daemon.stop() == 0

    def test_heartbeat_is_degraded_while_no_embedded_worker_is_alive(
        self, tmp_path: Path, daemon_factory: Any
    ) -> None:
        """Kill the only worker: the next heartbeats say DEGRADED until it is back."""
        config, daemon = start(tmp_path, daemon_factory, heartbeat={"interval_sec": 0.1})
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"HEARTBEAT")
        sub.setsockopt(zmq.RCVTIMEO, 5000)
        sub.connect(load_config(config).zmq.pub_endpoint)
        try:
            pid = events(tmp_path, "worker.started")[0]["data"]["pid"]
            os.kill(pid, signal.SIGKILL)
            statuses = set()
            for _ in range(40):
                statuses.add(orjson.loads(sub.recv_multipart()[1])["status"])
                if "DEGRADED" in statuses:
                    break
            assert "DEGRADED" in statuses
        finally:
            sub.close(linger=0)
            ctx.term()
        assert daemon.stop() == 0


class TestOrphans:
    def test_embedded_workers_follow_a_daemon_killed_without_warning(
        self, tmp_path: Path, daemon_factory: Any
    ) -> None:
        """kill -9 of the daemon: its embedded worker exits by itself instead of lingering as an orphan."""
        _, daemon = start(tmp_path, daemon_factory, heartbeat={"interval_sec": 0.2})
        pid = events(tmp_path, "worker.started")[0]["data"]["pid"]
        daemon.proc.kill()
        daemon.proc.wait(10)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(gone, 15, "the orphaned worker to exit")
