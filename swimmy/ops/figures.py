"""The operator's figures, gathered once from the running services into one typed `Figures`: the snapshots,
/metrics, `swimmy status` (through status.json) and the Discord summary all read it, so a misspelt figure is
an error of mypy, not a silent None."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Final

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """Resident set size now (Linux /proc), or None where it can't be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class TelemetryFigures:
    written: int
    dropped: int
    failed_writes: int
    queue_depth: int
    rotations: int
    failing: bool
    fsync_errors: int
    truncated: int


@dataclass(frozen=True, slots=True)
class HeartbeatFigures:
    sent: int
    send_failures: int
    last_rtt_ms: float | None


@dataclass(frozen=True, slots=True)
class PeerFigures:
    last_seen_age_sec: dict[str, float]
    silent: list[str]
    evicted: int


@dataclass(frozen=True, slots=True)
class BacktestFigures:
    inflight: int
    sent: int
    completed: int
    timeouts: int
    refused: int
    resends: int
    queued: int
    requeued: int
    quarantined: int
    workers_ready: int
    workers_lost: int
    free_credit: int


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    configured: int
    alive: int


@dataclass(frozen=True, slots=True)
class OosFigures:
    pending: int
    errors: int
    oldest_age_sec: float | None
    latency_p50_sec: float | None
    requested: int
    results: int


@dataclass(frozen=True, slots=True)
class WfvFigures:
    pending: int
    oldest_age_sec: float | None
    results: int
    timeouts: int


@dataclass(frozen=True, slots=True)
class UniverseFigures:
    trials: int
    n_eff: float
    data_hash: str | None
    usable: bool
    oos_looks: int
    holdout_start_ts: int | None
    pbo: float | None
    audited_at: float | None
    sr0: float | None


@dataclass(frozen=True, slots=True)
class DiscordFigures:
    delivered: int
    failed: int
    dropped: int
    queued: int
    rate_limited: int
    coalesced: int
    dry_run: bool


@dataclass(frozen=True, slots=True)
class Figures:
    """Every figure of the running daemon, once. A section is None when its part is not running (and then
    absent from the JSON, as `stop_reason` is until the daemon stops)."""

    run_id: str
    pid: int
    version: str
    config_hash: str
    uptime_sec: float
    rss_bytes: int | None
    loop_lag_ms: float
    loop_stalls: int
    telemetry: TelemetryFigures
    heartbeats: HeartbeatFigures | None
    peers: PeerFigures | None
    backtests: BacktestFigures | None
    workers: WorkerFigures
    strategies: dict[str, int] | None
    oos: OosFigures | None
    wfv: WfvFigures | None
    universes: dict[str, UniverseFigures] | None
    discord: DiscordFigures | None
    status: str
    reasons: list[str]
    stale_tasks: dict[str, float]
    stop_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Plain JSON-able values in field order (the snapshots' and `status`'s layout), absent parts left out."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None or f.name not in _OPTIONAL}


_OPTIONAL: Final = frozenset(
    ("heartbeats", "peers", "backtests", "strategies", "oos", "wfv", "universes", "discord", "stop_reason"))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def summary_lines(f: Figures) -> dict[str, str]:
    """The Discord heartbeat's lines: uptime, strategies by rank, OOS queue, WFV pending, peers, telemetry."""
    t = f.telemetry
    lines = {"uptime": f"{f.uptime_sec / 3600:.1f} h"}
    if f.strategies is not None:
        lines["strategies"] = ", ".join(f"{k} {v}" for k, v in f.strategies.items())
    if f.oos is not None:
        lines["OOS queue"] = f"{f.oos.pending} pending, {f.oos.errors} errors"
    if f.wfv is not None:
        lines["WFV pending"] = str(f.wfv.pending)
    if f.peers is not None:
        lines["peers"] = f"{len(f.peers.last_seen_age_sec)} known, {len(f.peers.silent)} silent"
    lines["telemetry"] = f"{t.written} written, {t.dropped} dropped, {t.failed_writes} failed writes"
    return lines
