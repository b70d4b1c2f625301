"""`swimmy run` as a real subprocess: drain on stop, locks, signals, exit codes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers import wait_until, write_config
from integration.kit import StartDaemon

pytestmark = pytest.mark.slow


class TestStop:
    def test_sigterm_with_a_burst_still_queued_writes_every_event_without_a_gap(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """100,000 queued events survive SIGTERM: all written, seq contiguous, exit 0."""
        daemon = start_daemon(write_config(tmp_path, {"debug": {"burst_on_start": 100_000}}))
        telemetry = daemon.telemetry
        wait_until(lambda: telemetry.exists() and telemetry.stat().st_size > 0, 20, "the first line")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, daemon.stderr
        events = daemon.all_events()
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

    def test_exit_after_stops_cleanly(self, tmp_path: Path, start_daemon: StartDaemon) -> None:
        """--exit-after stops by itself with exit 0, and the stream says why."""
        config = write_config(tmp_path)
        daemon = start_daemon(config, "--exit-after", "0.5")
        assert daemon.wait(30) == 0, daemon.stderr
        events = daemon.events()
        types = [e["event_type"] for e in events]
        assert types[0] == "daemon.started"
        assert types[-1] == "daemon.stopped"
        assert types.index("daemon.stopping") < types.index("daemon.stopped")
        started = events[0]
        assert started["correlation_id"] == started["run_id"]
        assert started["data"]["config_path"] == str(config)
        assert {"version", "config_hash", "pid", "workers"} <= set(started["data"])
        assert events[-1]["data"]["reason"] == "exit_after"

    def test_log_lines_reach_the_file_and_stderr(self, tmp_path: Path, start_daemon: StartDaemon) -> None:
        """structlog events are `log_type: "log"` lines in the file and readable lines on stderr."""
        daemon = start_daemon(write_config(tmp_path), "--exit-after", "0.3")
        assert daemon.wait(30) == 0
        logs = [e for e in daemon.events() if e["log_type"] == "log"]
        started = next(e for e in logs if e["data"]["message"] == "swimmy started")
        assert started["event_type"] == "log"
        assert started["data"]["logger"] == "swimmy.daemon"
        assert started["severity"] == "info"
        assert "swimmy started" in daemon.stderr


class TestLocks:
    def test_second_process_on_the_same_telemetry_path_exits_2_naming_the_lock(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """One writer per file: a second daemon with the same path refuses to start."""
        first = start_daemon(write_config(tmp_path, name="a.toml"))
        first.wait_started()
        telemetry = first.telemetry
        other = tmp_path / "other"
        other.mkdir()
        second = start_daemon(write_config(other, {"telemetry": {"path": str(telemetry)}}))
        assert second.wait(30) == 2
        assert f"{telemetry}.lock" in second.stderr
        assert "telemetry path" in second.stderr
        assert first.stop() == 0
        assert len(first.events("daemon.started")) == 1

    def test_second_process_on_the_same_database_exits_2_naming_the_lock(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """The school database is locked too."""
        first = start_daemon(write_config(tmp_path))
        first.wait_started()
        other = tmp_path / "other"
        other.mkdir()
        db = tmp_path / "var" / "school.db"
        second = start_daemon(write_config(other, {"school": {"db_path": str(db)}}))
        assert second.wait(30) == 2
        assert f"{db}.lock" in second.stderr
        assert not second.events()
        assert first.stop() == 0


class TestSignals:
    def test_sighup_reloads_reloadable_keys_and_reports_the_rest(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """SIGHUP: config.reloaded lists the applied keys and those that need a restart."""
        config = write_config(tmp_path)
        daemon = start_daemon(config)
        daemon.wait_started()
        text = config.read_text()
        config.write_text(
            text.replace("[telemetry]\n", '[telemetry]\nlog_level = "debug"\n').replace(
                "[workers]\nembedded = 0", "[workers]\nembedded = 3"
            )
            + "\n[heartbeat]\ninterval_sec = 2\n"
        )
        daemon.signal(signal.SIGHUP)
        (reloaded,) = daemon.wait_for("config.reloaded", timeout=20)
        assert reloaded["data"]["changed"] == ["heartbeat.interval_sec", "telemetry.log_level"]
        assert reloaded["data"]["needs_restart"] == ["workers.embedded"]
        assert daemon.stop() == 0

    def test_sighup_with_an_invalid_file_keeps_the_old_config(self, tmp_path: Path, start_daemon: StartDaemon) -> None:
        """An invalid file on reload gives config.reload_failed naming the key; the daemon runs on."""
        config = write_config(tmp_path)
        daemon = start_daemon(config)
        daemon.wait_started()
        config.write_text(config.read_text() + "\n[wfv]\nmax_pending = -1\n")
        daemon.signal(signal.SIGHUP)
        (failed,) = daemon.wait_for("config.reload_failed", timeout=20)
        assert failed["severity"] == "error"
        assert "wfv.max_pending: must be >= 0, got -1" in failed["data"]["error"]
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0

    def test_sighup_reopens_a_file_moved_away_by_logrotate(self, tmp_path: Path, start_daemon: StartDaemon) -> None:
        """External logrotate: mv the file, SIGHUP, and the new file starts with telemetry.rotated."""
        daemon = start_daemon(write_config(tmp_path))
        daemon.wait_started()
        os.replace(daemon.telemetry, tmp_path / "var" / "rotated-by-logrotate.jsonl")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for("config.reloaded", timeout=20)  # in the new file
        assert daemon.stop() == 0
        events = daemon.events()
        assert events[0]["event_type"] == "telemetry.rotated"
        assert events[0]["data"]["external"] is True

    def test_sigusr1_dumps_every_task(self, tmp_path: Path, start_daemon: StartDaemon) -> None:
        """SIGUSR1 writes debug.task_dump with each task's name and stack."""
        daemon = start_daemon(write_config(tmp_path))
        daemon.wait_started()
        daemon.signal(signal.SIGUSR1)
        (dump,) = daemon.wait_for("debug.task_dump", timeout=20)
        assert dump["data"]["reason"] == "SIGUSR1"
        names = {t["name"] for t in dump["data"]["tasks"]}
        assert {"supervisor", "telemetry-writer"} <= names
        writer = next(t for t in dump["data"]["tasks"] if t["name"] == "telemetry-writer")
        assert any("writer.py" in frame for frame in writer["stack"])
        assert daemon.stop() == 0


class TestLoopLag:
    def test_a_wedged_loop_writes_a_task_dump_naming_the_blocker(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """debug.block_loop for 1.5 s: debug.task_dump (loop_lag) with the blocking stack; the daemon goes on."""
        daemon = start_daemon(write_config(tmp_path, {"debug": {"enabled": True}}))
        daemon.wait_started()
        assert daemon.command("debug.block_loop", seconds=1.5)["ok"] is True
        (dump,) = daemon.wait_for("debug.task_dump", timeout=20)
        assert dump["data"]["reason"] == "loop_lag"
        assert dump["data"]["loop_lag_ms"] >= 1000
        assert any("block_loop" in line for line in dump["data"]["blocking_stack"])
        assert daemon.cli("heartbeat", "now").returncode == 0
        assert daemon.stop() == 0
