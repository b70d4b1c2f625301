"""The services of one daemon run, built once at start-up into a frozen `Services`, and their figures.

`build_services` binds the sockets and wires the parts to each other (the order matters: the broker before
the school that feeds it, the peer table after the broker whose workers it must not evict). Everything that
reads the running daemon (the control commands, the figures, the health verdict, the Discord heartbeat)
takes `Services`, never the lifecycle object: no field is optional, so nothing asks `is not None`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from swimmy import __version__
from swimmy.backtest.client import BacktestClient
from swimmy.backtest.data import universe_name
from swimmy.backtest.supervisor import WorkerSupervisor
from swimmy.clock import Clock
from swimmy.config import Config, instrument_costs
from swimmy.daemon.health import Progress, degraded_reasons
from swimmy.daemon.loopwatch import LoopWatch
from swimmy.notify.discord import DiscordNotifier
from swimmy.ops.figures import (
    BacktestFigures,
    DiscordFigures,
    Figures,
    HeartbeatFigures,
    OosFigures,
    PeerFigures,
    TelemetryFigures,
    UniverseFigures,
    WfvFigures,
    WorkerFigures,
    rss_bytes,
)
from swimmy.peers.heartbeat import HeartbeatPublisher
from swimmy.peers.monitor import PeerMonitor, PeerTable
from swimmy.school.loop import School
from swimmy.store import Store
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.queue import Emit, EventQueue
from swimmy.telemetry.writer import TelemetryWriter
from swimmy.wire.dispatcher import Dispatcher, heartbeat_handler
from swimmy.wire.zmq import PUB, PULL, ROUTER, CurveKeys, Wire, ZMQError, router_mandatory, try_send


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The event stream's parts, which exist before the loop runs (the writer starts first, stops last)."""

    queue: EventQueue
    encoder: Encoder
    writer: TelemetryWriter


@dataclass(frozen=True, slots=True)
class Services:
    """Every long-lived part of one run. `workers` has no slots when none are embedded."""

    run_id: str
    clock: Clock
    started_at: float  # monotonic
    telemetry: Telemetry
    progress: Progress
    loopwatch: LoopWatch
    notifier: DiscordNotifier
    store: Store
    wire: Wire
    pull_sockets: tuple[Any, ...]
    control_socket: Any
    dispatcher: Dispatcher
    backtests: BacktestClient
    workers: WorkerSupervisor
    publisher: HeartbeatPublisher
    peers: PeerMonitor
    school: School

    @property
    def emit(self) -> Emit:
        return self.telemetry.queue.emit

    def uptime_sec(self) -> float:
        """Seconds since start-up."""
        return round(self.clock.monotonic() - self.started_at, 3)


def build_services(cfg: Config, *, run_id: str, clock: Clock, started_at: float, telemetry: Telemetry,
                   progress: Progress, loopwatch: LoopWatch, notifier: DiscordNotifier, store: Store,
                   keys: CurveKeys | None, curve: frozenset[str], health: Any) -> Services:
    """Bind every endpoint and build the services that own them. Raises ZMQError naming the endpoint.

    `health()` is the daemon's verdict now (the heartbeat carries it); the school is reached through a cell
    because the broker, built first, asks it for universe hashes.
    """
    emit = telemetry.queue.emit
    wire = Wire(cfg.zmq, keys)

    def bind(kind: int, key: str, endpoint: str, linger_ms: int | None = None) -> Any:
        try:
            return wire.bind(kind, endpoint, curve=endpoint in curve, linger_ms=linger_ms)
        except ZMQError as exc:
            raise ZMQError(exc.errno, f"cannot bind {key} {endpoint}: {exc.strerror}") from None

    try:
        # Heartbeats are disposable: a frozen subscriber must not hold the stop for LINGER.
        pub = bind(PUB, "zmq.pub_endpoint", cfg.zmq.pub_endpoint, linger_ms=0)
        pulls = (bind(PULL, "zmq.pull_endpoint", cfg.zmq.pull_endpoint),)
        control_socket = bind(ROUTER, "control.endpoint", cfg.control.endpoint)
        work = bind(ROUTER, "zmq.backtest_endpoint", cfg.zmq.backtest_endpoint)
    except BaseException:
        wire.close()  # the endpoints bound so far are freed now, not at garbage collection
        raise
    router_mandatory(work)
    dispatcher = Dispatcher(emit, clock, max_message_bytes=cfg.zmq.max_message_bytes,
                            on_progress=progress.beater("dispatcher"))
    work_reader = dispatcher.work_reader(work)
    school_cell: list[School] = []
    backtests = BacktestClient(
        lambda identity, payload: work_reader.send([identity, payload]), emit, clock,
        timeout_sec=cfg.backtest.timeout_sec, worker_timeout_sec=cfg.backtest.worker_timeout_sec,
        max_attempts=cfg.backtest.max_attempts,
        universe_hash=lambda universe: school_cell[0].universe_hash(universe) if school_cell else None,
        costs_for=lambda symbol: instrument_costs(cfg, symbol),
        on_progress=progress.beater("backtest-client"), debug_events=cfg.telemetry.log_level == "debug",
        universes=tuple(universe_name(s, tf) for s, tf in cfg.school.universes()))
    for kind, handler in (("READY", backtests.handle_ready), ("BUSY", backtests.handle_busy),
                          ("BACKTEST_RESULT", backtests.handle_result)):
        dispatcher.register_work(kind, handler)
    embedded = cfg.workers.embedded if cfg.source is not None else 0
    # The embedded workers reach the same ROUTER through a Unix socket: half TCP's CPU a message (docs/protocol.md).
    local = (wire.bind_private_ipc(work, "work.sock")
             if embedded and not cfg.zmq.backtest_endpoint.startswith("ipc://") else None)
    workers = WorkerSupervisor(cfg.source, embedded, emit, clock, endpoint=local,
                               on_progress=progress.beater("workers"), on_exit=backtests.worker_gone)
    publisher = HeartbeatPublisher(
        lambda frames: try_send(pub, frames), emit, clock, interval_sec=cfg.heartbeat.interval_sec,
        version=__version__, config_hash=cfg.config_hash, status=health, on_progress=progress.beater("heartbeat"))
    table = PeerTable(cfg.heartbeat.peer_timeout_sec, known=cfg.heartbeat.known_peers,
                      protected=backtests.holds_worker)
    peers = PeerMonitor(table, emit, clock, on_progress=progress.beater("peer-monitor"))

    def heard(source: str) -> None:
        peers.heard(source)
        backtests.note_peer(source)

    dispatcher.register("HEARTBEAT", heartbeat_handler(emit, heard, publisher.rtt_ms))
    school = School(cfg, store, backtests, emit, clock, on_progress=progress.beater("school"),
                    workers_ready=lambda: backtests.live_workers() > 0)
    school_cell.append(school)
    return Services(run_id=run_id, clock=clock, started_at=started_at, telemetry=telemetry, progress=progress,
                    loopwatch=loopwatch, notifier=notifier, store=store, wire=wire, pull_sockets=pulls,
                    control_socket=control_socket, dispatcher=dispatcher, backtests=backtests, workers=workers,
                    publisher=publisher, peers=peers, school=school)


def reasons_of(s: Services, cfg: Config) -> list[str]:
    """The daemon's DEGRADED reasons now (daemon/health.py's verdict over these services' facts)."""
    return degraded_reasons(
        telemetry_failing=s.telemetry.writer.failing, telemetry_error=s.telemetry.writer.last_error,
        embedded_spawned=s.workers.spawned, embedded_configured=s.workers.configured,
        embedded_alive=s.workers.alive(), workers_ready=s.backtests.live_workers(),
        worker_grace_over=s.uptime_sec() > 2 * cfg.backtest.worker_timeout_sec,
        paused=s.school.paused_universes())


def figures_of(s: Services, cfg: Config) -> Figures:
    """Every figure, from the running services (the snapshots, /metrics and the Discord summary read it)."""
    now = s.clock.time()
    writer, queue, b, school = s.telemetry.writer, s.telemetry.queue, s.backtests, s.school
    count, oldest = school.wfv.pending_stats(now)
    stats = s.notifier.stats
    reasons = reasons_of(s, cfg)
    return Figures(
        run_id=s.run_id, pid=os.getpid(), version=__version__, config_hash=cfg.config_hash,
        uptime_sec=s.uptime_sec(), rss_bytes=rss_bytes(), loop_lag_ms=round(s.loopwatch.last_lag_ms, 3),
        loop_stalls=s.loopwatch.stalls,
        telemetry=TelemetryFigures(
            written=writer.written, dropped=queue.dropped_total, failed_writes=writer.failed_writes,
            queue_depth=len(queue), rotations=writer.rotations, failing=writer.failing,
            fsync_errors=writer.fsync_errors, truncated=s.telemetry.encoder.truncated),
        heartbeats=HeartbeatFigures(s.publisher.sent, s.publisher.send_failures, s.publisher.last_rtt_ms),
        peers=PeerFigures(s.peers.table.ages(s.clock.monotonic()), s.peers.table.silent(), s.peers.table.evicted),
        backtests=BacktestFigures(
            inflight=b.inflight, sent=b.sent, completed=b.completed, timeouts=b.timeouts, refused=b.refused,
            resends=b.resends, queued=b.queued(), requeued=b.requeued, quarantined=b.quarantined,
            workers_ready=b.live_workers(), workers_lost=b.workers_lost, free_credit=b.free_credit()),
        workers=WorkerFigures(configured=s.workers.configured, alive=s.workers.alive()),
        strategies=school.by_rank(),
        oos=OosFigures(**school.oos.queue_stats(now)),
        wfv=WfvFigures(pending=count, oldest_age_sec=round(oldest, 3) if oldest is not None else None,
                       results=school.wfv.results, timeouts=school.wfv.timeouts),
        universes={u: UniverseFigures(**f) for u, f in school.universe_figures().items()},  # type: ignore[arg-type]
        discord=DiscordFigures(delivered=stats.delivered, failed=stats.failed, dropped=stats.dropped,
                               queued=stats.queued, rate_limited=stats.rate_limited, coalesced=stats.coalesced,
                               dry_run=s.notifier.dry),
        status="DEGRADED" if reasons else "OK", reasons=reasons, stale_tasks=s.progress.stale(),
    )
