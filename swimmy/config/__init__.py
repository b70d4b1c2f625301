"""The TOML config: one frozen dataclass per section, validated purely and early.

Every key has a default, so an empty file is valid. Errors name the key path
(`wfv.max_pending: must be >= 0, got -1`). Nothing here touches a file other
than the config itself, so a bad config exits before anything is created.

sections (the dataclasses) builds on plain (plain values, flat keys); loading (TOML to Config,
validation), reload (reload plans) and views (costs, webhook URLs, the rendered TOML) build on both.
"""

from swimmy.config.loading import config_from_mapping, load_config
from swimmy.config.reload import plan_reload
from swimmy.config.sections import (
    DISCORD_KINDS,
    SEVERITY_NAMES,
    Config,
    DiscordConfig,
    HeartbeatConfig,
    OosConfig,
    RankCriteria,
    RanksConfig,
    SnapshotsConfig,
    TelemetryConfig,
    WfvConfig,
    ZmqConfig,
)
from swimmy.config.views import Secret, default_pip, instrument_costs, metrics_token, render_toml, webhook_urls

__all__ = [
    "DISCORD_KINDS",
    "SEVERITY_NAMES",
    "Config",
    "DiscordConfig",
    "HeartbeatConfig",
    "OosConfig",
    "RankCriteria",
    "RanksConfig",
    "Secret",
    "SnapshotsConfig",
    "TelemetryConfig",
    "WfvConfig",
    "ZmqConfig",
    "config_from_mapping",
    "default_pip",
    "instrument_costs",
    "load_config",
    "metrics_token",
    "plan_reload",
    "render_toml",
    "webhook_urls",
]
