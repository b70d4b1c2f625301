"""Health: the progress of long-lived tasks (each beats at least once a second, idle or not: /healthz and the
watchdog) and the daemon's verdict, its DEGRADED reasons (SPEC §7: /readyz, status.json, the heartbeat's
status, systemd's STATUS=, `swimmy status`). Pure: the caller passes the facts."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from swimmy.rfc3339 import parse_rfc3339

STALE_AFTER_SEC = 5.0


class Progress:
    """Last-beat times per task name; a task that stops beating is reported stale."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._beats: dict[str, float] = {}

    def beat(self, name: str) -> None:
        """Record that `name` went round its loop."""
        self._beats[name] = self._monotonic()

    def beater(self, name: str) -> Callable[[], None]:
        """A zero-argument callable that beats for `name`."""
        return lambda: self.beat(name)

    def forget(self, name: str) -> None:
        """Stop tracking a task that ended on purpose."""
        self._beats.pop(name, None)

    def stale(self, max_age_sec: float = STALE_AFTER_SEC) -> dict[str, float]:
        """Tasks whose last beat is older than `max_age_sec`, with their age in seconds."""
        now = self._monotonic()
        return {name: round(now - t, 3) for name, t in self._beats.items() if now - t > max_age_sec}


def degraded_reasons(*, telemetry_failing: bool, telemetry_error: str | None, embedded_spawned: bool,
                     embedded_configured: int, embedded_alive: int, workers_ready: int, worker_grace_over: bool,
                     paused: Mapping[str, str]) -> list[str]:
    """What is wrong now, in words an operator can act on (empty: OK).

    No backtest worker is a reason only after the grace a remote fleet gets to send READY
    (`worker_grace_over`: 2 x backtest.worker_timeout_sec since start-up); embedded workers that all died
    say so instead.
    """
    reasons = []
    if telemetry_failing:
        reasons.append(f"telemetry writes failing: {telemetry_error}")
    if embedded_spawned and embedded_alive == 0:
        reasons.append(f"no embedded worker alive (of {embedded_configured})")
    elif workers_ready == 0 and worker_grace_over:
        reasons.append("no backtest worker connected: the school waits (start a worker, or check "
                       "zmq.backtest_endpoint and its keys)")
    for universe, error in sorted(paused.items()):
        reasons.append(f"universe {universe} paused: {error}")
    return reasons


def status_line(reasons: list[str], embedded_alive: int, embedded_configured: int) -> str:
    """systemd's STATUS=: the verdict and the embedded workers."""
    workers = f"{embedded_alive}/{embedded_configured} workers" if embedded_configured else "no embedded workers"
    return f"{'DEGRADED: ' + '; '.join(reasons) if reasons else 'OK'}; {workers}"


STALE_SLACK_SEC = 10.0  # a snapshot older than 2 intervals plus this: the daemon is gone or wedged


def snapshot_problems(status: dict[str, Any] | None, now: float) -> list[str]:
    """Why the daemon looks unhealthy to a reader of status.json (`swimmy status`; empty: healthy).

    The daemon's own verdict (`reasons`, from degraded_reasons above) as written, plus what only a reader
    can judge: no snapshot, a stopped daemon, a snapshot too old to trust; and the facts status.json carries
    beside the verdict (failing telemetry, silent peers, tasks without progress).
    """
    if status is None:
        return ["no status snapshot: is the daemon running with this config?"]
    if status.get("status") == "STOPPED":
        return [f"the daemon stopped ({status.get('timestamp')}, reason {status.get('stop_reason')})"]
    out = []
    try:
        taken = parse_rfc3339(str(status["timestamp"]), assume_utc=True).timestamp()
    except (KeyError, ValueError):
        return ["the status snapshot has no readable timestamp"]
    age = now - taken
    interval = float(status.get("interval_sec") or 60)
    if age > 2 * interval + STALE_SLACK_SEC:
        out.append(f"the status snapshot is {age:.0f} s old (interval {interval:g} s): the daemon is gone or wedged")
    if status.get("telemetry_failing"):
        out.append("telemetry writes are failing")
    silent = status.get("silent_peers") or []
    if silent:
        out.append(f"silent peers: {', '.join(map(str, silent))}")
    for reason in status.get("reasons") or []:
        if "telemetry writes failing" not in str(reason):
            out.append(str(reason))
    stale = status.get("stale_tasks") or {}
    if stale:
        out.append(f"tasks without progress: {', '.join(f'{k} ({v} s)' for k, v in stale.items())}")
    return out
