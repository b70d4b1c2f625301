"""A full disk (a small tmpfs): survived without a torn line, then recovered from (SPEC §2.3)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import free_port, wait_until, write_config
from integration.kit import RunningDaemon, StartDaemon

pytestmark = pytest.mark.slow


def fill(disk: Path, keep_free: int) -> Path:
    """A filler file that leaves about `keep_free` bytes free on `disk`."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, free - keep_free))
    return filler


def whole_lines_or_none(daemon: RunningDaemon) -> list[dict[str, Any]] | None:
    """Every line once the file ends with a newline (a torn line fails the test); None while it does not."""
    return daemon.events(complete=True) if daemon.telemetry.read_bytes().endswith(b"\n") else None


def test_full_disk_is_survived_and_recovered(small_disk: Path, start_daemon: StartDaemon, tmp_path: Path) -> None:
    """ENOSPC: the daemon runs on, no line is torn; after space is freed, telemetry.recovered and events flow."""
    telemetry = small_disk / "telemetry.jsonl"
    config = write_config(
        tmp_path,
        {"telemetry": {"path": str(telemetry), "queue_size": 200_000}, "debug": {"burst_on_start": 3000},
         "heartbeat": {"interval_sec": 0.2}, "metrics": {"listen": f"127.0.0.1:{free_port()}"}},
    )
    filler = fill(small_disk, keep_free=96 * 1024)
    daemon = start_daemon(config)

    def disk_full_and_writer_stuck() -> bool:
        if not telemetry.exists():
            return False
        size = telemetry.stat().st_size
        st = os.statvfs(small_disk)
        return st.f_bavail * st.f_frsize < 4096 and size > 0

    wait_until(disk_full_and_writer_stuck, 20, "the disk to fill")
    # A reader may catch the writer between a partial write (ENOSPC mid-batch) and its truncation back to
    # the last whole line; what must hold is that the file settles whole, so a torn tail must not persist.
    before = wait_until(lambda: whole_lines_or_none(daemon), 5, "the file to settle on whole lines")
    assert daemon.proc.poll() is None, "the daemon died of a full disk"
    assert "telemetry.recovered" not in {e["event_type"] for e in before}
    with daemon.heartbeats() as heartbeats:
        status = heartbeats.receive()["status"]
    assert status == "DEGRADED", "the heartbeat must say the daemon knows something is wrong"
    assert daemon.http_get("/healthz")[0] == 200, "alive: a restart would not free the disk"
    code, body = daemon.http_get("/readyz")
    assert code == 503 and any("telemetry writes failing: ENOSPC" in r for r in orjson.loads(body)["reasons"])

    filler.unlink()
    # The writer is live again (heartbeats every 0.2 s), so a read may catch a line mid-write: read as
    # `tail -f` does here; the file at rest is checked whole after the stop.
    events = wait_until(
        lambda: (
            (ev := daemon.events())
            and any(e["event_type"] == "telemetry.recovered" for e in ev)
            and sum(e["event_type"] == "debug.burst" for e in ev) == 3000
            and ev
        ),
        30,
        "telemetry.recovered and the rest of the burst",
    )
    assert daemon.proc.poll() is None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.stderr
    events = daemon.events(complete=True)
    types = [e["event_type"] for e in events]
    recovered = events[types.index("telemetry.recovered")]
    assert recovered["severity"] == "warning"
    assert recovered["data"]["failed_writes"] >= 1
    assert recovered["data"]["outage_sec"] > 0
    failing = events[types.index("telemetry.failing")]
    assert "ENOSPC" in failing["data"]["error"]
    assert types.index("telemetry.recovered") == len(before), "recovered must be the first line after the outage"
    assert sorted(e["seq"] for e in events) == list(range(1, len(events) + 1)), "an accepted event was lost"
    assert types[-1] == "daemon.stopped"
    alerts = [e["data"]["kind"] for e in events if e["event_type"] == "discord.dry_run"]
    assert "telemetry.failing" in alerts and "telemetry.recovered" in alerts, "both must reach Discord (dry run)"


def test_drain_that_cannot_finish_exits_1_and_counts_the_loss(
    small_disk: Path, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Stop on a full disk: past drain_timeout_sec the loss is said on stderr and the exit code is 1."""
    telemetry = small_disk / "telemetry.jsonl"
    config = write_config(
        tmp_path,
        {"telemetry": {"path": str(telemetry), "drain_timeout_sec": 1.5}, "debug": {"burst_on_start": 3000}},
    )
    fill(small_disk, keep_free=32 * 1024)
    daemon = start_daemon(config)
    wait_until(
        lambda: telemetry.exists() and os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize < 4096,
        20,
        "the disk to fill",
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 1
    assert "telemetry drain did not finish within 1.5s" in daemon.stderr
    assert "ENOSPC" in daemon.stderr
    lost = int(daemon.stderr.split("events lost")[0].rsplit(":", 1)[1].strip())
    written = len(daemon.events(complete=True))
    assert lost > 0
    assert written + lost >= 3000


def test_a_disk_hovering_at_full_gives_one_outage_not_a_flapping_pair(
    small_disk: Path, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A few KiB freed on a full disk (less than a batch) is no recovery: no telemetry.recovered until there
    is room, then exactly one failing/recovered pair for the whole outage."""
    telemetry = small_disk / "telemetry.jsonl"
    config = write_config(
        tmp_path,
        {"telemetry": {"path": str(telemetry), "queue_size": 200_000}, "debug": {"burst_on_start": 3000},
         "heartbeat": {"interval_sec": 0.2}},
    )
    crumb = small_disk / "crumb"
    crumb.write_bytes(b"\0" * 16 * 1024)
    filler = fill(small_disk, keep_free=96 * 1024)
    daemon = start_daemon(config)
    wait_until(lambda: telemetry.exists() and os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
               < 4096, 20, "the disk to fill")
    wait_until(lambda: whole_lines_or_none(daemon), 5, "the file to settle on whole lines")
    crumb.unlink()  # 16 KiB free: a retry would get part of a batch in, and the next batch would fail
    deadline = time.monotonic() + 6.0  # longer than the capped retry backoff (5 s)
    while time.monotonic() < deadline:
        assert not daemon.events("telemetry.recovered"), "a partial write into the last free pages is no recovery"
        time.sleep(0.2)
    filler.unlink()
    wait_until(lambda: len(daemon.events("debug.burst")) == 3000, 30, "the rest of the burst")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.stderr
    types = [e["event_type"] for e in daemon.events(complete=True)]
    assert types.count("telemetry.failing") == 1 and types.count("telemetry.recovered") == 1
    alerts = [e["data"]["kind"] for e in daemon.events("discord.dry_run", complete=True)]
    assert alerts.count("telemetry.failing") == 1 and alerts.count("telemetry.recovered") == 1
