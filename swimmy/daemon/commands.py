"""The control commands the daemon serves (`swimmy heartbeat now`, `backtest submit`, ...).

They read and act on the running services (`Services`) and the config as it is now (a reload replaces it);
the debug hooks are in debug.py and exist only with [debug] enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swimmy import __version__
from swimmy.config import Config
from swimmy.daemon.control import Command, CommandError
from swimmy.daemon.debug import debug_commands
from swimmy.daemon.services import Services
from swimmy.notify.schedule import DiscordHeartbeat


def build_commands(s: Services, config: Callable[[], Config], health: Callable[[], str],
                   discord: DiscordHeartbeat) -> dict[str, Command]:
    """The command table: `config()` is the running config, `health()` OK or DEGRADED."""

    async def ping(args: dict[str, Any]) -> dict[str, Any]:
        return {"run_id": s.run_id, "version": __version__, "status": health()}

    async def heartbeat_now(args: dict[str, Any]) -> dict[str, Any]:
        hb_id = s.publisher.send_now()
        if hb_id is None:
            raise CommandError("the heartbeat could not be sent: the PUB socket refused it")
        note = discord.send_now()
        dry = s.notifier.dry
        discord_said = ("dry run: no webhook URL configured (see discord.dry_run in the stream)" if dry and note
                        else f"queued ({note})" if note else "not queued: muted or the queue is full")
        return {"heartbeat_id": hb_id, "pub": "sent", "discord": discord_said}

    async def backtest_submit(args: dict[str, Any]) -> dict[str, Any]:
        strategy = args.get("strategy")
        if not isinstance(strategy, dict):
            raise CommandError("strategy: an object as in a BACKTEST message is required", 2)
        debug = args.get("debug") if config().debug.enabled and isinstance(args.get("debug"), dict) else None
        request_id = s.backtests.submit(
            "manual", strategy, start_ts=_optional_int(args, "start_ts"), end_ts=_optional_int(args, "end_ts"),
            include_trades=args.get("include_trades") is True, debug=debug,
        )
        if request_id is None:
            raise CommandError("the request was refused: no worker is connected, or the send queue is full")
        return {"request_id": request_id}

    async def strategies_import(args: dict[str, Any]) -> dict[str, Any]:
        from swimmy.backtest.strategies import StrategySpec, validate
        from swimmy.errors import BacktestError
        from swimmy.school.catalog import import_specs

        wires = args.get("strategies")
        if not isinstance(wires, list):
            raise CommandError("strategies: a list of strategy objects is required", 2)
        try:
            specs = [StrategySpec.from_wire(w) for w in wires]
            for spec in specs:
                validate(spec)
        except BacktestError as exc:
            raise CommandError(str(exc), 2) from None
        for spec in specs:
            if not config().school.trades(spec.symbol, spec.timeframe):
                raise CommandError(f"{spec.name()}: {spec.symbol} {spec.timeframe} is not traded by this config; "
                                   "nothing was imported", 2)
        imported = import_specs(s.store, specs, s.clock.time())
        s.school.incubator_grew()
        return imported

    async def wfv_start(args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        return {"wfv_id": s.school.wfv.start_manual(name), "strategy": name, "trigger": "manual"}

    async def oos_request(args: dict[str, Any]) -> dict[str, Any]:
        name = _name(args)
        return {"request_id": s.school.oos.request_now(name), "strategy": name}

    commands: dict[str, Command] = {
        "ping": ping,
        "heartbeat.now": heartbeat_now,
        "backtest.submit": backtest_submit,
        "strategies.import": strategies_import,
        "wfv.start": wfv_start,
        "oos.request": oos_request,
    }
    if config().debug.enabled:
        commands.update(debug_commands(s.telemetry.queue, s.telemetry.writer))
    return commands


def _name(args: dict[str, Any]) -> str:
    name = args.get("name")
    if not isinstance(name, str) or not name:
        raise CommandError("name: a strategy name is required", 2)
    return name


def _optional_int(args: dict[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommandError(f"{key}: must be Unix seconds (an integer) or null, got {value!r}", 2)
    return value
