"""The daemon's lifecycle: the one place that starts the services and stops them in order.

startup (locks, telemetry file and writer, `daemon.started`, the store, the services of services.py, the
control and metrics listeners, signals), serve (every service a child of one TaskGroup plus a one-second
supervise tick), shutdown in a `finally` (`daemon.stopping`, a bounded grace, cancel, the last snapshot,
`daemon.stopped`, then the writer's drain under `telemetry.drain_timeout_sec`). The writer lives outside the
TaskGroup so a crashing service can't cancel it before it drains. What the run ends with is returned as a
`StopSummary`, which the CLI prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TextIO

import structlog

from swimmy import __version__
from swimmy.clock import Clock, SystemClock
from swimmy.config import Config, webhook_urls
from swimmy.daemon.debug import burst
from swimmy.daemon.front import Front, start_front, updaters
from swimmy.daemon.health import Progress, status_line
from swimmy.daemon.lockfile import LockFile, acquire_all
from swimmy.daemon.loopwatch import LoopWatch, dump_tasks
from swimmy.daemon.reload import Updater, reload_config
from swimmy.daemon.services import Services, Telemetry, build_services, figures_of, reasons_of
from swimmy.daemon.stopping import close_all, drain, grace
from swimmy.errors import StoreError
from swimmy.notify.alerts import ALERT_EVENTS, alert_for
from swimmy.notify.discord import DiscordNotifier
from swimmy.ops.figures import Figures
from swimmy.ops.systemd import Notifier
from swimmy.store import Store
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.logbridge import LogBridge, configure_logging, reset_logging
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import TelemetryWriter
from swimmy.view.story import Story
from swimmy.wire.zmq import ZMQError, prepare_security

SUPERVISE_TICK_SEC = 1.0

log = structlog.get_logger(logger_name="swimmy.daemon")


@dataclass(frozen=True, slots=True)
class StopSummary:
    """How the run ended, for the CLI's last lines: `lines` go to stderr, `code` is the exit code."""

    code: int
    lines: tuple[str, ...]


class Daemon:
    """One `swimmy run` process. Construct, then `await serve()` for the exit code."""

    def __init__(self, cfg: Config, *, exit_after_sec: float | None = None, clock: Clock | None = None,
                 stderr: TextIO | None = None, console: bool = False) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.exit_after_sec = exit_after_sec
        self.stderr = stderr or sys.stderr  # the log bridge's console
        self.run_id = str(uuid.uuid4())
        queue = EventQueue(cfg.telemetry.queue_size, time_fn=self.clock.time)
        self.emit = queue.emit
        encoder = Encoder(run_id=self.run_id, pid=os.getpid(), host=socket.gethostname(),
                          max_event_bytes=cfg.telemetry.max_event_bytes)
        self.progress = Progress(self.clock.monotonic)
        writer = TelemetryWriter(cfg.telemetry, queue, encoder, on_progress=self.progress.beater("telemetry-writer"),
                                 on_state_change=self._on_telemetry_state)
        self.telemetry = Telemetry(queue, encoder, writer)
        self.loopwatch = LoopWatch(self.emit, self.run_id)
        self.sd = Notifier()
        heartbeat_url, alerts_url = webhook_urls(cfg.discord)
        self.notifier = DiscordNotifier(cfg.discord, self.emit, self.clock, heartbeat_url=heartbeat_url,
                                        alerts_url=alerts_url, on_progress=self.progress.beater("discord"))
        queue.listen(ALERT_EVENTS, self._alert)
        self.story = Story(self.stderr, wall=self.clock.time) if console else None  # the foreground's story
        if self.story is not None:
            queue.listen(self.story.events, self.story.on_event)
        self._locks = [LockFile(cfg.telemetry.path, f"telemetry path {cfg.telemetry.path}"),
                       LockFile(cfg.school.db_path, f"database {cfg.school.db_path}")]
        self.services: Services | None = None
        self.front: Front | None = None
        self._bridge: LogBridge | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._stop_reason: str | None = None
        self._force = False
        self._reload_requested = self._dump_requested = self._stopping_emitted = False
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._forced = asyncio.Event()
        self._signals: list[signal.Signals] = []
        self._updaters: list[Updater] = []

    async def serve(self) -> StopSummary:
        """Run until a stop signal, --exit-after or a crash; how it ended and the exit code.

        ConfigError (security plan, key files) and LockHeldError propagate before anything is touched; the
        CLI turns them into exit 2.
        """
        curve, keys = prepare_security(self.cfg.zmq, self.cfg.control.endpoint)
        acquire_all(self._locks)
        code, lines = 1, []
        try:
            self._start_telemetry()
            try:
                await self._start(curve, keys)
            except (ZMQError, StoreError) as exc:
                self._stop_reason = f"startup failed: {exc}"
                log.error("start-up failed", error=str(exc))
                lines.append(f"swimmy: {exc}")
            else:
                self._install_signals()
                self._announce()
                code = await self._serve()
        finally:
            drained, drain_lines = await self._shutdown()
            code, lines = max(code, drained), [*lines, *drain_lines]
            for lock in self._locks:
                lock.release()
        return StopSummary(code, tuple(lines))

    def figures(self) -> Figures:
        """Every operator figure now (the daemon is serving)."""
        if self.services is None:
            raise RuntimeError("figures are asked for before the services exist")
        return figures_of(self.services, self.cfg)

    def health_status(self) -> str:
        """OK, or DEGRADED when the daemon knows something is wrong."""
        return "DEGRADED" if self.degraded_reasons() else "OK"

    def degraded_reasons(self) -> list[str]:
        """The health verdict (daemon/health.py) over the running services; none before they exist."""
        return reasons_of(self.services, self.cfg) if self.services is not None else []

    def uptime_sec(self) -> float:
        """Seconds since start-up."""
        return round(self.clock.monotonic() - self._started_at, 3)

    def request_stop(self, reason: str) -> None:
        """Ask for an orderly stop; a second request skips the grace wait (never the drain)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        else:
            self._force = True
            self._forced.set()
        self._stop_requested.set()

    # -- startup -----------------------------------------------------------------------------

    def _start_telemetry(self) -> None:
        self._started_at = self.clock.monotonic()
        t = self.telemetry
        t.queue.bind_loop(asyncio.get_running_loop())
        pruned = t.writer.open()
        self._writer_task = asyncio.create_task(t.writer.run(), name="telemetry-writer")
        self._bridge = configure_logging(t.queue, self.cfg.telemetry.log_level, self.stderr)
        self.emit("daemon.started", service="core", correlation_id=self.run_id, data={
            "version": __version__, "config_path": str(self.cfg.source) if self.cfg.source else None,
            "config_hash": self.cfg.config_hash, "pid": os.getpid(), "workers": self.cfg.workers.embedded,
            "telemetry_path": str(self.cfg.telemetry.path), "pruned_backups": list(pruned)})

    async def _start(self, curve: frozenset[str], keys: Any) -> None:
        """The store, the services and the listeners in front of them. ZMQError / StoreError name the cause."""
        cfg = self.cfg
        store = Store.open(cfg.school.db_path)
        try:
            s = build_services(cfg, run_id=self.run_id, clock=self.clock, started_at=self._started_at,
                               telemetry=self.telemetry, progress=self.progress, loopwatch=self.loopwatch,
                               notifier=self.notifier, store=store, keys=keys, curve=curve, health=self.health_status)
        except BaseException:
            store.close()
            raise
        self.services = s
        self.front = await start_front(s, cfg, config=lambda: self.cfg, figures=self.figures,
                                       health=self.health_status, reasons=self.degraded_reasons)
        self._updaters = updaters(s, self.front, self._bridge)

    def _install_signals(self) -> None:
        """Handlers that only record what was asked; the supervise tick acts on it."""
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, lambda: self.request_stop("SIGTERM")),
                             (signal.SIGINT, lambda: self.request_stop("SIGINT")),
                             (signal.SIGHUP, self._on_sighup), (signal.SIGUSR1, self._on_sigusr1)):
            loop.add_signal_handler(sig, handler)
            self._signals.append(sig)

    def _announce(self) -> None:
        """Serving: the loop watch, READY=1 to systemd, the frozen start-up heap, the log lines."""
        self.loopwatch.start()
        self.sd.ready(self._status_line())
        # Start-up objects (modules, config, sockets) live as long as the process: keep them out of
        # every later collection, so a GC pass walks only what the daemon allocates while it runs.
        gc.freeze()
        for warning in self.cfg.warnings:
            log.warning(warning)
        log.info("swimmy started", run_id=self.run_id, telemetry=str(self.cfg.telemetry.path),
                 hint=f"watch it: swimmy tail -f --path {self.cfg.telemetry.path}")

    def _alert(self, event_type: str, severity: str, correlation_id: Any, data: Any) -> None:
        note = alert_for(event_type, severity, correlation_id, data)
        if note is not None:
            self.notifier.submit(note)

    def _on_telemetry_state(self, failing: bool) -> None:
        path = str(self.cfg.telemetry.path)
        if failing:
            log.error("telemetry writes are failing; events are kept and retried",
                      error=self.telemetry.writer.last_error, path=path)
        else:
            log.warning("telemetry writes recovered", path=path)

    def _on_sighup(self) -> None:
        self._reload_requested = True
        self._wakeup.set()

    def _on_sigusr1(self) -> None:
        self._dump_requested = True
        self._wakeup.set()

    # -- serve -------------------------------------------------------------------------------

    async def _serve(self) -> int:
        work: list[asyncio.Task[Any]] = []  # finishes on its own: gets the grace period
        loops: list[asyncio.Task[Any]] = []  # runs until cancelled: stopped at once (stop taking new work)
        crashed = False
        try:
            async with asyncio.TaskGroup() as tg:
                supervisor = tg.create_task(self._supervise(), name="supervisor")

                def start(coro: Coroutine[Any, Any, Any], name: str, *, finite: bool = False) -> None:
                    (work if finite else loops).append(tg.create_task(coro, name=name))

                self._start_services(start)
                await self._stop_requested.wait()
                self._emit_stopping()
                for task in loops:
                    task.cancel(f"swimmy stopping: {self._stop_reason}")
                    self.progress.forget(task.get_name())  # stopped on purpose: not a /healthz failure
                await grace(work, self.notifier, self._forced, self._force)
                for task in [*work, supervisor]:
                    task.cancel(f"swimmy stopping: {self._stop_reason}")
        except* Exception as group:
            for exc in group.exceptions:
                log.error("a task crashed; stopping", error=repr(exc), exc_info=exc)
            if self._stop_reason is None:
                self._stop_reason = f"crash: {group.exceptions[0]!r}"
            crashed = True
        return 1 if crashed else 0

    def _start_services(self, start: Callable[..., None]) -> None:
        """Every long-lived service is started here."""
        s, front = self.services, self.front
        if s is None or front is None:
            raise RuntimeError("the services are started before they are built")
        start(s.publisher.run(), "heartbeat")
        start(s.dispatcher.run(list(s.pull_sockets)), "dispatcher")
        start(s.peers.run(), "peer-monitor")
        start(front.control.run(), "control")
        start(s.backtests.run(), "backtest-client")
        if s.workers.configured:
            start(s.workers.run(), "workers")
        start(s.school.run(), "school")
        start(front.snapshots.run(), "snapshots")
        start(front.discord.run(), "discord-heartbeat")
        start(front.dashboard.run(), "dashboard")
        start(self.notifier.run(), "discord", finite=True)  # stopped after a short flush, see _grace
        if self.cfg.debug.burst_on_start:
            start(burst(self.telemetry.queue, self.cfg.debug.burst_on_start), "debug-burst", finite=True)

    async def _supervise(self) -> None:
        deadline = None if self.exit_after_sec is None else self._started_at + self.exit_after_sec
        while True:
            self.progress.beat("supervisor")
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            if self._dump_requested:
                self._dump_requested = False
                dump_tasks(self.emit, self.run_id, "SIGUSR1", self.loopwatch.last_lag_ms)
            self.sd.tick(self.clock.monotonic(), not self.progress.stale(), self._status_line())
            if self.story is not None and self.services is not None and self.story.due(self.clock.monotonic()):
                self.story.tick(self.clock.monotonic(), self.figures())
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

    def _status_line(self) -> str:
        workers = self.services.workers if self.services is not None else None
        return status_line(self.degraded_reasons(), workers.alive() if workers else 0,
                           workers.configured if workers else 0)

    def _reload(self) -> None:
        """SIGHUP: reopen the telemetry file, then apply the reloadable keys of the file as it is now."""
        self.sd.reloading()
        try:
            self.telemetry.writer.request_reopen()
            self.cfg = reload_config(self.cfg, self._updaters, self.emit, self.run_id)
        finally:
            self.sd.ready(self._status_line())  # always: systemd would otherwise leave the unit "reloading"

    # -- shutdown ----------------------------------------------------------------------------

    def _emit_stopping(self) -> None:
        if self._stopping_emitted:
            return
        self._stopping_emitted = True
        self.sd.stopping()
        queued = len(self.telemetry.queue)
        log.info("swimmy stopping", reason=self._stop_reason or "unknown", queued=queued)
        self.emit("daemon.stopping", service="core", correlation_id=self.run_id,
                  data={"reason": self._stop_reason or "unknown", "uptime_sec": self.uptime_sec(), "queued": queued})

    async def _shutdown(self) -> tuple[int, list[str]]:
        """Stop everything, then drain the event stream: (exit code, the lines the CLI prints)."""
        self._emit_stopping()
        self.loopwatch.stop()
        await close_all(self.services, self.front, self.notifier, self._stop_reason)
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        if self._writer_task is None:
            return 1, []  # start-up failed before the writer existed
        # A second signal during the drain must not kill the process: it is ignored here on purpose.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: None)
        try:
            code, lines = await drain(self.telemetry.queue, self.telemetry.writer, self._writer_task,
                                      timeout_sec=self.cfg.telemetry.drain_timeout_sec, clock=self.clock,
                                      stopped=self._emit_stopped, reason=self._stop_reason)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        reset_logging()
        if self.story is not None:
            self.story.close()
        self.sd.close()
        return code, lines

    def _emit_stopped(self) -> None:
        writer, queue = self.telemetry.writer, self.telemetry.queue
        self.emit("daemon.stopped", service="core", correlation_id=self.run_id,
                  data={"reason": self._stop_reason or "unknown", "uptime_sec": self.uptime_sec(),
                        "events_written": writer.written, "dropped": queue.dropped_total})
