"""The operator's figures, gathered once from the running services (snapshots, /metrics, the Discord summary)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from swimmy import __version__

if TYPE_CHECKING:
    from swimmy.daemon import Daemon

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Resident set size now (Linux /proc), or None where it can't be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def collect(d: Daemon) -> dict[str, Any]:
    """Every figure, as plain JSON-able values; parts that are not running report None."""
    now = d.clock.time()
    writer, queue = d.writer, d.queue
    figures: dict[str, Any] = {
        "run_id": d.run_id,
        "pid": os.getpid(),
        "version": __version__,
        "config_hash": d.cfg.config_hash,
        "uptime_sec": d.uptime_sec(),
        "rss_bytes": rss_bytes(),
        "loop_lag_ms": round(d.loopwatch.last_lag_ms, 3),
        "loop_stalls": d.loopwatch.stalls,
        "telemetry": {
            "written": writer.written, "dropped": queue.dropped_total, "failed_writes": writer.failed_writes,
            "queue_depth": len(queue), "rotations": writer.rotations, "failing": writer.failing,
            "fsync_errors": writer.fsync_errors, "truncated": d.encoder.truncated,
        },
    }
    if d.publisher is not None:
        figures["heartbeats"] = {"sent": d.publisher.sent, "send_failures": d.publisher.send_failures,
                                 "last_rtt_ms": d.publisher.last_rtt_ms}
    if d.peers is not None:
        mono = d.clock.monotonic()
        figures["peers"] = {"last_seen_age_sec": d.peers.table.ages(mono), "silent": d.peers.table.silent(),
                            "evicted": d.peers.table.evicted}
    if d.backtests is not None:
        b = d.backtests
        figures["backtests"] = {"inflight": b.inflight, "sent": b.sent, "completed": b.completed,
                                "timeouts": b.timeouts, "refused": b.refused, "resends": b.resends,
                                "queued": b.queued(), "requeued": b.requeued, "quarantined": b.quarantined,
                                "workers_ready": b.live_workers(), "workers_lost": b.workers_lost,
                                "free_credit": b.free_credit()}
    figures["workers"] = {"configured": d.workers.configured if d.workers else 0,
                          "alive": d.workers.alive() if d.workers else 0}
    if d.school is not None:
        count, oldest = d.school.wfv.pending_stats(now)
        figures["strategies"] = d.school.by_rank()
        figures["oos"] = d.school.oos.queue_stats(now)
        figures["wfv"] = {"pending": count, "oldest_age_sec": round(oldest, 3) if oldest is not None else None,
                          "results": d.school.wfv.results, "timeouts": d.school.wfv.timeouts}
        figures["universes"] = d.school.universe_figures()
    if d.notifier is not None:
        s = d.notifier.stats
        figures["discord"] = {"delivered": s.delivered, "failed": s.failed, "dropped": s.dropped,
                              "queued": s.queued, "rate_limited": s.rate_limited, "coalesced": s.coalesced,
                              "dry_run": d.notifier.dry}
    reasons = d.degraded_reasons()
    figures["status"] = "DEGRADED" if reasons else "OK"
    figures["reasons"] = reasons
    figures["stale_tasks"] = d.progress.stale()
    return figures


def summary_lines(f: dict[str, Any]) -> dict[str, str]:
    """The Discord heartbeat's lines: uptime, strategies by rank, OOS queue, WFV pending, peers, telemetry."""
    t = f["telemetry"]
    lines = {"uptime": f"{f['uptime_sec'] / 3600:.1f} h"}
    if "strategies" in f:
        lines["strategies"] = ", ".join(f"{k} {v}" for k, v in f["strategies"].items())
    if "oos" in f:
        lines["OOS queue"] = f"{f['oos']['pending']} pending, {f['oos']['errors']} errors"
    if "wfv" in f:
        lines["WFV pending"] = str(f["wfv"]["pending"])
    if "peers" in f:
        lines["peers"] = f"{len(f['peers']['last_seen_age_sec'])} known, {len(f['peers']['silent'])} silent"
    lines["telemetry"] = f"{t['written']} written, {t['dropped']} dropped, {t['failed_writes']} failed writes"
    return lines
