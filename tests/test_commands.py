"""The control commands (daemon/commands.py, daemon/debug.py) on real services: sockets on loopback, a real
SQLite store, the real school and broker; only the clock is injected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import write_config

from swimmy.backtest.strategies import StrategySpec
from swimmy.config import Config, load_config
from swimmy.daemon.commands import build_commands
from swimmy.daemon.control import Command, CommandError
from swimmy.daemon.health import Progress
from swimmy.daemon.loopwatch import LoopWatch
from swimmy.daemon.services import Services, Telemetry, build_services, figures_of
from swimmy.notify.discord import DiscordNotifier
from swimmy.notify.schedule import DiscordHeartbeat
from swimmy.store import Store
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import TelemetryWriter
from swimmy.testing import FakeClock

SMA = {"family": "sma_cross", "params": {"fast": 10, "slow": 30}, "symbol": "EURUSD", "timeframe": "H1"}


async def services_for(tmp_path: Path, **sections: dict[str, Any]) -> tuple[Services, Config, FakeClock]:
    cfg = load_config(write_config(tmp_path, sections))
    cfg.school.db_path.parent.mkdir(parents=True, exist_ok=True)
    clock = FakeClock()
    queue = EventQueue(1000, time_fn=clock.time)
    encoder = Encoder(run_id="run-1", pid=1, host="h", max_event_bytes=cfg.telemetry.max_event_bytes)
    telemetry = Telemetry(queue, encoder, TelemetryWriter(cfg.telemetry, queue, encoder))
    progress = Progress(clock.monotonic)
    notifier = DiscordNotifier(cfg.discord, queue.emit, clock, heartbeat_url=None, alerts_url=None)
    s = build_services(cfg, run_id="run-1", clock=clock, started_at=clock.monotonic(), telemetry=telemetry,
                       progress=progress, loopwatch=LoopWatch(queue.emit, "run-1"), notifier=notifier,
                       store=Store.open(cfg.school.db_path), keys=None, curve=frozenset(), health=lambda: "OK")
    return s, cfg, clock


@pytest.fixture
async def table(tmp_path: Path) -> AsyncIterator[tuple[dict[str, Command], Services]]:
    s, cfg, clock = await services_for(tmp_path)
    discord = DiscordHeartbeat(s.notifier, lambda: figures_of(s, cfg), s.emit, clock, cfg.discord)
    yield build_commands(s, lambda: cfg, lambda: "DEGRADED", discord), s
    s.wire.close()
    s.store.close()


async def refusal(command: Command, args: dict[str, Any]) -> tuple[str, int]:
    with pytest.raises(CommandError) as err:
        await command(args)
    return str(err.value), err.value.exit_code


class TestCommands:
    async def test_ping_answers_with_the_run_and_the_verdict(
            self, table: tuple[dict[str, Command], Services]) -> None:
        commands, _ = table
        reply = await commands["ping"]({})
        assert reply["run_id"] == "run-1" and reply["status"] == "DEGRADED"

    async def test_heartbeat_now_publishes_and_queues_the_discord_summary(
            self, table: tuple[dict[str, Command], Services]) -> None:
        """No webhook configured: the summary goes to the dry run, and the reply says so."""
        commands, s = table
        reply = await commands["heartbeat.now"]({})
        assert reply["pub"] == "sent" and reply["heartbeat_id"]
        assert reply["discord"] == "dry run: no webhook URL configured (see discord.dry_run in the stream)"
        assert s.publisher.sent == 1

    async def test_backtest_submit_needs_a_strategy_object_and_a_worker(
            self, table: tuple[dict[str, Command], Services]) -> None:
        commands, _ = table
        assert await refusal(commands["backtest.submit"], {"strategy": "sma"}) == (
            "strategy: an object as in a BACKTEST message is required", 2)
        assert await refusal(commands["backtest.submit"], {"strategy": SMA, "start_ts": "yesterday"}) == (
            "start_ts: must be Unix seconds (an integer) or null, got 'yesterday'", 2)

    async def test_strategies_import_adds_once_and_refuses_what_the_config_does_not_trade(
            self, table: tuple[dict[str, Command], Services]) -> None:
        commands, s = table
        name = StrategySpec.from_wire(SMA).name()
        assert await commands["strategies.import"]({"strategies": [SMA]}) == {"added": [name], "duplicates": []}
        assert [row.name for row in s.store.list_strategies()] == [name]
        again = await commands["strategies.import"]({"strategies": [SMA]})
        assert again["added"] == [] and len(again["duplicates"]) == 1
        message, code = await refusal(commands["strategies.import"], {"strategies": [{**SMA, "symbol": "GBPUSD"}]})
        assert code == 2 and "GBPUSD H1 is not traded by this config; nothing was imported" in message
        assert await refusal(commands["strategies.import"], {"strategies": {}}) == (
            "strategies: a list of strategy objects is required", 2)
        assert len(s.store.list_strategies()) == 1

    @pytest.mark.parametrize("name", ["wfv.start", "oos.request"])
    async def test_strategy_commands_need_a_name(self, table: tuple[dict[str, Command], Services], name: str) -> None:
        commands, _ = table
        assert await refusal(commands[name], {}) == ("name: a strategy name is required", 2)

    async def test_no_debug_hooks_unless_enabled(self, table: tuple[dict[str, Command], Services]) -> None:
        commands, _ = table
        assert sorted(commands) == ["backtest.submit", "heartbeat.now", "oos.request", "ping", "strategies.import",
                                    "wfv.start"]


class TestDebugCommands:
    async def test_present_and_checked_when_enabled(self, tmp_path: Path) -> None:
        s, cfg, clock = await services_for(tmp_path, debug={"enabled": True})
        try:
            discord = DiscordHeartbeat(s.notifier, lambda: figures_of(s, cfg), s.emit, clock, cfg.discord)
            commands = build_commands(s, lambda: cfg, lambda: "OK", discord)
            assert {"debug.emit_burst", "debug.block_loop", "debug.sleep", "debug.load",
                    "debug.stall_writer"} <= set(commands)
            assert await refusal(commands["debug.sleep"], {"seconds": -1}) == (
                "seconds: must be a number >= 0, got -1", 2)
            assert await commands["debug.stall_writer"]({"seconds": 3}) == {"stalled_sec": 3.0}
            assert s.telemetry.writer.stall_sec == 3.0
            assert await commands["debug.emit_burst"]({"count": 5}) == {"emitted": 5}
            assert len(s.telemetry.queue) >= 5
        finally:
            s.wire.close()
            s.store.close()
