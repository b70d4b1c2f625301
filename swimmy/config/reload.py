"""Reload planning: which keys a SIGHUP may change, and the config a reload runs with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from swimmy.config.plain import flatten, to_plain
from swimmy.config.sections import Config

# Keys a SIGHUP may change without a restart (SPEC §1). A prefix ending in "." covers a section.
RELOADABLE = ("heartbeat.", "oos.", "wfv.", "ranks.", "discord.", "snapshots.interval_sec", "telemetry.log_level")

# Inside reloadable sections, but read once at start: the webhook URLs come from the environment then.
NOT_RELOADABLE = ("discord.heartbeat_webhook_env", "discord.alerts_webhook_env")


def is_reloadable(key: str) -> bool:
    """Whether a SIGHUP may change this flat key path."""
    if key in NOT_RELOADABLE:
        return False
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RELOADABLE)


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes: the config to run with, the keys applied, the keys that need a restart."""

    config: Config
    changed: list[str]
    needs_restart: list[str]


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Take the reloadable keys from `new`, keep the rest of `old`, and say which is which."""
    old_flat, new_flat = flatten(to_plain(old)), flatten(to_plain(new))
    differing = sorted(k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k))
    changed = [k for k in differing if is_reloadable(k)]
    needs_restart = [k for k in differing if not is_reloadable(k)]
    merged = dataclasses.replace(
        old,
        heartbeat=new.heartbeat,
        oos=new.oos,
        wfv=new.wfv,
        ranks=new.ranks,
        discord=dataclasses.replace(new.discord, heartbeat_webhook_env=old.discord.heartbeat_webhook_env,
                                    alerts_webhook_env=old.discord.alerts_webhook_env),
        snapshots=dataclasses.replace(old.snapshots, interval_sec=new.snapshots.interval_sec),
        telemetry=dataclasses.replace(old.telemetry, log_level=new.telemetry.log_level),
    )
    return ReloadPlan(merged, changed, needs_restart)
