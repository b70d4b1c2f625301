"""Which events go to Discord, and how they read there (SPEC §3 alerts; the Discord issue's list).

`alert_for` is pure: an accepted event in, a Notification (or None) out. The
daemon registers it as a queue listener, so an alert is queued the moment the
event is accepted, not when the writer gets to it (telemetry.failing must reach
Discord while the disk is full).
"""

from __future__ import annotations

from typing import Any

from swimmy.notify.discord import Notification

ALERT_EVENTS = (
    "peer.silent",
    "peer.recovered",
    "wfv.timeout",
    "worker.exited",
    "telemetry.failing",
    "telemetry.recovered",
    "strategy.ranked",
    "daemon.started",
    "daemon.stopping",
)
PROMOTIONS = {("B", "A"), ("B", "S"), ("A", "S")}


def alert_for(event_type: str, severity: str, correlation_id: Any, data: Any) -> Notification | None:
    """The Discord alert an event deserves, or None."""
    d: dict[str, Any] = data if isinstance(data, dict) else {}
    if event_type == "peer.silent":
        return Notification("peer.silent", f"Peer silent: {d.get('source')}",
                            f"No heartbeat for {d.get('silent_sec')} s.", "warning", str(d.get("source", "")))
    if event_type == "peer.recovered":
        return Notification("peer.recovered", f"Peer back: {d.get('source')}",
                            f"Heard again after {d.get('silent_sec')} s of silence.", "info",
                            str(d.get("source", "")))
    if event_type == "wfv.timeout":
        return Notification("wfv.timeout", f"WFV timed out: {d.get('strategy')}",
                            f"Run {d.get('wfv_id')} missing {', '.join(d.get('missing') or [])} after "
                            f"{d.get('age_sec')} s; its slot is free again.", "warning", str(d.get("strategy", "")))
    if event_type == "worker.exited":
        return Notification("worker.exited", f"Worker exited: {d.get('worker')}",
                            f"pid {d.get('pid')} exited with {d.get('exit_code')}; restart in "
                            f"{d.get('restart_in_sec')} s (restarts so far: {d.get('restarts')}).", "error",
                            str(d.get("worker", "")))
    if event_type == "telemetry.failing":
        return Notification("telemetry.failing", "Telemetry writes failing",
                            f"{d.get('error')} on {d.get('path')}: events are kept in memory and retried.",
                            "error", str(d.get("path", "")))
    if event_type == "telemetry.recovered":
        return Notification("telemetry.recovered", "Telemetry writes recovered",
                            f"After {d.get('outage_sec')} s: {d.get('failed_writes')} failed writes, "
                            f"{d.get('dropped')} events dropped.", "warning", str(d.get("path", "")))
    if event_type == "strategy.ranked" and (d.get("from_rank"), d.get("to_rank")) in PROMOTIONS:
        figures = []
        if isinstance(d.get("sharpe"), int | float):
            figures.append(f"IS Sharpe {d['sharpe']:.2f}")
        if isinstance(d.get("dsr"), int | float):
            figures.append(f"DSR {d['dsr']:.3f} against {d.get('trials')} trials (N_eff {d.get('n_eff')})")
        body = str(d.get("reason", "")) + (f"; {', '.join(figures)}" if figures else "")
        return Notification("strategy.promoted", f"Promoted to {d.get('to_rank')}: {d.get('strategy')}",
                            body, "info", str(d.get("strategy", "")))
    if event_type == "daemon.started":
        return Notification("daemon.started", "swimmy started",
                            f"version {d.get('version')}, config {d.get('config_hash')}, "
                            f"{d.get('workers')} embedded workers", "info", str(correlation_id))
    if event_type == "daemon.stopping":
        return Notification("daemon.stopping", "swimmy stopping",
                            f"reason {d.get('reason')} after {d.get('uptime_sec')} s", "info", str(correlation_id))
    return None
