"""What the rest of swimmy reads off a config: costs per symbol, webhook URLs (as Secrets), the TOML shown.

Secrets are wrapped in `Secret`, whose repr is `'***'`; `render_toml` reports them as set or unset, never shown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from swimmy.config.plain import to_plain, toml_value
from swimmy.config.sections import Config, DiscordConfig, InstrumentConfig, MetricsConfig


class Secret:
    """A value that must never be printed: its repr and str are '***'."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def default_pip(symbol: str) -> float:
    """SPEC §4's default pip: 0.01 for a JPY quote, else 0.0001 (gold and indices must set theirs)."""
    return 0.01 if "JPY" in symbol.upper() else 0.0001


def instrument_costs(cfg: Config, symbol: str) -> dict[str, float]:
    """The `costs` of a BACKTEST for `symbol`: `[instruments.SYMBOL]`, else the defaults."""
    inst = cfg.instruments.get(symbol, InstrumentConfig())
    return {
        "spread_pips": cfg.backtest.spread_pips if inst.spread_pips is None else inst.spread_pips,
        "slippage_pips": cfg.backtest.slippage_pips if inst.slippage_pips is None else inst.slippage_pips,
        "pip": default_pip(symbol) if inst.pip is None else inst.pip,
    }


def webhook_urls(cfg: DiscordConfig, env: Mapping[str, str] | None = None) -> tuple[Secret | None, Secret | None]:
    """(heartbeat, alerts) webhook URLs from the environment, each falling back to the other."""
    env = os.environ if env is None else env
    heartbeat = env.get(cfg.heartbeat_webhook_env) or None
    alerts = env.get(cfg.alerts_webhook_env) or None
    heartbeat, alerts = heartbeat or alerts, alerts or heartbeat
    return (Secret(heartbeat) if heartbeat else None, Secret(alerts) if alerts else None)


def metrics_token(cfg: MetricsConfig, env: Mapping[str, str] | None = None) -> Secret | None:
    """The metrics listener's bearer token from the environment variable `metrics.token_env`, or None."""
    env = os.environ if env is None else env
    token = env.get(cfg.token_env) or None
    return Secret(token) if token else None


def render_toml(cfg: Config, env: Mapping[str, str] | None = None) -> str:
    """The effective config as TOML, with the webhook secrets reported as set/unset, never shown."""
    lines = [f"# effective config{f' of {cfg.source}' if cfg.source else ''} (hash {cfg.config_hash})"]

    def emit_table(name: str, table: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        if scalars:
            lines.append("")
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in scalars.items())
        for k, v in table.items():
            if isinstance(v, Mapping):
                emit_table(f"{name}.{k}", v)

    for section, table in to_plain(cfg).items():
        emit_table(section, table)
    heartbeat, alerts = webhook_urls(cfg.discord, env)
    lines.append("")
    lines.append(f"# discord heartbeat webhook: {'set (redacted)' if heartbeat else 'not set: notifications run dry'}")
    lines.append(f"# discord alerts webhook: {'set (redacted)' if alerts else 'not set: notifications run dry'}")
    if cfg.metrics.listen:
        token = metrics_token(cfg.metrics, env)
        lines.append(f"# metrics bearer token (${cfg.metrics.token_env}): "
                     f"{'set (redacted): the dashboard, reports and /metrics need it' if token else 'not set'}")
    return "\n".join(lines) + "\n"
