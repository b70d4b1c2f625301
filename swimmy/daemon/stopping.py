"""Stopping in order: the grace in-flight work gets, then the drain of the event stream.

The grace is bounded (GRACE_SEC, or a second stop signal); the drain is bounded by
`telemetry.drain_timeout_sec`. What the drain could not write is counted in the lines it returns, which
the CLI prints once the log bridge is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from swimmy.clock import Clock
from swimmy.daemon.front import Front
from swimmy.daemon.services import Services
from swimmy.notify.discord import DiscordNotifier
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import TelemetryWriter

GRACE_SEC = 5.0  # in-flight work gets this long after a stop request; a second signal skips it


async def grace(work: list[asyncio.Task[Any]], notifier: DiscordNotifier, forced: asyncio.Event,
                force: bool) -> None:
    """Let in-flight work finish for up to GRACE_SEC, or until a second stop signal.

    The Discord notifier never finishes by itself: it gets until its queue is empty (the stop alert
    included), within the same bound.
    """
    if force:
        return
    pending: list[asyncio.Future[Any]] = [t for t in work if not t.done() and t.get_name() != "discord"]
    flush = asyncio.ensure_future(_flushed(notifier))
    stop_now = asyncio.ensure_future(forced.wait())
    finished = asyncio.ensure_future(asyncio.wait([*pending, flush]))
    try:
        await asyncio.wait([stop_now, finished], timeout=GRACE_SEC, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in (stop_now, finished, flush):
            f.cancel()


async def _flushed(notifier: DiscordNotifier) -> None:
    while notifier.queued:  # noqa: ASYNC110 - a bounded stop-time poll
        await asyncio.sleep(0.05)


async def drain(queue: EventQueue, writer: TelemetryWriter, writer_task: asyncio.Task[None], *, timeout_sec: float,
                clock: Clock, stopped: Callable[[], None], reason: str | None) -> tuple[int, list[str]]:
    """Flush, emit the last event (`stopped()`), close the queue and wait for the writer, all within
    `timeout_sec`: (exit code, the lines for stderr)."""
    deadline = clock.monotonic() + timeout_sec
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(writer.flush(), timeout=timeout_sec)
    stopped()
    queue.close()
    code = 0
    lines: list[str] = []
    try:
        await asyncio.wait_for(asyncio.shield(writer_task), timeout=max(0.0, deadline - clock.monotonic()))
    except TimeoutError:
        lost = len(queue) + writer.pending_lines
        writer_task.cancel()
        await asyncio.gather(writer_task, return_exceptions=True)
        lines.append(f"swimmy: telemetry drain did not finish within {timeout_sec:g}s "
                     f"({writer.last_error or 'writer stuck'}): {lost} events lost"
                     f" ({queue.dropped_total} more were dropped earlier at a full queue)")
        code = 1
    if queue.dropped_after_close:
        lines.append(f"swimmy: {queue.dropped_after_close} events emitted after the writer closed were lost")
    if code == 0:
        lines.append(f"swimmy: stopped ({reason}); {writer.written} events written, {queue.dropped_total} dropped")
    return code, lines


async def close_all(s: Services | None, front: Front | None, notifier: DiscordNotifier, reason: str | None) -> None:
    """The last snapshot (a stopped daemon must not look healthy to `swimmy status`), then each part, in order:
    workers, sockets, store, the metrics listener, Discord."""
    if s is not None and front is not None:
        with contextlib.suppress(Exception):
            await front.snapshots.write_once(status="STOPPED", stop_reason=reason)
    if s is not None:
        await s.workers.stop()
        s.wire.close()  # LINGER bounds this even with a peer gone and its queue full
        s.store.close()
    if front is not None and front.metrics is not None:
        await front.metrics.close()
    await notifier.close()
