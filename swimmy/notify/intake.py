"""The Discord notifier's intake: what `submit` does with a notification before any HTTP (SPEC §9).

Mute, the per-(kind, subject) cooldown, a heartbeat replacing an unsent queued one, a burst of one kind merged
into its waiting alert (`Pending`), and drops on a full queue reported once per episode (`DropEpisode`); the
operator notes are swimmy/notify/discord.py's docstring. `DiscordIntake` is the part of `DiscordNotifier`
(swimmy/notify/discord.py) that does it; DiscordNotifier sets every attribute declared here in its constructor.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from swimmy.clock import Clock
from swimmy.config import DiscordConfig
from swimmy.notify.message import HEARTBEAT_KIND, Notification, summary_notification, title_head
from swimmy.notify.webhook import scrub
from swimmy.telemetry.queue import Emit

SERVICE = "notifier"
COOLDOWN_PRUNE_AT = 1024
MERGED_SUBJECTS_MAX = 10  # a burst of 3,000 peers keeps 10 names in memory and on Discord, and counts the rest
QUEUE_FULL_REPORT_SEC = 60.0  # during one queue_full episode, at most one discord.failed per this many seconds


@dataclass
class Pending:
    """One queued notification: when it was submitted, and the alerts of its kind merged into it."""

    notification: Notification
    timestamp: str
    queued_mono: float
    count: int = 1  # alerts merged into this entry, the first included
    subjects: list[str] = field(init=False)  # the first MERGED_SUBJECTS_MAX distinct ones
    named: int = field(init=False)  # how many of `count` had a subject in `subjects`
    head: str = field(init=False)  # the title the merged alerts share without their subjects, else the kind

    def __post_init__(self) -> None:
        subject = self.notification.subject
        self.subjects, self.named = ([subject], 1) if subject else ([], 0)
        self.head = title_head(self.notification)

    def merge(self, n: Notification) -> None:
        """Take one more alert of the same kind: count it, keep its subject while there is room."""
        self.count += 1
        if title_head(n) != self.head:  # "Promoted to A: x" and "Promoted to S: y" share no title but the kind
            self.head = n.kind
        if n.subject in self.subjects:
            self.named += 1
        elif n.subject and len(self.subjects) < MERGED_SUBJECTS_MAX:
            self.subjects.append(n.subject)
            self.named += 1

    def render(self) -> Notification:
        """The notification to send: the alert itself, or the summary of the merged burst."""
        return summary_notification(self.notification, self.count, self.subjects, self.named, self.head)


@dataclass
class DropEpisode:
    """Drops on a full queue until a notification is queued again: reported at first, then at most every 60 s."""

    reported_mono: float  # when the last queue_full event was emitted
    unreported: int = 0  # drops since then
    first_unreported: Notification | None = None  # the first of them: its id, kind and subject name the event


class DiscordIntake:
    """DiscordNotifier's intake: mute, cooldown, heartbeat replacement, burst merging, the bounded queue."""

    _cfg: DiscordConfig
    _emit: Emit
    _clock: Clock
    _fragments: tuple[str, ...]
    _queue: deque[Pending]
    _waiting: dict[str, Pending]
    _drops: DropEpisode | None
    _work: asyncio.Event
    _last_alert: dict[tuple[str, str], float]
    dropped: int
    suppressed: int
    muted: int
    replaced: int
    coalesced: int

    def submit(self, n: Notification) -> bool:
        """Queue `n`, or merge it into the waiting alert of its kind; False when muted, cooling down or dropped."""
        if n.kind in self._cfg.mute:
            self.muted += 1
            return False
        now = self._clock.monotonic()
        key = (n.kind, n.subject)
        if n.kind != HEARTBEAT_KIND:
            last = self._last_alert.get(key)
            if last is not None and now - last < self._cfg.alert_cooldown_sec:
                self.suppressed += 1
                return False
        pending = Pending(n, self._clock.now_utc().isoformat(), now)
        if n.kind == HEARTBEAT_KIND:
            for i, queued in enumerate(self._queue):
                if queued.notification.kind == HEARTBEAT_KIND:
                    self._queue[i] = pending
                    self.replaced += 1
                    return True
        else:
            waiting = self._waiting.get(n.kind)
            if waiting is not None:
                waiting.merge(n)
                self.coalesced += 1
                self._remember_alert(key, now)
                return True
        if len(self._queue) >= self._cfg.queue_size:
            self._drop(n, now)
            return False
        self._end_drop_episode()
        if n.kind != HEARTBEAT_KIND:
            self._remember_alert(key, now)
            self._waiting[n.kind] = pending
        self._queue.append(pending)
        self._work.set()
        return True

    def _drop(self, n: Notification, now: float) -> None:
        """Count a drop; emit queue_full for the first of an episode, then at most once per QUEUE_FULL_REPORT_SEC."""
        self.dropped += 1
        episode = self._drops
        if episode is None:
            self._drops = DropEpisode(reported_mono=now)
            self._queue_full_event(n, 1)
            return
        if episode.first_unreported is None:
            episode.first_unreported = n
        episode.unreported += 1
        if now - episode.reported_mono >= QUEUE_FULL_REPORT_SEC:
            self._queue_full_event(episode.first_unreported, episode.unreported)
            episode.reported_mono, episode.unreported, episode.first_unreported = now, 0, None

    def _end_drop_episode(self) -> None:
        """The queue took a notification again: account for the drops not yet reported, in one last event."""
        episode, self._drops = self._drops, None
        if episode is not None and episode.first_unreported is not None:
            self._queue_full_event(episode.first_unreported, episode.unreported)

    def _queue_full_event(self, n: Notification, count: int) -> None:
        self._event("discord.failed", "warning", n, {"attempts": 0, "status_code": None, "reason": "queue_full",
                                                    "error": f"queue full ({self._cfg.queue_size})", "count": count})

    def _remember_alert(self, key: tuple[str, str], now: float) -> None:
        if len(self._last_alert) >= COOLDOWN_PRUNE_AT:  # subjects come and go (strategies): forget expired ones
            cooldown = self._cfg.alert_cooldown_sec
            self._last_alert = {k: t for k, t in self._last_alert.items() if now - t < cooldown}
        self._last_alert[key] = now

    def _event(self, event_type: str, severity: str, n: Notification, data: dict[str, Any]) -> None:
        data = {"kind": n.kind, "subject": n.subject, **data}
        self._emit(event_type, service=SERVICE, severity=severity, correlation_id=n.id,
                   data=scrub(data, self._fragments))
