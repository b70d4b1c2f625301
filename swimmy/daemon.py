"""The daemon: the one place that starts the services and stops them in order.

startup (locks, telemetry file and writer, `daemon.started`, signals), serve
(every service a child of one TaskGroup plus a one-second supervise tick),
shutdown in a `finally` (`daemon.stopping`, a bounded grace, cancel,
`daemon.stopped`, then the writer's drain under `telemetry.drain_timeout_sec`).
The writer lives outside the TaskGroup so a crashing service can't cancel it
before it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import structlog

from swimmy import __version__
from swimmy.clock import Clock, SystemClock
from swimmy.config import Config, load_config, plan_reload
from swimmy.errors import ConfigError
from swimmy.health import Progress
from swimmy.lockfile import LockFile
from swimmy.loopwatch import LoopWatch, dump_tasks
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.logbridge import LogBridge, configure_logging, reset_logging
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import TelemetryWriter

GRACE_SEC = 5.0  # in-flight work gets this long after a stop request; a second signal skips it
SUPERVISE_TICK_SEC = 1.0
BURST_CHUNK = 1000

log = structlog.get_logger(logger_name="swimmy.daemon")


class Daemon:
    """One `swimmy run` process. Construct, then `await serve()` for the exit code."""

    def __init__(
        self,
        cfg: Config,
        *,
        exit_after_sec: float | None = None,
        clock: Clock | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.exit_after_sec = exit_after_sec
        self.stderr = stderr or sys.stderr
        self.run_id = str(uuid.uuid4())
        self.queue = EventQueue(cfg.telemetry.queue_size, time_fn=self.clock.time)
        self.emit = self.queue.emit
        self.encoder = Encoder(
            run_id=self.run_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            max_event_bytes=cfg.telemetry.max_event_bytes,
        )
        self.progress = Progress(self.clock.monotonic)
        self.writer = TelemetryWriter(
            cfg.telemetry,
            self.queue,
            self.encoder,
            on_progress=self.progress.beater("telemetry-writer"),
            on_state_change=self._on_telemetry_state,
        )
        self.loopwatch = LoopWatch(self.emit, self.run_id)
        self._locks = [
            LockFile(cfg.telemetry.path, f"telemetry path {cfg.telemetry.path}"),
            LockFile(cfg.school.db_path, f"database {cfg.school.db_path}"),
        ]
        self._bridge: LogBridge | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._stop_reason: str | None = None
        self._force = False
        self._reload_requested = False
        self._dump_requested = False
        self._stopping_emitted = False
        self._wakeup: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._forced: asyncio.Event | None = None
        self._signals: list[signal.Signals] = []

    # -- public ------------------------------------------------------------------------------

    async def serve(self) -> int:
        """Run until a stop signal, --exit-after or a crash; return the process exit code."""
        self._startup()
        code = 0
        try:
            code = await self._serve()
        finally:
            code = max(code, await self._shutdown())
        return code

    def request_stop(self, reason: str) -> None:
        """Ask for an orderly stop; a second request skips the grace wait (never the drain)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        else:
            self._force = True
            if self._forced is not None:
                self._forced.set()
        if self._stop_requested is not None:
            self._stop_requested.set()

    # -- startup -----------------------------------------------------------------------------

    def _startup(self) -> None:
        acquired: list[LockFile] = []
        try:
            for lock in self._locks:
                lock.acquire()
                acquired.append(lock)
        except BaseException:
            for lock in acquired:
                lock.release()
            raise
        loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._forced = asyncio.Event()
        self._started_at = self.clock.monotonic()
        self.queue.bind_loop(loop)
        pruned = self.writer.open()
        self._writer_task = asyncio.create_task(self.writer.run(), name="telemetry-writer")
        self._bridge = configure_logging(self.queue, self.cfg.telemetry.log_level, self.stderr)
        self.emit(
            "daemon.started",
            service="core",
            correlation_id=self.run_id,
            data={
                "version": __version__,
                "config_path": str(self.cfg.source) if self.cfg.source else None,
                "config_hash": self.cfg.config_hash,
                "pid": os.getpid(),
                "workers": self.cfg.workers.embedded,
                "telemetry_path": str(self.cfg.telemetry.path),
                "pruned_backups": list(pruned),
            },
        )
        for sig, handler in (
            (signal.SIGTERM, lambda: self.request_stop("SIGTERM")),
            (signal.SIGINT, lambda: self.request_stop("SIGINT")),
            (signal.SIGHUP, self._on_sighup),
            (signal.SIGUSR1, self._on_sigusr1),
        ):
            loop.add_signal_handler(sig, handler)
            self._signals.append(sig)
        self.loopwatch.start()
        log.info(
            "swimmy started",
            run_id=self.run_id,
            telemetry=str(self.cfg.telemetry.path),
            hint=f"watch it: swimmy tail -f --path {self.cfg.telemetry.path}",
        )

    def _on_telemetry_state(self, failing: bool) -> None:
        if failing:
            log.error("telemetry writes are failing; events are kept and retried", error=self.writer.last_error,
                      path=str(self.cfg.telemetry.path))
        else:
            log.warning("telemetry writes recovered", path=str(self.cfg.telemetry.path))

    def _on_sighup(self) -> None:
        self._reload_requested = True
        self._wake()

    def _on_sigusr1(self) -> None:
        self._dump_requested = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- serve -------------------------------------------------------------------------------

    async def _serve(self) -> int:
        assert self._stop_requested is not None and self._forced is not None
        work: list[asyncio.Task[Any]] = []
        crashed = False
        try:
            async with asyncio.TaskGroup() as tg:
                supervisor = tg.create_task(self._supervise(), name="supervisor")

                def start(coro: Coroutine[Any, Any, Any], name: str) -> None:
                    work.append(tg.create_task(coro, name=name))

                self._start_services(start)
                await self._stop_requested.wait()
                self._emit_stopping()
                await self._grace(work)
                for task in [*work, supervisor]:
                    task.cancel(f"swimmy stopping: {self._stop_reason}")
        except* Exception as group:
            for exc in group.exceptions:
                log.error("a task crashed; stopping", error=repr(exc), exc_info=exc)
            if self._stop_reason is None:
                self._stop_reason = f"crash: {group.exceptions[0]!r}"
            crashed = True
        return 1 if crashed else 0

    def _start_services(self, start: Callable[[Coroutine[Any, Any, Any], str], None]) -> None:
        """Every long-lived service is started here (the later issues add theirs)."""
        if self.cfg.debug.burst_on_start:
            start(self._burst(self.cfg.debug.burst_on_start), "debug-burst")

    async def _grace(self, work: list[asyncio.Task[Any]]) -> None:
        """Let in-flight work finish for up to GRACE_SEC, or until a second stop signal."""
        assert self._forced is not None
        pending = [t for t in work if not t.done()]
        if not pending or self._force:
            return
        forced = asyncio.ensure_future(self._forced.wait())
        finished = asyncio.ensure_future(asyncio.wait(pending))
        try:
            await asyncio.wait([forced, finished], timeout=GRACE_SEC, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
            finished.cancel()

    async def _supervise(self) -> None:
        assert self._wakeup is not None
        deadline = None if self.exit_after_sec is None else self._started_at + self.exit_after_sec
        while True:
            self.progress.beat("supervisor")
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            if self._dump_requested:
                self._dump_requested = False
                dump_tasks(self.emit, self.run_id, "SIGUSR1", self.loopwatch.last_lag_ms)
            timeout = SUPERVISE_TICK_SEC
            if deadline is not None:
                left = deadline - self.clock.monotonic()
                if left <= 0:
                    self.request_stop("exit_after")
                    deadline = None
                else:
                    timeout = min(timeout, left)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _reload(self) -> None:
        """SIGHUP: reopen the telemetry file, then apply the reloadable keys of the file as it is now."""
        self.writer.request_reopen()
        if self.cfg.source is None:
            return
        try:
            new = load_config(self.cfg.source)
        except ConfigError as exc:
            self.emit(
                "config.reload_failed",
                service="core",
                severity="error",
                correlation_id=self.run_id,
                data={"error": str(exc), "problems": exc.problems, "config_path": str(self.cfg.source)},
            )
            log.error("config reload failed; keeping the running config", problems=exc.problems)
            return
        plan = plan_reload(self.cfg, new)
        self.cfg = plan.config
        if self._bridge is not None:
            self._bridge.level = self.cfg.telemetry.log_level
        self.emit(
            "config.reloaded",
            service="core",
            correlation_id=self.run_id,
            data={"changed": plan.changed, "needs_restart": plan.needs_restart, "config_hash": self.cfg.config_hash},
        )
        log.info("config reloaded", changed=plan.changed, needs_restart=plan.needs_restart)

    async def _burst(self, count: int) -> None:
        """[debug] burst_on_start: `count` synthetic events, in chunks that wait for room in the queue."""
        burst_id = str(uuid.uuid4())
        emit = self.emit
        for start in range(0, count, BURST_CHUNK):
            # A test facility: polling for room keeps the queue free of a second, producer-side waiter.
            while len(self.queue) > self.queue.maxsize - BURST_CHUNK:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            for i in range(start, min(start + BURST_CHUNK, count)):
                emit("debug.burst", service="core", severity="debug", correlation_id=burst_id,
                     data={"i": i, "n": count})
            await asyncio.sleep(0)

    # -- shutdown ----------------------------------------------------------------------------

    def _emit_stopping(self) -> None:
        if self._stopping_emitted:
            return
        self._stopping_emitted = True
        log.info("swimmy stopping", reason=self._stop_reason or "unknown", queued=len(self.queue))
        self.emit(
            "daemon.stopping",
            service="core",
            correlation_id=self.run_id,
            data={"reason": self._stop_reason or "unknown", "uptime_sec": self._uptime(), "queued": len(self.queue)},
        )

    def _uptime(self) -> float:
        return round(self.clock.monotonic() - self._started_at, 3)

    async def _shutdown(self) -> int:
        self._emit_stopping()
        self.loopwatch.stop()
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        # A second signal during the drain must not kill the process: it is ignored here on purpose.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: None)
        code = 0
        deadline = time.monotonic() + self.cfg.telemetry.drain_timeout_sec
        assert self._writer_task is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.writer.flush(), timeout=self.cfg.telemetry.drain_timeout_sec)
        self.emit(
            "daemon.stopped",
            service="core",
            correlation_id=self.run_id,
            data={
                "reason": self._stop_reason or "unknown",
                "uptime_sec": self._uptime(),
                "events_written": self.writer.written,
                "dropped": self.queue.dropped_total,
            },
        )
        self.queue.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._writer_task), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            lost = len(self.queue) + self.writer.pending_lines
            self._writer_task.cancel()
            await asyncio.gather(self._writer_task, return_exceptions=True)
            print(
                f"swimmy: telemetry drain did not finish within {self.cfg.telemetry.drain_timeout_sec:g}s "
                f"({self.writer.last_error or 'writer stuck'}): {lost} events lost",
                file=self.stderr,
                flush=True,
            )
            code = 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if self.queue.dropped_after_close:
            print(f"swimmy: {self.queue.dropped_after_close} events emitted after the writer closed were lost",
                  file=self.stderr, flush=True)
        if code == 0:
            # Plain stderr: the log bridge's queue is closed by now.
            print(f"swimmy: stopped ({self._stop_reason}); {self.writer.written} events written, "
                  f"{self.queue.dropped_total} dropped", file=self.stderr, flush=True)
        reset_logging()
        for lock in self._locks:
            lock.release()
        return code
