"""`swimmy run` as a real subprocess: drain on stop, locks, signals, exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from helpers import read_all_events, read_events, run_cli, wait_until, write_config

from swimmy.config import load_config
from swimmy.daemon.control import request
from swimmy.wire.zmq import Wire

pytestmark = pytest.mark.slow


def events_of(path: Path, event_type: str) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if e["event_type"] == event_type]


class TestStop:
    def test_sigterm_with_a_burst_still_queued_writes_every_event_without_a_gap(
        self, tmp_path: Path, daemon_factory: Any
    ) -> None:
        """100,000 queued events survive SIGTERM: all written, seq contiguous, exit 0."""
        config = write_config(tmp_path, {"debug": {"burst_on_start": 100_000}})
        telemetry = tmp_path / "var" / "telemetry.jsonl"
        daemon = daemon_factory(config)
        wait_until(lambda: telemetry.exists() and telemetry.stat().st_size > 0, 20, "the first line")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, daemon.stderr
        events = read_all_events(telemetry)
        burst = [e["data"]["i"] for e in events if e["event_type"] == "debug.burst"]
        assert sorted(burst) == list(range(100_000))
        seq = sorted(e["seq"] for e in events)
        assert seq == list(range(1, len(events) + 1))
        (stopping,) = [e for e in events if e["event_type"] == "daemon.stopping"]
        assert stopping["data"]["reason"] == "SIGTERM"
        assert stopping["data"]["queued"] > 0, "SIGTERM arrived after the queue had drained: the test proved nothing"
        (stopped,) = [e for e in events if e["event_type"] == "daemon.stopped"]
        assert stopped["data"]["events_written"] == len(events) - 1
        assert events[-1]["event_type"] == "daemon.stopped"

    def test_exit_after_stops_cleanly(self, tmp_path: Path, daemon_factory: Any) -> None:
        """--exit-after stops by itself with exit 0, and the stream says why."""
        config = write_config(tmp_path)
        daemon = daemon_factory(config, "--exit-after", "0.5")
        assert daemon.wait(30) == 0, daemon.stderr
        events = read_events(tmp_path / "var" / "telemetry.jsonl")
        types = [e["event_type"] for e in events]
        assert types[0] == "daemon.started"
        assert types[-1] == "daemon.stopped"
        assert types.index("daemon.stopping") < types.index("daemon.stopped")
        started = events[0]
        assert started["correlation_id"] == started["run_id"]
        assert started["data"]["config_path"] == str(config)
        assert {"version", "config_hash", "pid", "workers"} <= set(started["data"])
        assert events[-1]["data"]["reason"] == "exit_after"

    def test_log_lines_reach_the_file_and_stderr(self, tmp_path: Path, daemon_factory: Any) -> None:
        """structlog events are `log_type: "log"` lines in the file and readable lines on stderr."""
        daemon = daemon_factory(write_config(tmp_path), "--exit-after", "0.3")
        assert daemon.wait(30) == 0
        logs = [e for e in read_events(tmp_path / "var" / "telemetry.jsonl") if e["log_type"] == "log"]
        started = next(e for e in logs if e["data"]["message"] == "swimmy started")
        assert started["event_type"] == "log"
        assert started["data"]["logger"] == "swimmy.daemon"
        assert started["severity"] == "info"
        assert "swimmy started" in daemon.stderr


class TestLocks:
    def test_second_process_on_the_same_telemetry_path_exits_2_naming_the_lock(
        self, tmp_path: Path, daemon_factory: Any
    ) -> None:
        """One writer per file: a second daemon with the same path refuses to start."""
        first = daemon_factory(write_config(tmp_path, name="a.toml"))
        telemetry = tmp_path / "var" / "telemetry.jsonl"
        wait_until(lambda: events_of(telemetry, "daemon.started"), 20, "the first daemon")
        other = tmp_path / "other"
        other.mkdir()
        second_cfg = write_config(other, {"telemetry": {"path": str(telemetry)}})
        second = daemon_factory(second_cfg)
        assert second.wait(30) == 2
        assert f"{telemetry}.lock" in second.stderr
        assert "telemetry path" in second.stderr
        assert first.stop() == 0
        assert len(events_of(telemetry, "daemon.started")) == 1

    def test_second_process_on_the_same_database_exits_2_naming_the_lock(
        self, tmp_path: Path, daemon_factory: Any
    ) -> None:
        """The school database is locked too."""
        first = daemon_factory(write_config(tmp_path))
        wait_until(lambda: events_of(tmp_path / "var" / "telemetry.jsonl", "daemon.started"), 20, "first daemon")
        other = tmp_path / "other"
        other.mkdir()
        db = tmp_path / "var" / "school.db"
        second = daemon_factory(write_config(other, {"school": {"db_path": str(db)}}))
        assert second.wait(30) == 2
        assert f"{db}.lock" in second.stderr
        assert not (other / "var" / "telemetry.jsonl").exists() or not read_events(other / "var" / "telemetry.jsonl")
        assert first.stop() == 0


class TestSignals:
    def test_sighup_reloads_reloadable_keys_and_reports_the_rest(self, tmp_path: Path, daemon_factory: Any) -> None:
        """SIGHUP: config.reloaded lists the applied keys and those that need a restart."""
        config = write_config(tmp_path)
        telemetry = tmp_path / "var" / "telemetry.jsonl"
        daemon = daemon_factory(config)
        wait_until(lambda: events_of(telemetry, "daemon.started"), 20, "start")
        text = config.read_text()
        config.write_text(
            text.replace("[telemetry]\n", '[telemetry]\nlog_level = "debug"\n').replace(
                "[workers]\nembedded = 0", "[workers]\nembedded = 3"
            )
            + "\n[heartbeat]\ninterval_sec = 2\n"
        )
        daemon.signal(signal.SIGHUP)
        (reloaded,) = wait_until(lambda: events_of(telemetry, "config.reloaded"), 20, "config.reloaded")
        assert reloaded["data"]["changed"] == ["heartbeat.interval_sec", "telemetry.log_level"]
        assert reloaded["data"]["needs_restart"] == ["workers.embedded"]
        assert daemon.stop() == 0

    def test_sighup_with_an_invalid_file_keeps_the_old_config(self, tmp_path: Path, daemon_factory: Any) -> None:
        """An invalid file on reload gives config.reload_failed naming the key; the daemon runs on."""
        config = write_config(tmp_path)
        telemetry = tmp_path / "var" / "telemetry.jsonl"
        daemon = daemon_factory(config)
        wait_until(lambda: events_of(telemetry, "daemon.started"), 20, "start")
        config.write_text(config.read_text() + "\n[wfv]\nmax_pending = -1\n")
        daemon.signal(signal.SIGHUP)
        (failed,) = wait_until(lambda: events_of(telemetry, "config.reload_failed"), 20, "reload_failed")
        assert failed["severity"] == "error"
        assert "wfv.max_pending: must be >= 0, got -1" in failed["data"]["error"]
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0

    def test_sighup_reopens_a_file_moved_away_by_logrotate(self, tmp_path: Path, daemon_factory: Any) -> None:
        """External logrotate: mv the file, SIGHUP, and the new file starts with telemetry.rotated."""
        config = write_config(tmp_path)
        telemetry = tmp_path / "var" / "telemetry.jsonl"
        daemon = daemon_factory(config)
        wait_until(lambda: events_of(telemetry, "daemon.started"), 20, "start")
        os.replace(telemetry, tmp_path / "var" / "rotated-by-logrotate.jsonl")
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: events_of(telemetry, "config.reloaded"), 20, "config.reloaded in the new file")
        assert daemon.stop() == 0
        events = read_events(telemetry)
        assert events[0]["event_type"] == "telemetry.rotated"
        assert events[0]["data"]["external"] is True

    def test_sigusr1_dumps_every_task(self, tmp_path: Path, daemon_factory: Any) -> None:
        """SIGUSR1 writes debug.task_dump with each task's name and stack."""
        config = write_config(tmp_path)
        telemetry = tmp_path / "var" / "telemetry.jsonl"
        daemon = daemon_factory(config)
        wait_until(lambda: events_of(telemetry, "daemon.started"), 20, "start")
        daemon.signal(signal.SIGUSR1)
        (dump,) = wait_until(lambda: events_of(telemetry, "debug.task_dump"), 20, "task dump")
        assert dump["data"]["reason"] == "SIGUSR1"
        names = {t["name"] for t in dump["data"]["tasks"]}
        assert {"supervisor", "telemetry-writer"} <= names
        writer = next(t for t in dump["data"]["tasks"] if t["name"] == "telemetry-writer")
        assert any("writer.py" in frame for frame in writer["stack"])
        assert daemon.stop() == 0


class TestLoopLag:
    def test_a_wedged_loop_writes_a_task_dump_naming_the_blocker(self, tmp_path: Path, daemon_factory: Any) -> None:
        """debug.block_loop for 1.5 s: debug.task_dump (loop_lag) with the blocking stack; the daemon goes on."""
        config = write_config(tmp_path, {"debug": {"enabled": True}})
        telemetry = tmp_path / "var" / "telemetry.jsonl"
        daemon = daemon_factory(config)
        wait_until(lambda: events_of(telemetry, "daemon.started"), 20, "start")
        cfg = load_config(config)

        async def block() -> dict[str, Any]:
            wire = Wire(cfg.zmq)
            try:
                return await request(wire, cfg.control.endpoint, "debug.block_loop", {"seconds": 1.5},
                                     timeout_sec=10, curve=False)
            finally:
                wire.close()

        assert asyncio.run(block())["ok"] is True
        (dump,) = wait_until(lambda: events_of(telemetry, "debug.task_dump"), 20, "the lag dump")
        assert dump["data"]["reason"] == "loop_lag"
        assert dump["data"]["loop_lag_ms"] >= 1000
        assert any("block_loop" in line for line in dump["data"]["blocking_stack"])
        assert run_cli("heartbeat", "now", "--config", str(config)).returncode == 0
        assert daemon.stop() == 0
