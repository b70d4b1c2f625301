"""Test kit for the Discord notifier: a loopback webhook that answers from a script, a notifier wired to it, waits.

`WebhookServer` behaves like a Discord webhook on 127.0.0.1 (tests/notify/conftest.py has it as the `server`
fixture); `make` builds a DiscordNotifier with short retries, `running` runs it for a block, `settled` waits for
each notification's final event.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from swimmy.clock import SystemClock
from swimmy.config import DiscordConfig, Secret
from swimmy.notify.discord import DiscordNotifier, Notification, RetryPolicy
from swimmy.testing import CapturingEmitter

TOKEN = "SECRET-TOKEN-abc"
FAST = RetryPolicy(max_attempts=3, backoff_base_sec=0.05, backoff_cap_sec=0.2, max_wait_sec=30.0)
TERMINAL = ("discord.delivered", "discord.failed", "discord.dry_run")


# -- a loopback webhook -------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    delay_sec: float = 0.0


@dataclass
class Arrival:
    """One request as the server saw it."""

    path: str
    body: dict[str, Any]
    at: float


class WebhookServer:
    """Behaves like a Discord webhook: answers from a script (then 204), records every request."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[Arrival] = []
        app = web.Application()
        app.router.add_post("/api/webhooks/{id}/{token}", self._handle)
        # No access log: it would print the request path (the token) into caplog. Cancel handlers whose
        # client gave up (the timeout cases) so the server closes at once.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        self.port = 0

    async def start(self) -> None:
        """Listen on a free loopback port (`port`)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening; handlers still waiting are cancelled."""
        await self._runner.cleanup()

    def url(self, hook: str = "123", token: str = TOKEN) -> str:
        """A webhook URL on this server, with `token` where Discord's secret token goes."""
        return f"http://127.0.0.1:{self.port}/api/webhooks/{hook}/{token}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Arrival(request.path, await request.json(), asyncio.get_running_loop().time()))
        reply = self.script.pop(0) if self.script else Reply()
        if reply.delay_sec:
            await asyncio.sleep(reply.delay_sec)
        if reply.status == 204:
            return web.Response(status=204, headers=reply.headers)
        return web.json_response(reply.body or {}, status=reply.status, headers=reply.headers)


# -- a notifier wired to it ---------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RecordingClock(SystemClock):
    """The real clock, remembering every sleep asked of it."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


def make(
    emit: Any,
    *,
    heartbeat: str | None = None,
    alerts: str | None = None,
    clock: Any = None,
    policy: RetryPolicy = FAST,
    on_progress: Callable[[], None] | None = None,
    **cfg: Any,
) -> DiscordNotifier:
    """A DiscordNotifier with the FAST retries and a 5 s timeout; `cfg` overrides DiscordConfig fields."""
    return DiscordNotifier(
        DiscordConfig(**{"timeout_sec": 5.0, **cfg}),
        emit,
        clock or SystemClock(),
        heartbeat_url=Secret(heartbeat) if heartbeat else None,
        alerts_url=Secret(alerts) if alerts else None,
        on_progress=on_progress,
        policy=policy,
    )


@contextlib.asynccontextmanager
async def running(notifier: DiscordNotifier) -> AsyncIterator[DiscordNotifier]:
    """Run the notifier for the block; cancel it and close its session after."""
    task = asyncio.create_task(notifier.run(), name="discord")
    try:
        yield notifier
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await notifier.close()


async def until(predicate: Callable[[], object], timeout_sec: float = 10.0) -> None:
    """Poll `predicate` on the loop until it is truthy; fail after `timeout_sec`."""
    async with asyncio.timeout(timeout_sec):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


async def settled(emitter: CapturingEmitter, *ids: str, timeout_sec: float = 20.0) -> dict[str, str]:
    """Wait until each notification id has its final event; return id -> event_type."""
    async with asyncio.timeout(timeout_sec):
        while True:
            final = {e.correlation_id: e.event_type for e in emitter.events if e.event_type in TERMINAL}
            if all(i in final for i in ids):
                return final
            await asyncio.sleep(0.01)


def alert(title: str = "peer silent", subject: str = "peer-1", kind: str = "peer.silent", description: str = "",
          **kw: Any) -> Notification:
    """An alert (peer.silent of peer-1 unless told otherwise)."""
    return Notification(kind=kind, title=title, description=description or f"{subject} went quiet", subject=subject,
                        **kw)


def heartbeat(title: str = "heartbeat") -> Notification:
    """A heartbeat notification."""
    return Notification(kind="heartbeat", title=title, description="uptime 1h")


def events_for(emitter: CapturingEmitter, n: Notification) -> list[tuple[str, dict[str, Any]]]:
    """(event_type, data) of every event about `n`, in order."""
    return [(e.event_type, e.data) for e in emitter.events if e.correlation_id == n.id]
