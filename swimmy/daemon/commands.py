"""The control commands the daemon serves (`swimmy heartbeat now`, the debug hooks, ...)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from swimmy import __version__
from swimmy.daemon.control import Command, CommandError

if TYPE_CHECKING:
    from swimmy.daemon.lifecycle import Daemon

MAX_BLOCK_SEC = 30.0
# The commands that wait: each runs in its own task (the control server caps how many at once). The
# others change some state and answer at once, so the server answers them inline and never refuses one.
SLOW_COMMANDS = frozenset({"debug.emit_burst", "debug.block_loop", "debug.sleep", "debug.load"})


def build_commands(daemon: Daemon) -> dict[str, Command]:
    """The command table; the debug hooks exist only with [debug] enabled."""

    async def ping(args: dict[str, Any]) -> dict[str, Any]:
        return {"run_id": daemon.run_id, "version": __version__, "status": daemon.health_status()}

    async def heartbeat_now(args: dict[str, Any]) -> dict[str, Any]:
        assert daemon.publisher is not None
        hb_id = daemon.publisher.send_now()
        if hb_id is None:
            raise CommandError("the heartbeat could not be sent: the PUB socket refused it")
        note = daemon.discord_heartbeat()
        dry = daemon.notifier is not None and daemon.notifier.dry
        discord = ("dry run: no webhook URL configured (see discord.dry_run in the stream)" if dry and note
                   else f"queued ({note})" if note else "not queued: muted or the queue is full")
        return {"heartbeat_id": hb_id, "pub": "sent", "discord": discord}

    async def backtest_submit(args: dict[str, Any]) -> dict[str, Any]:
        assert daemon.backtests is not None
        strategy = args.get("strategy")
        if not isinstance(strategy, dict):
            raise CommandError("strategy: an object as in a BACKTEST message is required", 2)
        debug = args.get("debug") if daemon.cfg.debug.enabled and isinstance(args.get("debug"), dict) else None
        request_id = daemon.backtests.submit(
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

        assert daemon.store is not None
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
            if not daemon.cfg.school.trades(spec.symbol, spec.timeframe):
                raise CommandError(f"{spec.name()}: {spec.symbol} {spec.timeframe} is not traded by this config; "
                                   "nothing was imported", 2)
        return import_specs(daemon.store, specs, daemon.clock.time())

    async def wfv_start(args: dict[str, Any]) -> dict[str, Any]:
        assert daemon.school is not None
        name = _name(args)
        return {"wfv_id": daemon.school.wfv.start_manual(name), "strategy": name, "trigger": "manual"}

    async def oos_request(args: dict[str, Any]) -> dict[str, Any]:
        assert daemon.school is not None
        name = _name(args)
        return {"request_id": daemon.school.oos.request_now(name), "strategy": name}

    commands: dict[str, Command] = {
        "ping": ping,
        "heartbeat.now": heartbeat_now,
        "backtest.submit": backtest_submit,
        "strategies.import": strategies_import,
        "wfv.start": wfv_start,
        "oos.request": oos_request,
    }
    if not daemon.cfg.debug.enabled:
        return commands

    async def emit_burst(args: dict[str, Any]) -> dict[str, Any]:
        count = _number(args, "count", 1000, int)
        await daemon.burst(count)
        return {"emitted": count}

    async def block_loop(args: dict[str, Any]) -> dict[str, Any]:
        seconds = min(_number(args, "seconds", 2.0, float), MAX_BLOCK_SEC)
        # Deliberately wedges the event loop: how tests prove the lag dump and the watchdog gate.
        await asyncio.sleep(0.05)  # let the reply of an earlier command leave first
        time.sleep(seconds)  # noqa: ASYNC251
        return {"blocked_sec": seconds}

    async def sleep(args: dict[str, Any]) -> dict[str, Any]:
        seconds = min(_number(args, "seconds", 1.0, float), MAX_BLOCK_SEC)
        await asyncio.sleep(seconds)  # a slow command that does not block the loop
        return {"slept_sec": seconds}

    async def load(args: dict[str, Any]) -> dict[str, Any]:
        # Sustained telemetry load for benchmarks: `rate` events/s for `seconds`, in 1 ms slices so the
        # load is steady rather than 100 bursts a second.
        rate = _number(args, "rate", 100_000, int)
        seconds = min(_number(args, "seconds", 5.0, float), 600.0)
        per_slice = max(1, rate // 1000)
        loop = asyncio.get_running_loop()
        start = loop.time()
        emitted = 0
        while (elapsed := loop.time() - start) < seconds:
            due = int(min(elapsed + 0.001, seconds) * rate) - emitted
            for _ in range(max(0, min(due, per_slice * 2))):
                daemon.emit("debug.load", service="core", severity="debug", data={"n": emitted})
                emitted += 1
            await asyncio.sleep(0.001)
        return {"emitted": emitted, "seconds": round(loop.time() - start, 3)}

    async def stall_writer(args: dict[str, Any]) -> dict[str, Any]:
        seconds = min(_number(args, "seconds", 5.0, float), MAX_BLOCK_SEC * 10)
        daemon.writer.stall_sec = seconds
        return {"stalled_sec": seconds}

    commands.update({"debug.emit_burst": emit_burst, "debug.block_loop": block_loop,
                     "debug.stall_writer": stall_writer, "debug.sleep": sleep,
                     "debug.load": load})
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


def _number(args: dict[str, Any], key: str, default: float, kind: type) -> Any:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CommandError(f"{key}: must be a number >= 0, got {value!r}", 2)
    return kind(value)
