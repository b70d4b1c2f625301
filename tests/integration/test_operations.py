"""What operators rely on, on a real daemon: snapshots, /metrics and /healthz, sd_notify, status, secrets."""

from __future__ import annotations

import http.server
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import REPO, free_port, run_cli, wait_until, write_config
from integration.kit import StartDaemon, WorkerProcess
from prometheus_client.parser import text_string_to_metric_families

from swimmy.testing import NotifySocket

pytestmark = pytest.mark.slow


class TestSnapshots:
    def test_a_reader_in_a_tight_loop_never_sees_a_partial_snapshot(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """metrics.json rewritten every 50 ms: every read parses, and the content changes under the reader."""
        daemon = start_daemon(write_config(tmp_path, {"snapshots": {"interval_sec": 0.05}}))
        metrics = tmp_path / "var" / "snapshots" / "metrics.json"
        wait_until(metrics.exists, 20, "the first snapshot")
        seen: set[str] = set()
        reads = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            body = orjson.loads(metrics.read_bytes())  # raises on a partial file
            assert body["schema_version"] == 1
            seen.add(body["timestamp"])
            reads += 1
        assert reads > 200 and len(seen) > 20
        assert daemon.stop() == 0
        events = daemon.events()
        snap = next(e for e in events if e["event_type"] == "metrics.snapshot")
        assert snap["data"]["path"] == str(metrics) and snap["data"]["bytes"] > 0
        assert any(e["event_type"] == "status.snapshot" and e["service"] == "shell" for e in events)

    def test_status_is_healthy_while_running_and_not_after_stop(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """`swimmy status` exits 0 on a live daemon, 1 once it stopped, 1 with no snapshot at all."""
        config = write_config(tmp_path, {"snapshots": {"interval_sec": 0.2}})
        assert run_cli("status", "--config", str(config)).returncode == 1
        daemon = start_daemon(config)
        wait_until(lambda: (tmp_path / "var" / "snapshots" / "status.json").exists(), 20, "status.json")
        live = daemon.cli("status")
        assert live.returncode == 0, live.stdout
        assert "swimmy: healthy" in live.stdout and "telemetry:" in live.stdout
        assert daemon.stop() == 0
        after = daemon.cli("status")
        assert after.returncode == 1 and "the daemon stopped" in after.stdout


class TestHttp:
    def test_metrics_parse_and_healthz_turns_503_when_the_writer_is_stuck(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """/metrics parses with prometheus_client; /healthz is 200 idle, 503 naming the writer when it stalls."""
        daemon = start_daemon(write_config(tmp_path, {"metrics": {"listen": f"127.0.0.1:{free_port()}"},
                                                      "debug": {"enabled": True}}))
        daemon.wait_started()
        body = daemon.wait_http("/healthz", 200)
        assert orjson.loads(body) == {"status": "ok"}
        status, body = daemon.http_get("/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert families["swimmy_up"].samples[0].value == 1
        assert "swimmy_telemetry_events_written" in families
        ranks = {s.labels["rank"] for s in families["swimmy_strategies"].samples}
        assert ranks == {"incubator", "B", "A", "S", "graveyard"}
        assert daemon.cli("heartbeat", "now").returncode == 0
        assert daemon.command("debug.stall_writer", seconds=7)["ok"]
        daemon.cli("heartbeat", "now")  # give the writer something to be stuck on
        body = daemon.wait_http("/healthz", 503)
        reasons = orjson.loads(body)["reasons"]
        assert any("telemetry-writer" in r for r in reasons)
        assert daemon.stop() == 0


    def test_readyz_names_the_degraded_reasons_while_healthz_stays_200(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """No worker connected: /readyz 503 with the same reason as `swimmy status`; /healthz 200; a worker: 200."""
        daemon = start_daemon(write_config(tmp_path, {"metrics": {"listen": f"127.0.0.1:{free_port()}"},
                                                      "backtest": {"worker_timeout_sec": 1},
                                                      "snapshots": {"interval_sec": 0.2}}))
        daemon.wait_started()
        body = daemon.wait_http("/readyz", 503)
        reasons = orjson.loads(body)["reasons"]
        assert reasons == ["no backtest worker connected: the school waits (start a worker, or check "
                           "zmq.backtest_endpoint and its keys)"]
        assert daemon.http_get("/healthz")[0] == 200, "alive, only not doing its job: no restart would help"
        result = wait_until(lambda: (r := daemon.cli("status")).returncode == 1 and r, 10, "status to say so")
        assert "no backtest worker connected" in result.stdout
        worker = WorkerProcess(daemon.config)
        try:
            body = daemon.wait_http("/readyz", 200, timeout=30)
            assert orjson.loads(body) == {"status": "ready"}
        finally:
            worker.stop()
        assert daemon.stop() == 0


class TestSystemdNotify:
    def test_ready_watchdog_stall_reload_and_stop(self, tmp_path: Path, start_daemon: StartDaemon) -> None:
        """READY=1 once; WATCHDOG=1 pings that stop while the loop is wedged; RELOADING then READY; STOPPING."""
        notify = NotifySocket(tmp_path / "notify.sock")
        try:
            daemon = start_daemon(write_config(tmp_path, {"debug": {"enabled": True}}),
                                  env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000"})
            wait_until(lambda: notify.count("WATCHDOG=1") >= 2, 20, "two watchdog pings")
            assert notify.count("READY=1") == 1
            assert any(m.startswith("READY=1\nSTATUS=OK") for m in notify.messages)

            before = notify.count("WATCHDOG=1")
            thread = threading.Thread(target=lambda: daemon.command("debug.block_loop", seconds=3))
            thread.start()
            time.sleep(2.5)  # inside the 3 s wedge: no ping may arrive (the interval is 1 s)
            assert notify.count("WATCHDOG=1") <= before + 1  # at most one that left just before the wedge
            wedged = notify.count("WATCHDOG=1")
            time.sleep(0.4)
            assert notify.count("WATCHDOG=1") == wedged
            thread.join()
            wait_until(lambda: notify.count("WATCHDOG=1") > wedged, 10, "pings again after the wedge")

            daemon.signal(signal.SIGHUP)
            wait_until(lambda: notify.count("RELOADING=1") == 1 and notify.count("READY=1") == 2, 10, "reload")
            reloading = next(i for i, m in enumerate(notify.messages) if m.startswith("RELOADING=1"))
            assert any(m.startswith("READY=1") for m in notify.messages[reloading:])
            assert "MONOTONIC_USEC=" in notify.messages[reloading]
            assert daemon.stop() == 0
            assert notify.count("STOPPING=1") == 1
        finally:
            notify.close()


class TestSecrets:
    def test_the_webhook_url_never_appears_in_the_stream_the_log_or_the_console(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """A webhook that answers 404 and one on a closed port: failures reported, the token nowhere."""
        class NotFound(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = b'{"message": "Unknown Webhook SECRET-TOKEN-xyz", "code": 10015}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            hook = f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/1/SECRET-TOKEN-xyz"
            dead = f"http://127.0.0.1:{free_port()}/api/webhooks/2/SECRET-TOKEN-xyz"
            config = write_config(tmp_path, {"discord": {"alert_cooldown_sec": 0}})
            env = {"SWIMMY_DISCORD_HEARTBEAT": hook, "SWIMMY_DISCORD_ALERTS": dead}
            daemon = start_daemon(config, env=env)
            daemon.wait_started()
            assert daemon.cli("heartbeat", "now", env=env).returncode == 0
            daemon.wait_for("discord.failed", count=2, timeout=30)  # both deliveries
            check = daemon.cli("config", "check", env=env)
            assert daemon.stop() == 0
            everything = daemon.telemetry.read_text() + daemon.stdout + daemon.stderr + check.stdout + check.stderr
            for snapshot in (tmp_path / "var" / "snapshots").glob("*.json"):
                everything += snapshot.read_text()
            assert "SECRET-TOKEN" not in everything
            failed = daemon.events("discord.failed")
            assert {e["data"].get("status_code") for e in failed} >= {404}
        finally:
            server.shutdown()
            server.server_close()


class TestPausedUniverse:
    def test_a_broken_universe_is_a_degraded_reason_and_the_others_go_on(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """One good and one broken file: the daemon runs, data.invalid names file and line, /readyz says why."""
        data = tmp_path / "data"
        data.mkdir()
        sample = REPO / "data" / "eurusd-h1-2017" / "EURUSD_H1.csv"
        (data / "EURUSD_H1.csv").write_bytes(sample.read_bytes())
        lines = sample.read_text().splitlines()
        fields = lines[10].split(",")
        fields[4] = "oops"  # the close
        lines[10] = ",".join(fields)
        (data / "GBPUSD_H1.csv").write_text("\n".join(lines) + "\n")
        daemon = start_daemon(write_config(tmp_path, {"metrics": {"listen": f"127.0.0.1:{free_port()}"},
                                                      "school": {"data_dir": str(data),
                                                                 "symbols": ["EURUSD", "GBPUSD"]}}))
        (invalid,) = daemon.wait_for("data.invalid", timeout=20)
        assert invalid["data"]["universe"] == "GBPUSD_H1"
        assert f"{data}/GBPUSD_H1.csv:11: bad number in close: 'oops'" in invalid["data"]["error"]
        body = daemon.wait_http("/readyz", 503)
        assert any(r.startswith("universe GBPUSD_H1 paused: ") for r in orjson.loads(body)["reasons"])
        assert daemon.stop() == 0
