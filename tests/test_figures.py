"""The typed figures (swimmy/ops/figures.py): one object read by the snapshots, /metrics and Discord."""

from __future__ import annotations

from dataclasses import replace

import orjson

from swimmy.ops.figures import (
    DiscordFigures,
    Figures,
    OosFigures,
    PeerFigures,
    TelemetryFigures,
    UniverseFigures,
    WfvFigures,
    WorkerFigures,
    summary_lines,
)
from swimmy.ops.snapshots import split_snapshots

TELEMETRY = TelemetryFigures(written=120, dropped=3, failed_writes=1, queue_depth=4, rotations=0, failing=False,
                             fsync_errors=0, truncated=0)


def bare(**changes: object) -> Figures:
    """A daemon with only its shell running: no heartbeats, peers, backtests, school or Discord."""
    base = Figures(run_id="r1", pid=7, version="1.0", config_hash="abc", uptime_sec=7200.0, rss_bytes=None,
                   loop_lag_ms=0.5, loop_stalls=0, telemetry=TELEMETRY, heartbeats=None, peers=None,
                   backtests=None, workers=WorkerFigures(configured=0, alive=0), strategies=None, oos=None,
                   wfv=None, universes=None, discord=None, status="OK", reasons=[], stale_tasks={})
    return replace(base, **changes)


class TestAsJson:
    def test_absent_parts_are_left_out_and_none_figures_stay(self) -> None:
        """A part that is not running has no key; a figure that is unknown (rss_bytes) is null."""
        body = bare().as_json()
        assert list(body) == ["run_id", "pid", "version", "config_hash", "uptime_sec", "rss_bytes", "loop_lag_ms",
                              "loop_stalls", "telemetry", "workers", "status", "reasons", "stale_tasks"]
        assert body["rss_bytes"] is None
        assert body["telemetry"]["dropped"] == 3

    def test_nested_parts_in_the_snapshot_layout(self) -> None:
        universe = UniverseFigures(trials=900, n_eff=312.5, data_hash="d1", usable=True, oos_looks=2,
                                   holdout_start_ts=1_500_000_000, pbo=0.2, audited_at=None, sr0=0.1)
        f = bare(peers=PeerFigures({"w1": 1.5}, ["w2"], 3), strategies={"B": 4, "A": 1},
                 oos=OosFigures(pending=1, errors=0, oldest_age_sec=None, latency_p50_sec=None, requested=5,
                                results=4),
                 wfv=WfvFigures(pending=0, oldest_age_sec=None, results=1, timeouts=0),
                 universes={"EURUSD_H1": universe}, stop_reason="SIGTERM")
        body = orjson.loads(orjson.dumps(f.as_json()))
        assert body["peers"] == {"last_seen_age_sec": {"w1": 1.5}, "silent": ["w2"], "evicted": 3}
        assert body["universes"]["EURUSD_H1"]["trials"] == 900
        assert body["oos"]["oldest_age_sec"] is None
        assert list(body)[-1] == "stop_reason"

    def test_status_snapshot_reads_the_typed_figures(self) -> None:
        f = bare(status="DEGRADED", reasons=["telemetry writes failing: ENOSPC"],
                 peers=PeerFigures({}, ["hub"], 0))
        metrics, status = split_snapshots(f, "2026-12-06T00:00:00Z", 60.0)
        assert status["status"] == "DEGRADED"
        assert status["silent_peers"] == ["hub"]
        assert status["stop_reason"] is None
        assert status["telemetry_failing"] is False
        assert metrics["telemetry"]["written"] == 120


class TestSummaryLines:
    def test_the_discord_heartbeat_lines(self) -> None:
        f = bare(strategies={"B": 4}, peers=PeerFigures({"a": 1.0, "b": 2.0}, ["b"], 0),
                 discord=DiscordFigures(delivered=1, failed=0, dropped=0, queued=0, rate_limited=0, coalesced=0,
                                        dry_run=True))
        assert summary_lines(f) == {"uptime": "2.0 h", "strategies": "B 4", "peers": "2 known, 1 silent",
                                    "telemetry": "120 written, 3 dropped, 1 failed writes"}
