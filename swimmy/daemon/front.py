"""The listeners in front of the services: the snapshot files, the Discord heartbeat, the control channel and
the metrics listener, and what a reload hands to each part (`updaters`).

They read the services through the daemon's figures and health verdict, so they are built after the services
and stopped before them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from swimmy.config import Config, metrics_token
from swimmy.daemon.commands import build_commands
from swimmy.daemon.control import ControlServer
from swimmy.daemon.debug import SLOW_COMMANDS
from swimmy.daemon.reload import Updater
from swimmy.daemon.services import Services
from swimmy.errors import StoreError
from swimmy.notify.schedule import DiscordHeartbeat
from swimmy.ops.figures import Figures
from swimmy.ops.metrics_http import MetricsServer
from swimmy.ops.snapshots import SnapshotWriter
from swimmy.telemetry.logbridge import LogBridge
from swimmy.view.dashboard import KEEP_SEC, Dashboard
from swimmy.view.pages import Pages, Reports


@dataclass(frozen=True, slots=True)
class Front:
    """The daemon's listeners; `metrics` is None when `metrics.listen` is empty."""

    snapshots: SnapshotWriter
    discord: DiscordHeartbeat
    control: ControlServer
    metrics: MetricsServer | None
    dashboard: Dashboard


async def start_front(s: Services, cfg: Config, *, config: Callable[[], Config], figures: Callable[[], Figures],
                      health: Callable[[], str], reasons: Callable[[], list[str]]) -> Front:
    """Build the listeners and bind the metrics one (StoreError naming the address when it is taken)."""
    beat = s.progress.beater
    snapshots = SnapshotWriter(cfg.snapshots.dir, cfg.snapshots.interval_sec, figures, s.emit, s.clock,
                               on_progress=beat("snapshots"))
    discord = DiscordHeartbeat(s.notifier, figures, s.emit, s.clock, cfg.discord,
                               on_progress=beat("discord-heartbeat"))
    control = ControlServer(s.control_socket, s.emit, build_commands(s, config, health, discord),
                            slow=SLOW_COMMANDS, on_progress=beat("control"))
    dashboard = Dashboard(s.clock, figures=figures, reasons=reasons, best=s.store.best_ranked,
                          on_progress=beat("dashboard"), recorded=s.store.population_samples,
                          record=lambda at, counts: s.store.add_population_sample(at, counts, KEEP_SEC))
    s.telemetry.queue.listen(dashboard.events, dashboard.on_event)
    metrics = None
    if cfg.metrics.listen:
        pages = Pages(dashboard, Reports(cfg.source.resolve() if cfg.source else None, s.store.get_strategy))
        metrics = MetricsServer(cfg.metrics.listen, figures, s.progress.stale, reasons, pages=pages,
                                token=metrics_token(cfg.metrics))
        try:
            await metrics.start()
        except OSError as exc:
            raise StoreError(f"cannot listen on metrics.listen {cfg.metrics.listen}: {exc.strerror or exc}") from None
    return Front(snapshots, discord, control, metrics, dashboard)


def updaters(s: Services, front: Front, bridge: LogBridge | None) -> list[Updater]:
    """Each reloadable part's share of a new config (SIGHUP)."""

    def telemetry_level(cfg: Config) -> None:
        if bridge is not None:
            bridge.level = cfg.telemetry.log_level

    return [telemetry_level,
            lambda cfg: s.notifier.update_config(cfg.discord),
            lambda cfg: front.snapshots.update_config(cfg.snapshots),
            lambda cfg: front.discord.update_config(cfg.discord),
            s.school.update_config,
            s.backtests.update_config,
            s.publisher.update_config,
            lambda cfg: s.peers.update_config(cfg.heartbeat)]
