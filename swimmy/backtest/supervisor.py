"""Embedded workers (SPEC §1): `workers.embedded` `swimmy worker` processes, restarted when they die.

A worker that exits is `worker.exited` (error) and comes back after a backoff
that doubles from 1 s to 60 s (reset once a worker has lived a minute):
`worker.restarted` then `worker.started`. At stop they get SIGTERM and a
bounded wait, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swimmy.backoff import capped_backoff
from swimmy.clock import Clock
from swimmy.ops.systemd import child_env
from swimmy.telemetry.queue import Emit

PARENT_PID_ENV = "SWIMMY_PARENT_PID"
WORK_ENDPOINT_ENV = "SWIMMY_WORK_ENDPOINT"  # the daemon's private Unix socket for its embedded workers
BACKOFF_MIN_SEC = 1.0
BACKOFF_MAX_SEC = 60.0
STABLE_SEC = 60.0
STOP_WAIT_SEC = 7.0  # a worker finishes the backtest in hand first (its own grace is 5 s)
TICK_SEC = 1.0


@dataclass
class _Slot:
    worker_id: str
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_sec: float = 0.0
    restart_at: float | None = None


class WorkerSupervisor:
    """Starts, watches, restarts and stops the embedded worker processes."""

    def __init__(self, config_path: Path | None, count: int, emit: Emit, clock: Clock, *, id_prefix: str = "embedded",
                 on_progress: Callable[[], None] | None = None, on_change: Callable[[], None] | None = None,
                 on_exit: Callable[[str, str], None] | None = None, endpoint: str | None = None) -> None:
        if count and config_path is None:
            raise ValueError("embedded workers need the path of the config file they load")
        self.config_path = config_path
        self._emit = emit
        self._clock = clock
        self._on_progress = on_progress or (lambda: None)
        self._on_change = on_change or (lambda: None)
        self._on_exit = on_exit or (lambda worker_id, reason: None)  # its requests are re-queued at once
        self._slots = [_Slot(f"{id_prefix}-{n}") for n in range(1, count + 1)]
        self.endpoint = endpoint  # where the workers connect instead of zmq.backtest_endpoint (None: there)
        self._stopping = False
        self.spawned = False  # the first round of starts is done (before it, "none alive" is not a fault)

    @property
    def configured(self) -> int:
        """How many workers should be running."""
        return len(self._slots)

    def alive(self) -> int:
        """How many worker processes are running now."""
        return sum(1 for s in self._slots if s.proc is not None and s.proc.returncode is None)

    def pids(self) -> dict[str, int]:
        """Worker id -> pid of the live ones."""
        return {s.worker_id: s.proc.pid for s in self._slots if s.proc is not None and s.proc.returncode is None}

    async def _spawn(self, slot: _Slot) -> None:
        slot.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "swimmy", "worker", "--config", str(self.config_path), "--id", slot.worker_id,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            # The notify socket and the watchdog are the daemon's, not its workers'; the parent pid lets an
            # embedded worker follow its daemon if the daemon is killed without a chance to stop it.
            env={**child_env(), PARENT_PID_ENV: str(os.getpid()),
                 **({WORK_ENDPOINT_ENV: self.endpoint} if self.endpoint else {})},
        )
        slot.started_at = self._clock.monotonic()
        slot.restart_at = None
        self._emit("worker.started", service="engine", correlation_id=slot.worker_id,
                   data={"worker": slot.worker_id, "pid": slot.proc.pid, "restarts": slot.restarts,
                         "endpoint": self.endpoint or "zmq.backtest_endpoint"})
        self._on_change()

    async def run(self) -> None:
        """Start every worker, then watch them once a second (and at once when one exits)."""
        for slot in self._slots:
            await self._spawn(slot)
        self.spawned = True
        while not self._stopping:
            self._on_progress()
            waits = [asyncio.ensure_future(s.proc.wait()) for s in self._slots
                     if s.proc is not None and s.proc.returncode is None]
            try:
                if waits:
                    await asyncio.wait(waits, timeout=TICK_SEC, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await self._clock.sleep(TICK_SEC)
            finally:
                for w in waits:
                    w.cancel()
            await self._tend()

    async def _tend(self) -> None:
        now = self._clock.monotonic()
        for slot in self._slots:
            proc = slot.proc
            if proc is not None and proc.returncode is not None and slot.restart_at is None:
                lived = now - slot.started_at
                slot.backoff_sec = capped_backoff(None if lived >= STABLE_SEC else slot.backoff_sec,
                                                  base_sec=BACKOFF_MIN_SEC, cap_sec=BACKOFF_MAX_SEC)
                slot.restart_at = now + slot.backoff_sec
                self._emit("worker.exited", service="engine", severity="error", correlation_id=slot.worker_id,
                           data={"worker": slot.worker_id, "pid": proc.pid, "exit_code": proc.returncode,
                                 "restarts": slot.restarts, "lived_sec": round(lived, 3),
                                 "restart_in_sec": slot.backoff_sec})
                self._on_exit(slot.worker_id, f"process exited with code {proc.returncode}")
                self._on_change()
            if slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                slot.restarts += 1
                self._emit("worker.restarted", service="engine", severity="warning", correlation_id=slot.worker_id,
                           data={"worker": slot.worker_id, "restarts": slot.restarts,
                                 "previous_pid": proc.pid if proc else None})
                await self._spawn(slot)

    async def stop(self) -> None:
        """SIGTERM every worker, wait a bounded time, SIGKILL what is left (idempotent)."""
        self._stopping = True
        procs = [s.proc for s in self._slots if s.proc is not None and s.proc.returncode is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        if procs:
            _, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=STOP_WAIT_SEC)
            for proc in procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            for task in pending:
                await task
