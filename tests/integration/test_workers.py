"""Embedded workers end to end: real worker processes, the shipped data, kills, timeouts and restarts."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until
from integration.kit import StartFleet

pytestmark = pytest.mark.slow

SMA = {"name": "sma-test", "family": "sma_cross", "params": {"fast": 10, "slow": 30}, "symbol": "EURUSD",
       "timeframe": "H1", "sl_pips": 0, "tp_pips": 0}


class TestEndToEnd:
    def test_a_backtest_through_a_real_worker(self, start_fleet: StartFleet) -> None:
        """daemon -> embedded worker -> result: backtest.completed with the metrics, matched by request_id."""
        daemon = start_fleet(1, heartbeat_acked=True, heartbeat={"interval_sec": 0.2})
        rid = daemon.submit(SMA)
        (done,) = daemon.wait_for("backtest.completed", timeout=20, request_id=rid)
        assert done["correlation_id"] == rid
        assert done["data"]["status"] == "ok" and done["data"]["trades"] > 0
        assert isinstance(done["data"]["sharpe"], float)
        assert done["data"]["worker"] == "embedded-1"
        # workers being started at start-up are not "none alive": the first heartbeat is OK, not DEGRADED
        assert daemon.events("heartbeat.sent")[0]["data"]["status"] == "OK"
        assert daemon.stop() == 0

    def test_embedded_workers_reach_the_daemon_through_its_private_unix_socket(self, start_fleet: StartFleet) -> None:
        """worker.started names the ipc endpoint, in a 0700 directory of the daemon's; work flows; stop removes it."""
        daemon = start_fleet(1, heartbeat_acked=True, heartbeat={"interval_sec": 0.2})
        endpoint = daemon.events("worker.started")[0]["data"]["endpoint"]
        assert endpoint.startswith("ipc://") and endpoint.endswith("/work.sock")
        folder = Path(endpoint.removeprefix("ipc://")).parent
        assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700
        rid = daemon.submit(SMA)
        (done,) = daemon.wait_for("backtest.completed", timeout=20, request_id=rid)
        assert done["data"]["status"] == "ok" and done["data"]["worker"] == "embedded-1"
        assert daemon.stop() == 0
        assert not folder.exists()

    @pytest.mark.parametrize(
        ("strategy", "extra", "reason"),
        [
            ({**SMA, "family": "martingale"}, {}, "unknown strategy family 'martingale'"),
            (SMA, {"start_ts": 1_000_000_000, "end_ts": 1_000_003_600}, "no bars"),
        ],
    )
    def test_a_request_the_worker_cannot_serve_gets_an_error_result(
        self, start_fleet: StartFleet, strategy: dict[str, Any], extra: dict[str, Any], reason: str
    ) -> None:
        """Missing symbol, bad family, a range with no bars: an error result with the reason, never silence."""
        daemon = start_fleet(1, heartbeat_acked=True, heartbeat={"interval_sec": 0.2})
        rid = daemon.submit(strategy, **extra)
        (done,) = daemon.wait_for("backtest.completed", timeout=20, request_id=rid)
        assert done["severity"] == "error" and done["data"]["status"] == "error"
        assert reason in done["data"]["error"]
        assert done["data"]["sharpe"] is None
        assert daemon.stop() == 0


class TestFailures:
    def test_a_worker_killed_mid_request_is_restarted_and_the_request_requeued_and_answered(
        self, start_fleet: StartFleet
    ) -> None:
        """Kill -9 mid-backtest: worker.exited, the request re-queued at once (not after a timeout), answered."""
        daemon = start_fleet(1, heartbeat_acked=True, heartbeat={"interval_sec": 0.2})
        pid = daemon.events("worker.started")[0]["data"]["pid"]
        rid = daemon.submit(SMA, debug={"sleep_sec": 1.5})
        time.sleep(0.4)  # the worker has taken the request and is inside its (slowed) backtest
        os.kill(pid, signal.SIGKILL)
        (exited,) = daemon.wait_for("worker.exited", timeout=10)
        assert exited["severity"] == "error" and exited["data"]["exit_code"] == -9
        (requeued,) = daemon.wait_for("backtest.requeued", timeout=10, request_id=rid)
        assert requeued["data"]["worker"] == "embedded-1" and "exited with code -9" in requeued["data"]["reason"]
        assert not daemon.events("backtest.completed", request_id=rid), "a lost request was counted as done"
        (done,) = daemon.wait_for("backtest.completed", timeout=20, request_id=rid)  # the re-sent request
        assert done["data"]["status"] == "ok" and done["seq"] > requeued["seq"]
        new_pids = {e["data"]["pid"] for e in daemon.events("worker.started")} - {pid}
        assert len(new_pids) == 1
        assert daemon.stop() == 0
        for p in [pid, *new_pids]:
            with pytest.raises(ProcessLookupError):
                os.kill(p, 0)

    def test_a_request_that_times_out_twice_gives_backtest_timeout(self, start_fleet: StartFleet) -> None:
        """No answer within timeout_sec twice: backtest.timeout; the late answer is marked late, its copy ignored."""
        daemon = start_fleet(1, heartbeat_acked=True, heartbeat={"interval_sec": 0.2}, backtest={"timeout_sec": 1})
        rid = daemon.submit(SMA, debug={"sleep_sec": 3.5})
        (timeout,) = daemon.wait_for("backtest.timeout", timeout=20, request_id=rid)
        assert timeout["data"]["attempts"] == 2 and timeout["severity"] == "warning"
        (late,) = daemon.wait_for("backtest.completed", timeout=20, request_id=rid)  # the late answer
        assert late["data"]["late"] is True and late["seq"] > timeout["seq"]
        daemon.wait_for("backtest.result_ignored", timeout=20, request_id=rid)  # the resend's answer
        assert daemon.stop() == 0

    def test_heartbeat_is_degraded_while_no_embedded_worker_is_alive(
        self, start_fleet: StartFleet
    ) -> None:
        """Kill the only worker: the next heartbeats say DEGRADED until it is back."""
        daemon = start_fleet(1, heartbeat_acked=True, heartbeat={"interval_sec": 0.1})
        with daemon.heartbeats() as heartbeats:
            pid = daemon.events("worker.started")[0]["data"]["pid"]
            os.kill(pid, signal.SIGKILL)
            statuses = set()
            for _ in range(40):
                statuses.add(heartbeats.receive()["status"])
                if "DEGRADED" in statuses:
                    break
            assert "DEGRADED" in statuses
        assert daemon.stop() == 0


class TestOrphans:
    def test_embedded_workers_follow_a_daemon_killed_without_warning(
        self, start_fleet: StartFleet
    ) -> None:
        """kill -9 of the daemon: its embedded worker exits by itself instead of lingering as an orphan."""
        daemon = start_fleet(1, heartbeat_acked=True, heartbeat={"interval_sec": 0.2})
        pid = daemon.events("worker.started")[0]["data"]["pid"]
        daemon.proc.kill()
        daemon.proc.wait(10)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(gone, 15, "the orphaned worker to exit")
