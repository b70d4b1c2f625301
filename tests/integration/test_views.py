"""What people look at, from a running daemon: the dashboard's data, a report served, the story on a terminal.

The daemon is tests/viewkit.py's: one A strategy, breeding off; the one milestone is the OOS verdict asked for.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from integration.kit import StartDaemon
from viewkit import NAME, seeded


def test_dashboard_and_report_of_a_running_daemon(tmp_path: Path, start_daemon: StartDaemon) -> None:
    daemon = start_daemon(seeded(tmp_path))
    daemon.wait_workers_ready(1)
    page = daemon.wait_http("/", 200)
    assert b"/static/dashboard.js" in page and b"http" not in page.replace(b"http-equiv", b"")
    assert daemon.cli("oos", "request", NAME).returncode == 0
    verdict = daemon.wait_for("oos.result", timeout=30, strategy=NAME)[0]["data"]
    state = orjson.loads(daemon.wait_http("/api/dashboard", 200))
    deadline = time.monotonic() + 10
    while not any(m["strategy"] == NAME for m in state["milestones"]) and time.monotonic() < deadline:
        time.sleep(0.3)
        state = orjson.loads(daemon.http_get("/api/dashboard")[1])
    told = [m["text"] for m in state["milestones"] if m["event_type"] == "oos.result"]
    assert told and told[0].startswith(f"OOS {verdict['decision']} for {NAME}")
    assert [t["name"] for t in state["top"]] == [NAME] and state["figures"]["workers_alive"] == 1
    assert state["population"]["t"] and state["status"] in ("OK", "DEGRADED")
    report = daemon.wait_http(f"/strategies/{NAME}", 200, timeout=45).decode()
    assert NAME in report and f">{verdict['decision']}<" in report and 'id="report-data"' in report
    status, body = daemon.http_get("/strategies/no-such-strategy")
    assert (status, body) == (404, b"404: no strategy called 'no-such-strategy'\n")
    assert daemon.http_get("/static/uPlot.iife.min.js")[0] == 200
    assert daemon.stop() == 0
    # stderr was a pipe, as under systemd: lifecycle lines only, no story.
    assert "swimmy started" in daemon.process.stderr and f"for {NAME}" not in daemon.process.stderr


def read_until(fd: int, needles: list[bytes], timeout: float) -> bytes:
    """Read a pty until every needle appeared (or the time is up); everything read."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(n in seen for n in needles):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # EIO: the other side closed
                break
    return seen


@pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminals as Linux has them")
def test_the_story_on_a_terminal(tmp_path: Path, start_daemon: StartDaemon) -> None:
    """`swimmy run` with a terminal for stderr tells the OOS verdict; the same run on a pipe would not."""
    path = seeded(tmp_path)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "swimmy", "run", "--config", str(path), "--exit-after", "40"],
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, cwd=tmp_path,
                            start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    os.close(secondary)
    try:
        started = read_until(primary, [b"worker started"], 30)
        assert b"swimmy started" in started, started.decode(errors="replace")
        subprocess.run([sys.executable, "-m", "swimmy", "oos", "request", NAME, "--config", str(path)],
                       check=True, capture_output=True, timeout=30)
        told = read_until(primary, [b"OOS ", NAME.encode()], 40).decode(errors="replace")
        assert f"for {NAME}: Sharpe" in told, told
    finally:
        proc.terminate()
        read_until(primary, [b"stopped"], 15)
        proc.wait(15)
        os.close(primary)
