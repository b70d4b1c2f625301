"""The debug hooks ([debug] enabled = true): synthetic load for tests and benchmarks, never for production.

`burst` fills the event queue (also `debug.burst_on_start`); the commands wedge the loop, sleep, stall the
telemetry writer or emit a steady load, so tests can prove the lag dump, the watchdog gate, the control
channel's limits and the writer's back-pressure on a real daemon.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from swimmy.daemon.control import Command, CommandError
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import TelemetryWriter

MAX_BLOCK_SEC = 30.0
BURST_CHUNK = 1000
# The commands that wait: each runs in its own task (the control server caps how many at once). The
# others change some state and answer at once, so the server answers them inline and never refuses one.
SLOW_COMMANDS = frozenset({"debug.emit_burst", "debug.block_loop", "debug.sleep", "debug.load"})


async def burst(queue: EventQueue, count: int) -> None:
    """`count` synthetic events, in chunks that wait for room in the queue."""
    burst_id = str(uuid.uuid4())
    emit = queue.emit
    for start in range(0, count, BURST_CHUNK):
        # A test facility: polling for room keeps the queue free of a second, producer-side waiter.
        while len(queue) > queue.maxsize - BURST_CHUNK:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        for i in range(start, min(start + BURST_CHUNK, count)):
            emit("debug.burst", service="core", severity="debug", correlation_id=burst_id,
                 data={"i": i, "n": count})
        await asyncio.sleep(0)


def debug_commands(queue: EventQueue, writer: TelemetryWriter) -> dict[str, Command]:
    """The debug.* control commands."""

    async def emit_burst(args: dict[str, Any]) -> dict[str, Any]:
        count = number(args, "count", 1000, int)
        await burst(queue, count)
        return {"emitted": count}

    async def block_loop(args: dict[str, Any]) -> dict[str, Any]:
        seconds = min(number(args, "seconds", 2.0, float), MAX_BLOCK_SEC)
        # Deliberately wedges the event loop: how tests prove the lag dump and the watchdog gate.
        await asyncio.sleep(0.05)  # let the reply of an earlier command leave first
        time.sleep(seconds)  # noqa: ASYNC251
        return {"blocked_sec": seconds}

    async def sleep(args: dict[str, Any]) -> dict[str, Any]:
        seconds = min(number(args, "seconds", 1.0, float), MAX_BLOCK_SEC)
        await asyncio.sleep(seconds)  # a slow command that does not block the loop
        return {"slept_sec": seconds}

    async def load(args: dict[str, Any]) -> dict[str, Any]:
        # Sustained telemetry load for benchmarks: `rate` events/s for `seconds`, in 1 ms slices so the
        # load is steady rather than 100 bursts a second.
        rate = number(args, "rate", 100_000, int)
        seconds = min(number(args, "seconds", 5.0, float), 600.0)
        per_slice = max(1, rate // 1000)
        loop = asyncio.get_running_loop()
        start = loop.time()
        emitted = 0
        while (elapsed := loop.time() - start) < seconds:
            due = int(min(elapsed + 0.001, seconds) * rate) - emitted
            for _ in range(max(0, min(due, per_slice * 2))):
                queue.emit("debug.load", service="core", severity="debug", data={"n": emitted})
                emitted += 1
            await asyncio.sleep(0.001)
        return {"emitted": emitted, "seconds": round(loop.time() - start, 3)}

    async def stall_writer(args: dict[str, Any]) -> dict[str, Any]:
        seconds = min(number(args, "seconds", 5.0, float), MAX_BLOCK_SEC * 10)
        writer.stall_sec = seconds
        return {"stalled_sec": seconds}

    return {"debug.emit_burst": emit_burst, "debug.block_loop": block_loop, "debug.stall_writer": stall_writer,
            "debug.sleep": sleep, "debug.load": load}


def number(args: dict[str, Any], key: str, default: float, kind: type) -> Any:
    """args[key] as `kind`, >= 0; CommandError (exit 2) naming the key otherwise."""
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CommandError(f"{key}: must be a number >= 0, got {value!r}", 2)
    return kind(value)
