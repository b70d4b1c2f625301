"""The Discord heartbeat: the daemon's summary every `discord.heartbeat_interval_sec`, and on demand.

The figures come from the caller (a function that gathers them now); this module only decides when, builds
the message and queues it, and says so in the stream (`heartbeat.discord_sent`).
"""

from __future__ import annotations

from collections.abc import Callable

from swimmy.clock import Clock
from swimmy.config import DiscordConfig
from swimmy.notify.discord import DiscordNotifier, heartbeat_notification
from swimmy.ops.figures import Figures, summary_lines
from swimmy.telemetry.queue import Emit


class DiscordHeartbeat:
    """Queues the summary on its interval (reloadable) and when asked (`swimmy heartbeat now`)."""

    def __init__(self, notifier: DiscordNotifier, figures: Callable[[], Figures], emit: Emit, clock: Clock,
                 cfg: DiscordConfig, *, on_progress: Callable[[], None] | None = None) -> None:
        self._notifier = notifier
        self._figures = figures
        self._emit = emit
        self._clock = clock
        self.interval_sec = cfg.heartbeat_interval_sec
        self._on_progress = on_progress or (lambda: None)

    def update_config(self, cfg: DiscordConfig) -> None:
        """A reload: the new interval counts from the last summary."""
        self.interval_sec = cfg.heartbeat_interval_sec

    def send_now(self) -> str | None:
        """Queue the summary now; its notification id, or None when muted or dropped."""
        figures = self._figures()
        note = heartbeat_notification(figures.status, summary_lines(figures))
        if not self._notifier.submit(note):
            return None
        self._emit("heartbeat.discord_sent", service="engine", correlation_id=note.id,
                   data={"heartbeat_id": note.id, "status": "queued", "daemon_status": figures.status})
        return note.id

    async def run(self) -> None:
        """The summary every interval; wakes every second (progress, and a shorter interval after a reload)."""
        last = self._clock.monotonic()
        while True:
            self._on_progress()
            if self._clock.monotonic() - last >= self.interval_sec:
                last = self._clock.monotonic()
                self.send_now()
            await self._clock.sleep(1.0)
