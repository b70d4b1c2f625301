"""`swimmy status`: the daemon's latest snapshots, readably, and an exit code a script can trust.

Exit 1 when the daemon looks unhealthy: no snapshot, a stale one (older than
twice the interval plus 10 s: the daemon is gone or wedged), silent peers,
telemetry failing, or any other reason the daemon gave for DEGRADED.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

import orjson

from swimmy.daemon.health import snapshot_problems as problems


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """A snapshot file, or None when missing or unreadable (an atomic writer never leaves a partial one)."""
    try:
        value = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def render(status: dict[str, Any] | None, metrics: dict[str, Any] | None, found: list[str]) -> str:
    """The readable report."""
    lines = [f"swimmy: {'UNHEALTHY' if found else 'healthy'}"]
    lines += [f"  ! {p}" for p in found]
    if status is not None:
        lines.append(f"  status {status.get('status')}  up {float(status.get('uptime_sec') or 0) / 3600:.2f} h  "
                     f"pid {status.get('pid')}  version {status.get('version')}  snapshot {status.get('timestamp')}")
    if metrics is not None:
        t = metrics.get("telemetry", {})
        lines.append(f"  telemetry: {t.get('written')} written, {t.get('dropped')} dropped, "
                     f"{t.get('failed_writes')} failed writes, queue {t.get('queue_depth')}, "
                     f"{t.get('rotations')} rotations")
        if "heartbeats" in metrics:
            h = metrics["heartbeats"]
            lines.append(f"  heartbeats: {h.get('sent')} sent, last RTT {h.get('last_rtt_ms')} ms")
        if "peers" in metrics:
            ages = metrics["peers"].get("last_seen_age_sec", {})
            lines.append("  peers: " + (", ".join(f"{k} ({v:.0f} s ago)" for k, v in ages.items()) or "none"))
        if "workers" in metrics:
            lines.append(f"  workers: {metrics['workers'].get('alive')}/{metrics['workers'].get('configured')} alive")
        if "strategies" in metrics:
            lines.append("  strategies: " + ", ".join(f"{k} {v}" for k, v in metrics["strategies"].items()))
        if "oos" in metrics:
            o = metrics["oos"]
            lines.append(f"  OOS: {o.get('pending')} pending, {o.get('errors')} errors, "
                         f"oldest {o.get('oldest_age_sec')} s")
        if "wfv" in metrics:
            w = metrics["wfv"]
            lines.append(f"  WFV: {w.get('pending')} pending, oldest {w.get('oldest_age_sec')} s, "
                         f"{w.get('results')} results, {w.get('timeouts')} timeouts")
        for universe, u in (metrics.get("universes") or {}).items():
            pbo = u.get("pbo")
            lines.append(f"  {universe}: {u.get('trials')} trials (N_eff {u.get('n_eff')}), "
                         f"{u.get('oos_looks')} holdout looks, PBO {'-' if pbo is None else f'{pbo:.2f}'}"
                         f"{'' if u.get('usable', True) else ' (no usable data)'}")
        if "discord" in metrics:
            d = metrics["discord"]
            lines.append(f"  Discord: {d.get('delivered')} delivered, {d.get('failed')} failed, "
                         f"{d.get('queued')} queued{' (dry run)' if d.get('dry_run') else ''}")
    return "\n".join(lines)


def run_status(snapshots_dir: Path, out: TextIO, now: float | None = None) -> int:
    """Print the report; 0 healthy, 1 unhealthy."""
    status = read_snapshot(snapshots_dir / "status.json")
    metrics = read_snapshot(snapshots_dir / "metrics.json")
    found = problems(status, time.time() if now is None else now)
    print(render(status, metrics, found), file=out)
    return 1 if found else 0
