"""`swimmy status`'s judgement, and which events become Discord alerts."""

from __future__ import annotations

from typing import Any

import pytest

from swimmy.cli.status import problems
from swimmy.config import DISCORD_KINDS
from swimmy.notify.alerts import alert_for

NOW = 1_800_000_000.0
FRESH = "2027-01-15T08:00:00.000Z"  # == NOW


def status(**kw: Any) -> dict[str, Any]:
    return {"timestamp": FRESH, "status": "OK", "interval_sec": 60, "reasons": [], "stale_tasks": {},
            "telemetry_failing": False, "silent_peers": [], **kw}


class TestProblems:
    @pytest.mark.parametrize(
        ("snapshot", "expected"),
        [
            (status(), []),
            (None, ["no status snapshot"]),
            (status(timestamp="2027-01-15T07:57:49.000Z"), ["131 s old"]),
            (status(timestamp="2027-01-15T07:58:00.000Z"), []),
            (status(telemetry_failing=True, reasons=["telemetry writes failing: ENOSPC"]),
             ["telemetry writes are failing"]),
            (status(silent_peers=["worker-a"]), ["silent peers: worker-a"]),
            (status(status="DEGRADED", reasons=["no embedded worker alive (of 2)"]), ["no embedded worker alive"]),
            (status(stale_tasks={"telemetry-writer": 7.5}), ["tasks without progress: telemetry-writer (7.5 s)"]),
            (status(status="STOPPED", stop_reason="SIGTERM"), ["the daemon stopped"]),
        ],
    )
    def test_unhealthy_when(self, snapshot: dict[str, Any] | None, expected: list[str]) -> None:
        """Stale or missing snapshots, failing telemetry, silent peers, DEGRADED reasons and stops are problems."""
        found = problems(snapshot, NOW)
        assert len(found) == len(expected)
        for want, got in zip(expected, found, strict=True):
            assert want in got


class TestAlerts:
    @pytest.mark.parametrize(
        ("event_type", "data", "kind", "severity"),
        [
            ("peer.silent", {"source": "w1", "silent_sec": 61}, "peer.silent", "warning"),
            ("peer.recovered", {"source": "w1", "silent_sec": 90}, "peer.recovered", "info"),
            ("wfv.timeout", {"strategy": "s", "wfv_id": "w", "missing": ["OOS"], "age_sec": 1801}, "wfv.timeout",
             "warning"),
            ("worker.exited", {"worker": "embedded-1", "pid": 3, "exit_code": -9}, "worker.exited", "error"),
            ("telemetry.failing", {"error": "ENOSPC", "path": "/x"}, "telemetry.failing", "error"),
            ("telemetry.recovered", {"outage_sec": 3}, "telemetry.recovered", "warning"),
            ("strategy.ranked", {"strategy": "s", "from_rank": "B", "to_rank": "A", "reason": "OOS 0.5"},
             "strategy.promoted", "info"),
            ("daemon.started", {"version": "1"}, "daemon.started", "info"),
            ("daemon.stopping", {"reason": "SIGTERM"}, "daemon.stopping", "info"),
        ],
    )
    def test_events_that_go_to_discord(self, event_type: str, data: dict[str, Any], kind: str, severity: str) -> None:
        """Each alert event maps to a notification of its kind (one `discord.mute` accepts) and severity."""
        note = alert_for(event_type, "info", "cid", data)
        assert note is not None and (note.kind, note.severity) == (kind, severity)
        assert note.kind in DISCORD_KINDS

    def test_a_promotion_says_what_it_was_judged_against(self) -> None:
        """The trader reading Discord sees the DSR and how many trials it was deflated for."""
        note = alert_for("strategy.ranked", "info", "s", {"strategy": "s", "from_rank": "A", "to_rank": "S",
                                                           "reason": "walk-forward validated", "sharpe": 2.345,
                                                           "dsr": 0.9912, "trials": 4200, "n_eff": 31.5})
        assert note is not None and "DSR 0.991 against 4200 trials (N_eff 31.5)" in note.description
        assert "IS Sharpe 2.35" in note.description

    @pytest.mark.parametrize(
        ("event_type", "data"),
        [("strategy.ranked", {"from_rank": "incubator", "to_rank": "B"}),
         ("strategy.ranked", {"from_rank": "A", "to_rank": "B"}), ("heartbeat.sent", {})],
    )
    def test_events_that_do_not(self, event_type: str, data: dict[str, Any]) -> None:
        """Rankings other than promotions, and routine events, stay off Discord."""
        assert alert_for(event_type, "info", "cid", data) is None
