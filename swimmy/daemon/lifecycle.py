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
import gc
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
from swimmy.backtest.client import BacktestClient
from swimmy.backtest.data import universe_name
from swimmy.backtest.supervisor import WorkerSupervisor
from swimmy.clock import Clock, SystemClock
from swimmy.config import Config, instrument_costs, load_config, plan_reload, webhook_urls
from swimmy.daemon.commands import SLOW_COMMANDS, build_commands
from swimmy.daemon.control import ControlServer
from swimmy.daemon.health import Progress
from swimmy.daemon.lockfile import LockFile
from swimmy.daemon.loopwatch import LoopWatch, dump_tasks
from swimmy.errors import ConfigError, StoreError
from swimmy.notify.alerts import ALERT_EVENTS, alert_for
from swimmy.notify.discord import DiscordNotifier, heartbeat_notification
from swimmy.ops.figures import Figures, collect, summary_lines
from swimmy.ops.metrics_http import MetricsServer
from swimmy.ops.snapshots import SnapshotWriter
from swimmy.ops.systemd import Notifier, watchdog_due
from swimmy.peers.heartbeat import HeartbeatPublisher
from swimmy.peers.monitor import PeerMonitor, PeerTable
from swimmy.school.loop import School
from swimmy.store import Store
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.logbridge import LogBridge, configure_logging, reset_logging
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import TelemetryWriter
from swimmy.wire.dispatcher import Dispatcher, heartbeat_handler
from swimmy.wire.zmq import PUB, PULL, ROUTER, CurveKeys, Wire, ZMQError, prepare_security, router_mandatory, try_send

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
        self.sd = Notifier()
        self._watchdog_at: float | None = None
        self._sd_status = ""
        heartbeat_url, alerts_url = webhook_urls(cfg.discord)
        self.notifier: DiscordNotifier | None = DiscordNotifier(
            cfg.discord, self.emit, self.clock, heartbeat_url=heartbeat_url, alerts_url=alerts_url,
            on_progress=self.progress.beater("discord"))
        self.queue.listen(ALERT_EVENTS, self._alert)
        self.snapshots = SnapshotWriter(cfg.snapshots.dir, cfg.snapshots.interval_sec, self.figures, self.emit,
                                        self.clock, on_progress=self.progress.beater("snapshots"))
        self.metrics: MetricsServer | None = None
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
        self._curve: frozenset[str] = frozenset()
        self.wire: Wire | None = None
        self._pull_sockets: list[Any] = []
        self.publisher: HeartbeatPublisher | None = None
        self.peers: PeerMonitor | None = None
        self.dispatcher: Dispatcher | None = None
        self.control: ControlServer | None = None
        self.backtests: BacktestClient | None = None
        self.store: Store | None = None
        self.school: School | None = None
        self.workers: WorkerSupervisor | None = None

    # -- public ------------------------------------------------------------------------------

    async def serve(self) -> int:
        """Run until a stop signal, --exit-after or a crash; return the process exit code.

        ConfigError (security plan, key files) and LockHeldError propagate before anything
        is touched; the CLI turns them into exit 2.
        """
        self._curve, keys = prepare_security(self.cfg.zmq, self.cfg.control.endpoint)
        self._acquire_locks()
        code = 1
        try:
            self._start_telemetry()
            try:
                self.store = Store.open(self.cfg.school.db_path)
                self._open_sockets(keys)
                if self.metrics is not None:
                    try:
                        await self.metrics.start()
                    except OSError as exc:
                        raise StoreError(f"cannot listen on metrics.listen {self.cfg.metrics.listen}: "
                                         f"{exc.strerror or exc}") from None
            except (ZMQError, StoreError) as exc:
                self._stop_reason = f"startup failed: {exc}"
                log.error("start-up failed", error=str(exc))
                print(f"swimmy: {exc}", file=self.stderr, flush=True)
            else:
                self._install_signals()
                code = await self._serve()
        finally:
            code = max(code, await self._shutdown())
            for lock in self._locks:
                lock.release()
        return code

    def figures(self) -> Figures:
        """Every operator figure (snapshots, /metrics, the Discord summary)."""
        return collect(self)

    def uptime_sec(self) -> float:
        """Seconds since start-up."""
        return round(self.clock.monotonic() - self._started_at, 3)

    def discord_heartbeat(self) -> str | None:
        """Queue the Discord summary now; its notification id, or None when muted or dropped."""
        if self.notifier is None:
            return None
        figures = self.figures()
        note = heartbeat_notification(figures.status, summary_lines(figures))
        if not self.notifier.submit(note):
            return None
        self.emit("heartbeat.discord_sent", service="engine", correlation_id=note.id,
                  data={"heartbeat_id": note.id, "status": "queued", "daemon_status": figures.status})
        return note.id

    def _alert(self, event_type: str, severity: str, correlation_id: Any, data: Any) -> None:
        note = alert_for(event_type, severity, correlation_id, data)
        if note is not None and self.notifier is not None:
            self.notifier.submit(note)

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

    def _acquire_locks(self) -> None:
        acquired: list[LockFile] = []
        try:
            for lock in self._locks:
                lock.acquire()
                acquired.append(lock)
        except BaseException:
            for lock in acquired:
                lock.release()
            raise

    def _start_telemetry(self) -> None:
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

    def _open_sockets(self, keys: CurveKeys | None) -> None:
        """Bind every endpoint and build the services that own them. Raises ZMQError naming the endpoint."""
        cfg = self.cfg
        wire = self.wire = Wire(cfg.zmq, keys)

        def bind(kind: int, key: str, endpoint: str, linger_ms: int | None = None) -> Any:
            try:
                return wire.bind(kind, endpoint, curve=endpoint in self._curve, linger_ms=linger_ms)
            except ZMQError as exc:
                raise ZMQError(exc.errno, f"cannot bind {key} {endpoint}: {exc.strerror}") from None

        # Heartbeats are disposable: a frozen subscriber must not hold the stop for LINGER.
        pub = bind(PUB, "zmq.pub_endpoint", cfg.zmq.pub_endpoint, linger_ms=0)
        self._pull_sockets = [bind(PULL, "zmq.pull_endpoint", cfg.zmq.pull_endpoint)]
        control_sock = bind(ROUTER, "control.endpoint", cfg.control.endpoint)
        work = bind(ROUTER, "zmq.backtest_endpoint", cfg.zmq.backtest_endpoint)
        router_mandatory(work)
        self.dispatcher = Dispatcher(self.emit, self.clock, max_message_bytes=cfg.zmq.max_message_bytes,
                                     on_progress=self.progress.beater("dispatcher"))
        work_reader = self.dispatcher.work_reader(work)
        self.backtests = BacktestClient(
            lambda identity, payload: work_reader.send([identity, payload]), self.emit, self.clock,
            timeout_sec=cfg.backtest.timeout_sec, worker_timeout_sec=cfg.backtest.worker_timeout_sec,
            max_attempts=cfg.backtest.max_attempts, universe_hash=self._universe_hash, costs_for=self._costs_for,
            on_progress=self.progress.beater("backtest-client"), debug_events=cfg.telemetry.log_level == "debug",
            universes=tuple(universe_name(s, tf) for s, tf in cfg.school.universes()))
        for kind, handler in (("READY", self.backtests.handle_ready), ("BUSY", self.backtests.handle_busy),
                              ("BACKTEST_RESULT", self.backtests.handle_result)):
            self.dispatcher.register_work(kind, handler)
        if cfg.workers.embedded and cfg.source is not None:
            self.workers = WorkerSupervisor(cfg.source, cfg.workers.embedded, self.emit, self.clock,
                                            on_progress=self.progress.beater("workers"),
                                            on_exit=self.backtests.worker_gone)
        self.publisher = HeartbeatPublisher(
            lambda frames: try_send(pub, frames),
            self.emit,
            self.clock,
            interval_sec=cfg.heartbeat.interval_sec,
            version=__version__,
            config_hash=cfg.config_hash,
            status=self.health_status,
            on_progress=self.progress.beater("heartbeat"),
        )
        backtests = self.backtests
        table = PeerTable(cfg.heartbeat.peer_timeout_sec, known=cfg.heartbeat.known_peers,
                          protected=backtests.holds_worker)
        self.peers = PeerMonitor(table, self.emit, self.clock, on_progress=self.progress.beater("peer-monitor"))
        peers = self.peers

        def heard(source: str) -> None:
            peers.heard(source)
            backtests.note_peer(source)

        self.dispatcher.register("HEARTBEAT", heartbeat_handler(self.emit, heard, self.publisher.rtt_ms))
        assert self.store is not None
        self.school = School(cfg, self.store, self.backtests, self.emit, self.clock,
                             on_progress=self.progress.beater("school"), workers_ready=self._workers_ready)
        self.control = ControlServer(control_sock, self.emit, build_commands(self), slow=SLOW_COMMANDS,
                                     on_progress=self.progress.beater("control"))
        if cfg.metrics.listen:
            self.metrics = MetricsServer(cfg.metrics.listen, self.figures, self.progress.stale,
                                         self.degraded_reasons)

    def _workers_ready(self) -> bool:
        """A backtest worker has sent READY and is alive (embedded or not)."""
        return self.backtests is not None and self.backtests.live_workers() > 0

    def _universe_hash(self, universe: str) -> str | None:
        return self.school.universe_hash(universe) if self.school is not None else None

    def _costs_for(self, symbol: str) -> dict[str, float]:
        return instrument_costs(self.cfg, symbol)

    def health_status(self) -> str:
        """OK, or DEGRADED when the daemon knows something is wrong."""
        return "DEGRADED" if self.degraded_reasons() else "OK"

    def degraded_reasons(self) -> list[str]:
        """What is wrong now, in words an operator can act on."""
        reasons = []
        if self.writer.failing:
            reasons.append(f"telemetry writes failing: {self.writer.last_error}")
        if self.workers is not None and self.workers.spawned and self.workers.alive() == 0:
            reasons.append(f"no embedded worker alive (of {self.workers.configured})")
        elif (self.backtests is not None and self.backtests.live_workers() == 0
              and self.uptime_sec() > self._worker_grace_sec()):
            reasons.append("no backtest worker connected: the school waits (start a worker, or check "
                           "zmq.backtest_endpoint and its keys)")
        if self.school is not None:
            for universe, error in sorted(self.school.paused_universes().items()):
                reasons.append(f"universe {universe} paused: {error}")
        return reasons

    def _worker_grace_sec(self) -> float:
        """How long after start-up a fleet of remote workers may take to send READY before it is a reason."""
        return 2 * self.cfg.backtest.worker_timeout_sec

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, handler in (
            (signal.SIGTERM, lambda: self.request_stop("SIGTERM")),
            (signal.SIGINT, lambda: self.request_stop("SIGINT")),
            (signal.SIGHUP, self._on_sighup),
            (signal.SIGUSR1, self._on_sigusr1),
        ):
            loop.add_signal_handler(sig, handler)
            self._signals.append(sig)
        self.loopwatch.start()
        self.sd.ready(self._status_line())
        # Start-up objects (modules, config, sockets) live as long as the process: keep them out of
        # every later collection, so a GC pass walks only what the daemon allocates while it runs.
        gc.freeze()
        for warning in self.cfg.warnings:
            log.warning(warning)
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

    def _start_services(self, start: Callable[..., None]) -> None:
        """Every long-lived service is started here (the later issues add theirs)."""
        assert self.publisher is not None and self.peers is not None
        assert self.dispatcher is not None and self.control is not None
        start(self.publisher.run(), "heartbeat")
        start(self.dispatcher.run(self._pull_sockets), "dispatcher")
        start(self.peers.run(), "peer-monitor")
        start(self.control.run(), "control")
        assert self.backtests is not None
        start(self.backtests.run(), "backtest-client")
        if self.workers is not None:
            start(self.workers.run(), "workers")
        assert self.school is not None
        start(self.school.run(), "school")
        start(self.snapshots.run(), "snapshots")
        start(self._discord_heartbeats(), "discord-heartbeat")
        if self.notifier is not None:
            start(self.notifier.run(), "discord", finite=True)  # stopped after a short flush, see _grace
        if self.cfg.debug.burst_on_start:
            start(self.burst(self.cfg.debug.burst_on_start), "debug-burst", finite=True)

    async def _grace(self, work: list[asyncio.Task[Any]]) -> None:
        """Let in-flight work finish for up to GRACE_SEC, or until a second stop signal.

        The Discord notifier never finishes by itself: it gets until its queue is empty (the stop
        alert included), within the same bound.
        """
        assert self._forced is not None
        notifier = next((t for t in work if t.get_name() == "discord"), None)
        pending: list[asyncio.Future[Any]] = [t for t in work if not t.done() and t is not notifier]
        flush = None
        if notifier is not None and self.notifier is not None:
            flush = asyncio.ensure_future(self._notifier_flushed())
            pending.append(flush)
        if not pending or self._force:
            if flush is not None:
                flush.cancel()
            return
        forced = asyncio.ensure_future(self._forced.wait())
        finished = asyncio.ensure_future(asyncio.wait(pending))
        try:
            await asyncio.wait([forced, finished], timeout=GRACE_SEC, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
            finished.cancel()
            if flush is not None:
                flush.cancel()

    async def _notifier_flushed(self) -> None:
        while self.notifier is not None and self.notifier.queued:  # noqa: ASYNC110 - a bounded stop-time poll
            await asyncio.sleep(0.05)

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
            self._systemd_tick()
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

    def _systemd_tick(self) -> None:
        """WATCHDOG=1 at half the watchdog interval, only while every task makes progress; STATUS= on change."""
        now = self.clock.monotonic()
        if watchdog_due(self._watchdog_at, now, self.sd.watchdog_interval_sec, not self.progress.stale()):
            self.sd.watchdog()
            self._watchdog_at = now
        line = self._status_line()
        if line != self._sd_status:
            self._sd_status = line
            self.sd.status(line)

    def _status_line(self) -> str:
        reasons = self.degraded_reasons()
        workers = f"{self.workers.alive()}/{self.workers.configured} workers" if self.workers else "no embedded workers"
        return f"{'DEGRADED: ' + '; '.join(reasons) if reasons else 'OK'}; {workers}"

    async def _discord_heartbeats(self) -> None:
        """The Discord summary every discord.heartbeat_interval_sec (reloadable); wakes every second."""
        last = self.clock.monotonic()
        while True:
            self.progress.beat("discord-heartbeat")
            if self.clock.monotonic() - last >= self.cfg.discord.heartbeat_interval_sec:
                last = self.clock.monotonic()
                self.discord_heartbeat()
            await self.clock.sleep(1.0)

    def _reload(self) -> None:
        """SIGHUP: reopen the telemetry file, then apply the reloadable keys of the file as it is now."""
        self.sd.reloading()
        try:
            self._apply_reload()
        finally:
            self.sd.ready(self._status_line())  # always: systemd would otherwise leave the unit "reloading"

    def _apply_reload(self) -> None:
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
        if self.backtests is not None:
            self.backtests.debug_events = self.cfg.telemetry.log_level == "debug"
        if self.school is not None:
            self.school.update_config(self.cfg)
        if self.notifier is not None:
            self.notifier.update_config(self.cfg.discord)
        self.snapshots.interval_sec = self.cfg.snapshots.interval_sec
        if self.publisher is not None and self.peers is not None:
            self.publisher.config_hash = self.cfg.config_hash
            self.publisher.interval_sec = self.cfg.heartbeat.interval_sec
            self.peers.table.timeout_sec = self.cfg.heartbeat.peer_timeout_sec
            self.peers.table.known_peers = frozenset(self.cfg.heartbeat.known_peers)
        self.emit(
            "config.reloaded",
            service="core",
            correlation_id=self.run_id,
            data={"changed": plan.changed, "needs_restart": plan.needs_restart, "config_hash": self.cfg.config_hash},
        )
        log.info("config reloaded", changed=plan.changed, needs_restart=plan.needs_restart)

    async def burst(self, count: int) -> None:
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
        self.sd.stopping()
        log.info("swimmy stopping", reason=self._stop_reason or "unknown", queued=len(self.queue))
        self.emit(
            "daemon.stopping",
            service="core",
            correlation_id=self.run_id,
            data={"reason": self._stop_reason or "unknown", "uptime_sec": self.uptime_sec(), "queued": len(self.queue)},
        )

    async def _shutdown(self) -> int:
        self._emit_stopping()
        self.loopwatch.stop()
        if self.store is not None and self.school is not None:
            # The last word of this run: `swimmy status` must not call a stopped daemon healthy.
            with contextlib.suppress(Exception):
                await self.snapshots.write_once(status="STOPPED", stop_reason=self._stop_reason)
        if self.workers is not None:
            await self.workers.stop()
        if self.wire is not None:
            self.wire.close()  # LINGER bounds this even with a peer gone and its queue full
        if self.store is not None:
            self.store.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.notifier is not None:
            await self.notifier.close()
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        # A second signal during the drain must not kill the process: it is ignored here on purpose.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: None)
        code = 0
        deadline = time.monotonic() + self.cfg.telemetry.drain_timeout_sec
        if self._writer_task is None:
            return 1  # start-up failed before the writer existed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.writer.flush(), timeout=self.cfg.telemetry.drain_timeout_sec)
        self.emit(
            "daemon.stopped",
            service="core",
            correlation_id=self.run_id,
            data={
                "reason": self._stop_reason or "unknown",
                "uptime_sec": self.uptime_sec(),
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
                f"({self.writer.last_error or 'writer stuck'}): {lost} events lost"
                f" ({self.queue.dropped_total} more were dropped earlier at a full queue)",
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
        self.sd.close()
        return code
