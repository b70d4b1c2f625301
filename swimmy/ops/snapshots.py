"""Snapshot files (SPEC §7): metrics.json / status.json every interval, written atomically."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import structlog

from swimmy.clock import Clock
from swimmy.config import SnapshotsConfig
from swimmy.files import atomic_write
from swimmy.ops.figures import Figures
from swimmy.telemetry.envelope import SCHEMA_VERSION, TimestampFormatter
from swimmy.telemetry.queue import Emit

log = structlog.get_logger(logger_name="swimmy.snapshots")


STATUS_KEYS = ("status", "reasons", "run_id", "pid", "version", "config_hash", "uptime_sec", "stale_tasks",
               "stop_reason")


def split_snapshots(
    figures: Figures, timestamp: str, interval_sec: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics.json, status.json) bodies: every figure, and the health an operator checks first."""
    head = {"schema_version": SCHEMA_VERSION, "timestamp": timestamp}
    every = figures.as_json()
    metrics = {**head, **every}
    status = {**head, **{k: every.get(k) for k in STATUS_KEYS}, "interval_sec": interval_sec,
              "telemetry_failing": figures.telemetry.failing,
              "silent_peers": list(figures.peers.silent) if figures.peers is not None else []}
    return metrics, status


class SnapshotWriter:
    """Writes metrics.json and status.json atomically every `interval_sec`, then says so in the stream."""

    def update_config(self, cfg: SnapshotsConfig) -> None:
        """A reload: the interval (the directory needs a restart)."""
        self.interval_sec = cfg.interval_sec

    def __init__(self, directory: Path, interval_sec: float, figures: Callable[[], Figures], emit: Emit,
                 clock: Clock, *, on_progress: Callable[[], None] | None = None) -> None:
        self.directory = Path(directory)
        self.interval_sec = interval_sec
        self._figures = figures
        self._emit = emit
        self._clock = clock
        self._on_progress = on_progress or (lambda: None)
        self._stamp = TimestampFormatter()
        self.written = 0
        self.errors = 0

    async def write_once(self, **override: Any) -> None:
        """One pair of snapshots (the file I/O in a thread: fsync must not stall the loop); `override` replaces
        figures by name (the last pair: status="STOPPED", stop_reason=...)."""
        figures = replace(self._figures(), **override)
        metrics, status = split_snapshots(figures, self._stamp(self._clock.time()), self.interval_sec)
        for name, body, event, service in (("metrics.json", metrics, "metrics.snapshot", "school"),
                                           ("status.json", status, "status.snapshot", "shell")):
            path = self.directory / name
            blob = orjson.dumps(body, option=orjson.OPT_INDENT_2, default=str)
            try:
                await asyncio.to_thread(_write, path, blob)
            except OSError as exc:
                self.errors += 1
                log.warning("snapshot not written", path=str(path), error=f"{exc.strerror or exc}")
                continue
            self.written += 1
            key = {"status": figures.status, "queue_depth": figures.telemetry.queue_depth,
                   "strategies": figures.strategies, "uptime_sec": figures.uptime_sec}
            self._emit(event, service=service, correlation_id=str(uuid.uuid4()),
                       data={"path": str(path), "bytes": len(blob), **key})

    async def run(self) -> None:
        """Write every interval; wake every second for progress."""
        while True:
            await self.write_once()
            waited = 0.0
            while waited < self.interval_sec:
                self._on_progress()
                step = min(1.0, self.interval_sec - waited)
                await self._clock.sleep(step)
                waited += step


def _write(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, blob)
