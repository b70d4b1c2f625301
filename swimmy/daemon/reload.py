"""SIGHUP: the config file read again and its reloadable keys handed to each service (SPEC §3).

An invalid file is `config.reload_failed` and the running config stays; a valid one is planned
(config.plan_reload: what changed, what needs a restart) and each service takes its part through its own
`update_config`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from swimmy.config import Config, load_config, plan_reload
from swimmy.errors import ConfigError
from swimmy.telemetry.queue import Emit

log = structlog.get_logger(logger_name="swimmy.daemon")

Updater = Callable[[Config], None]


def reload_config(cfg: Config, updaters: Iterable[Updater], emit: Emit, run_id: str) -> Config:
    """The config to run with from now on (the old one when the file is invalid or there is none)."""
    if cfg.source is None:
        return cfg
    try:
        new = load_config(cfg.source)
    except ConfigError as exc:
        emit("config.reload_failed", service="core", severity="error", correlation_id=run_id,
             data={"error": str(exc), "problems": exc.problems, "config_path": str(cfg.source)})
        log.error("config reload failed; keeping the running config", problems=exc.problems)
        return cfg
    plan = plan_reload(cfg, new)
    for update in updaters:
        update(plan.config)
    emit("config.reloaded", service="core", correlation_id=run_id,
         data={"changed": plan.changed, "needs_restart": plan.needs_restart, "config_hash": plan.config.config_hash})
    log.info("config reloaded", changed=plan.changed, needs_restart=plan.needs_restart)
    return plan.config
