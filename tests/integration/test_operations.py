"""What operators rely on, on a real daemon: snapshots, /metrics and /healthz, sd_notify, status, secrets."""

from __future__ import annotations

import asyncio
import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import REPO, free_port, read_events, run_cli, wait_until, write_config
from prometheus_client.parser import text_string_to_metric_families

from swimmy.config import load_config
from swimmy.daemon.control import request
from swimmy.wire.zmq import Wire

pytestmark = pytest.mark.slow


def command(config: Path, name: str, **args: Any) -> dict[str, Any]:
    """One control command to the daemon of `config`, as the CLI sends it."""
    cfg = load_config(config)

    async def go() -> dict[str, Any]:
        wire = Wire(cfg.zmq)
        try:
            return await request(wire, cfg.control.endpoint, name, args, timeout_sec=10, curve=False)
        finally:
            wire.close()

    return asyncio.run(go())


def started(tmp_path: Path) -> bool:
    return any(e["event_type"] == "daemon.started" for e in read_events(tmp_path / "var" / "telemetry.jsonl"))


def get(url: str) -> tuple[int, bytes]:
    """(status, body); (0, b"") while nothing listens yet (the HTTP server starts after daemon.started)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError:
        return 0, b""


class TestSnapshots:
    def test_a_reader_in_a_tight_loop_never_sees_a_partial_snapshot(self, tmp_path: Path, daemon_factory: Any) -> None:
        """metrics.json rewritten every 50 ms: every read parses, and the content changes under the reader."""
        config = write_config(tmp_path, {"snapshots": {"interval_sec": 0.05}})
        daemon = daemon_factory(config)
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
        events = read_events(tmp_path / "var" / "telemetry.jsonl")
        snap = next(e for e in events if e["event_type"] == "metrics.snapshot")
        assert snap["data"]["path"] == str(metrics) and snap["data"]["bytes"] > 0
        assert any(e["event_type"] == "status.snapshot" and e["service"] == "shell" for e in events)

    def test_status_is_healthy_while_running_and_not_after_stop(self, tmp_path: Path, daemon_factory: Any) -> None:
        """`swimmy status` exits 0 on a live daemon, 1 once it stopped, 1 with no snapshot at all."""
        config = write_config(tmp_path, {"snapshots": {"interval_sec": 0.2}})
        assert run_cli("status", "--config", str(config)).returncode == 1
        daemon = daemon_factory(config)
        wait_until(lambda: (tmp_path / "var" / "snapshots" / "status.json").exists(), 20, "status.json")
        live = run_cli("status", "--config", str(config))
        assert live.returncode == 0, live.stdout
        assert "swimmy: healthy" in live.stdout and "telemetry:" in live.stdout
        assert daemon.stop() == 0
        after = run_cli("status", "--config", str(config))
        assert after.returncode == 1 and "the daemon stopped" in after.stdout


class TestHttp:
    def test_metrics_parse_and_healthz_turns_503_when_the_writer_is_stuck(
        self, tmp_path: Path, daemon_factory: Any
    ) -> None:
        """/metrics parses with prometheus_client; /healthz is 200 idle, 503 naming the writer when it stalls."""
        port = free_port()
        config = write_config(tmp_path, {"metrics": {"listen": f"127.0.0.1:{port}"}, "debug": {"enabled": True}})
        daemon = daemon_factory(config)
        wait_until(lambda: started(tmp_path), 20, "start")
        base = f"http://127.0.0.1:{port}"
        status, body = wait_until(lambda: (r := get(f"{base}/healthz")) and r[0] == 200 and r, 20, "healthy")
        assert orjson.loads(body) == {"status": "ok"}
        status, body = get(f"{base}/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert families["swimmy_up"].samples[0].value == 1
        assert "swimmy_telemetry_events_written" in families
        ranks = {s.labels["rank"] for s in families["swimmy_strategies"].samples}
        assert ranks == {"incubator", "B", "A", "S", "graveyard"}
        assert run_cli("heartbeat", "now", "--config", str(config)).returncode == 0
        assert command(config, "debug.stall_writer", seconds=7)["ok"]
        run_cli("heartbeat", "now", "--config", str(config))  # give the writer something to be stuck on
        status, body = wait_until(lambda: (r := get(f"{base}/healthz")) and r[0] == 503 and r, 20, "503")
        reasons = orjson.loads(body)["reasons"]
        assert any("telemetry-writer" in r for r in reasons)
        assert daemon.stop() == 0


    def test_readyz_names_the_degraded_reasons_while_healthz_stays_200(
        self, tmp_path: Path, daemon_factory: Any
    ) -> None:
        """No worker connected: /readyz 503 with the same reason as `swimmy status`; /healthz 200; a worker: 200."""
        port = free_port()
        config = write_config(tmp_path, {"metrics": {"listen": f"127.0.0.1:{port}"},
                                         "backtest": {"worker_timeout_sec": 1}, "snapshots": {"interval_sec": 0.2}})
        daemon = daemon_factory(config)
        wait_until(lambda: started(tmp_path), 20, "start")
        base = f"http://127.0.0.1:{port}"
        _, body = wait_until(lambda: (r := get(f"{base}/readyz")) and r[0] == 503 and r, 20, "not ready")
        reasons = orjson.loads(body)["reasons"]
        assert reasons == ["no backtest worker connected: the school waits (start a worker, or check "
                           "zmq.backtest_endpoint and its keys)"]
        assert get(f"{base}/healthz")[0] == 200, "alive, only not doing its job: no restart would help"
        result = wait_until(lambda: (r := run_cli("status", "--config", str(config))).returncode == 1 and r, 10,
                            "status to say so")
        assert "no backtest worker connected" in result.stdout
        worker = subprocess.Popen([sys.executable, "-m", "swimmy", "worker", "--config", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _, body = wait_until(lambda: (r := get(f"{base}/readyz")) and r[0] == 200 and r, 30, "ready")
            assert orjson.loads(body) == {"status": "ready"}
        finally:
            worker.kill()
            worker.wait(10)
        assert daemon.stop() == 0


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def count(self, prefix: str) -> int:
        return sum(1 for m in list(self.messages) if m.startswith(prefix) or f"\n{prefix}" in m)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class TestSystemdNotify:
    def test_ready_watchdog_stall_reload_and_stop(self, tmp_path: Path, daemon_factory: Any) -> None:
        """READY=1 once; WATCHDOG=1 pings that stop while the loop is wedged; RELOADING then READY; STOPPING."""
        notify = NotifySocket(tmp_path / "notify.sock")
        try:
            config = write_config(tmp_path, {"debug": {"enabled": True}})
            daemon = daemon_factory(config, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                                                 "WATCHDOG_USEC": "2000000"})
            wait_until(lambda: notify.count("WATCHDOG=1") >= 2, 20, "two watchdog pings")
            assert notify.count("READY=1") == 1
            assert any(m.startswith("READY=1\nSTATUS=OK") for m in notify.messages)

            before = notify.count("WATCHDOG=1")
            thread = threading.Thread(target=lambda: command(config, "debug.block_loop", seconds=3))
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
        self, tmp_path: Path, daemon_factory: Any
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
            daemon = daemon_factory(config, env=env)
            wait_until(lambda: started(tmp_path), 20, "start")
            assert run_cli("heartbeat", "now", "--config", str(config), env=env).returncode == 0
            telemetry = tmp_path / "var" / "telemetry.jsonl"
            wait_until(lambda: len([e for e in read_events(telemetry) if e["event_type"] == "discord.failed"]) >= 2,
                       30, "both deliveries to fail")
            check = run_cli("config", "check", "--config", str(config), env=env)
            assert daemon.stop() == 0
            everything = telemetry.read_text() + daemon.stdout + daemon.stderr + check.stdout + check.stderr
            for snapshot in (tmp_path / "var" / "snapshots").glob("*.json"):
                everything += snapshot.read_text()
            assert "SECRET-TOKEN" not in everything
            failed = [e for e in read_events(telemetry) if e["event_type"] == "discord.failed"]
            assert {e["data"].get("status_code") for e in failed} >= {404}
        finally:
            server.shutdown()
            server.server_close()


class TestPausedUniverse:
    def test_a_broken_universe_is_a_degraded_reason_and_the_others_go_on(
        self, tmp_path: Path, daemon_factory: Any
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
        port = free_port()
        config = write_config(tmp_path, {"metrics": {"listen": f"127.0.0.1:{port}"},
                                         "school": {"data_dir": str(data), "symbols": ["EURUSD", "GBPUSD"]}})
        daemon = daemon_factory(config)
        (invalid,) = wait_until(lambda: [e for e in read_events(tmp_path / "var" / "telemetry.jsonl")
                                         if e["event_type"] == "data.invalid"], 20, "data.invalid")
        assert invalid["data"]["universe"] == "GBPUSD_H1"
        assert f"{data}/GBPUSD_H1.csv:11: bad number in close: 'oops'" in invalid["data"]["error"]
        _, body = wait_until(lambda: (r := get(f"http://127.0.0.1:{port}/readyz")) and r[0] == 503 and r, 20,
                             "not ready")
        assert any(r.startswith("universe GBPUSD_H1 paused: ") for r in orjson.loads(body)["reasons"])
        assert daemon.stop() == 0
