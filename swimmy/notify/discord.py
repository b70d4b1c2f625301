"""The Discord notifier (SPEC §3, §9, §11): a bounded queue, per-URL rate limits, "delivered" means HTTP 2xx.

How it behaves, for operators:

- Queue: at most `discord.queue_size` notifications wait. A heartbeat replaces an unsent queued heartbeat in
  place (the newer summary supersedes it; counted as `replaced`, no event).
- Bursts: an alert whose kind already has an alert waiting in the queue (not yet being delivered) is merged
  into it instead of queued (counted as `coalesced`, no event), so a burst of one kind is one Discord message:
  `N × <title>: <first subjects>, … (and M more)`, a description starting with the count and the subjects, then
  the first alert's description; the footer names the first subject. The first 10 distinct subjects are kept,
  the rest only counted. An alert arriving once the waiting one is being delivered starts a new message. A
  single alert reads as it always did.
- A full queue: a notification that finds the queue full is dropped and counted in `dropped`. A run of drops
  is one episode and one warning, not an event per message: its first drop emits `discord.failed` (severity
  warning, reason `queue_full`, `attempts` 0, `count` 1); later drops emit at most one more every 60 s (`count`
  = drops since the previous event); when a notification is queued again the episode ends, and drops not yet
  reported are emitted then as one last event. The `count`s of the queue_full events add up to `dropped`.
- Mute: a kind listed in `discord.mute` is not queued (counted as `muted`, no event).
- Cooldown: once an alert of one (kind, subject) is queued, repeats of that pair are held back for
  `discord.alert_cooldown_sec`: not sent, counted as `suppressed`, and no event per repeat (a flapping peer
  must not flood the telemetry while it is kept off Discord). Heartbeats have no cooldown: they are periodic.
- Attempts: at most 5 HTTP attempts per notification, 429s included. 5xx, timeouts and connection errors are
  retried after 1 s, 2 s, 4 s, ... capped at 60 s (a longer `Retry-After` on a 5xx is honoured). A 429 waits
  max(`Retry-After` header, JSON `retry_after`) before the next attempt. A wait over 300 s fails the
  notification (reason `rate_limited` or `server_error`) rather than stalling the queue behind it. Any other
  status (3xx, 4xx) is `discord.failed` at once: retrying a 400 or a deleted webhook's 404 cannot help.
- Rate limits: one bucket per URL. `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset-After` holds the next
  request to that URL until the reset, before a 429 happens; a 429 holds its URL for its retry-after, and a
  global one (`X-RateLimit-Global` or scope `global`) holds every URL.
- Routing: heartbeats go to the heartbeat webhook, everything else to the alerts webhook, each falling back to
  the other. Without either URL the notifier runs dry: the first `run()` emits one `discord.dry_run` naming the
  environment variables (never a value), then every notification becomes a `discord.dry_run` event instead.
- The message: one embed with the title (cut to 256 characters), the description (cut to 4,096), a colour by
  severity, a footer `swimmy · <kind> · <subject>` and the submission time; username `swimmy`; mentions are
  disabled so a strategy name cannot ping anyone. Text over a limit is cut and ends in `…` rather than refused
  with a 400; lengths are counted in UTF-16 units, which is never fewer than Discord's count.
- The heartbeat: `heartbeat_notification(status, figures)` builds it: title `swimmy heartbeat: OK` (or
  `DEGRADED`, then severity warning), one `**key**: value` line per figure (uptime, strategies by rank, OOS
  queue, WFV pending, peers, telemetry counters), in the order given.
- Secrets: URLs are only revealed for the request itself. Error texts are built from the exception class,
  errno and status, never from `str(exc)` (aiohttp puts URLs there; only an unexpected internal error keeps
  its text, cut and scrubbed), and every string emitted is scrubbed of the URLs and tokens as a second line of
  defence.
- Stop: what is still queued, or in flight when `run()` is cancelled, is not sent and gets no event.
- Time: backoff, Retry-After and reset-after waits go through `clock.sleep` in slices of at most a second
  (`on_progress` on each); the HTTP timeout is aiohttp's `ClientTimeout(total=discord.timeout_sec)`, real time.

This module delivers; `submit` is swimmy/notify/intake.py, the message message.py, the webhook's pure steps webhook.py.
"""  # noqa: RUF002 - the multiplication sign of a burst's title is what Discord shows

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson

from swimmy import __version__
from swimmy.clock import Clock
from swimmy.config import DiscordConfig, Secret
from swimmy.notify.intake import SERVICE, DiscordIntake, DropEpisode, Pending
from swimmy.notify.message import (
    CONTENT_MAX,
    DESCRIPTION_MAX,
    HEARTBEAT_KIND,
    TITLE_MAX,
    Notification,
    build_payload,
    cut,
    heartbeat_notification,
    summary_notification,
    title_head,
)
from swimmy.notify.webhook import (
    RateLimit,
    RetryPolicy,
    backoff_sec,
    describe_error,
    read_rate_limit,
    scrub,
    secret_fragments,
)
from swimmy.telemetry.queue import Emit

# The names the rest of swimmy and its tests import from here.
__all__ = [
    "CONTENT_MAX",
    "DESCRIPTION_MAX",
    "HEARTBEAT_KIND",
    "TITLE_MAX",
    "DiscordNotifier",
    "DiscordStats",
    "Notification",
    "RateLimit",
    "RetryPolicy",
    "backoff_sec",
    "build_payload",
    "cut",
    "describe_error",
    "heartbeat_notification",
    "read_rate_limit",
    "scrub",
    "secret_fragments",
    "summary_notification",
    "title_head",
]

TICK_SEC = 1.0
MAX_BODY_BYTES = 64 * 1024  # a Discord answer is a few hundred bytes; never buffer an unbounded one
_T = TypeVar("_T")


@dataclass(frozen=True)
class DiscordStats:
    """Counters since start, for snapshots and metrics."""

    delivered: int
    failed: int
    dropped: int
    rate_limited: int
    suppressed: int
    muted: int
    replaced: int
    dry_run: int
    queued: int
    coalesced: int = 0  # last and defaulted: added later, positional users of the fields above still work


# -- the service --------------------------------------------------------------------------------


@dataclass
class _Bucket:
    resume_mono: float = 0.0  # no request to this URL before this monotonic time


@dataclass(frozen=True)
class _Answer:
    status: int
    limits: RateLimit
    body: Mapping[str, Any] | None


@dataclass(frozen=True)
class _NoAnswer:
    reason: str
    error: str
    retryable: bool


class DiscordNotifier(DiscordIntake):
    """Delivers Notifications to the Discord webhooks with bounded memory, honest outcomes and no leaked URL."""

    def __init__(
        self,
        cfg: DiscordConfig,
        emit: Emit,
        clock: Clock,
        *,
        heartbeat_url: Secret | None,
        alerts_url: Secret | None,
        on_progress: Callable[[], None] | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._cfg = cfg
        self._emit = emit
        self._clock = clock
        self._on_progress = on_progress or (lambda: None)
        self._policy = policy or RetryPolicy()
        self._heartbeat_url = heartbeat_url or alerts_url
        self._alerts_url = alerts_url or heartbeat_url
        self.dry = self._alerts_url is None
        self._fragments = secret_fragments([u for u in (heartbeat_url, alerts_url) if u is not None])
        self._queue: deque[Pending] = deque()
        self._waiting: dict[str, Pending] = {}  # alert kind -> its queued entry, the one later alerts merge into
        self._drops: DropEpisode | None = None
        self._work = asyncio.Event()
        self._last_alert: dict[tuple[str, str], float] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._global_resume_mono = 0.0
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._announced = False
        self.delivered = self.failed = self.dropped = self.rate_limited = 0
        self.suppressed = self.muted = self.replaced = self.dry_runs = self.coalesced = 0

    def __repr__(self) -> str:
        return f"<DiscordNotifier dry={self.dry} queued={self.queued}>"

    @property
    def queued(self) -> int:
        """Notifications waiting (not counting one being delivered)."""
        return len(self._queue)

    @property
    def stats(self) -> DiscordStats:
        """A snapshot of the counters."""
        return DiscordStats(self.delivered, self.failed, self.dropped, self.rate_limited, self.suppressed,
                            self.muted, self.replaced, self.dry_runs, self.queued, self.coalesced)

    def update_config(self, cfg: DiscordConfig) -> None:
        """SIGHUP: new mute list, cooldown, timeout and queue size; URLs stay as read at start."""
        self._cfg = cfg

    # -- delivery ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver queued notifications until cancelled; wake at least once a second."""
        if self.dry and not self._announced:
            self._announced = True
            self._emit("discord.dry_run", service=SERVICE, correlation_id=str(uuid.uuid4()), data={
                "kind": "announce",
                "reason": "no webhook URL configured",
                "env": [self._cfg.heartbeat_webhook_env, self._cfg.alerts_webhook_env],
            })
        while True:
            self._on_progress()
            if not self._queue:
                self._work.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_SEC):
                        await self._work.wait()
                continue
            pending = self._queue.popleft()
            if self._waiting.get(pending.notification.kind) is pending:
                del self._waiting[pending.notification.kind]  # being delivered now: later alerts start a new one
            try:
                await self._deliver(pending)
            except Exception as exc:  # noqa: BLE001 - one bad notification must not end the notifier
                self.failed += 1
                self._event("discord.failed", "error", pending.notification, {
                    "attempts": None, "status_code": None, "reason": "internal_error",
                    "error": f"{type(exc).__name__}: {str(exc)[:200]}",
                })

    async def close(self) -> None:
        """Close the HTTP session; idempotent. Queued notifications are not sent after this."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _deliver(self, pending: Pending) -> None:
        n = pending.render()
        url = self._heartbeat_url if n.kind == HEARTBEAT_KIND else self._alerts_url
        payload = build_payload(n, timestamp=pending.timestamp)
        if url is None:
            self.dry_runs += 1
            embed = payload["embeds"][0]
            self._event("discord.dry_run", "info", n, {"severity": n.severity, "title": embed.get("title", ""),
                                                        "description": embed.get("description", "")})
            return
        body = orjson.dumps(payload)
        bucket = self._buckets.setdefault(url.reveal(), _Bucket())
        attempts = 0
        while True:
            wait = max(bucket.resume_mono, self._global_resume_mono) - self._clock.monotonic()
            if wait > self._policy.max_wait_sec:
                self._fail(n, attempts, None, "rate_limited", f"rate limited for {wait:.1f} s",
                           retry_after_sec=round(wait, 3))
                return
            if wait > 0:
                await self._sleep(wait)
            attempts += 1
            answer = await self._with_ticks(self._post(url, body))
            if isinstance(answer, _NoAnswer):
                if not answer.retryable or attempts >= self._policy.max_attempts:
                    self._fail(n, attempts, None, answer.reason, answer.error)
                    return
                await self._sleep(backoff_sec(attempts, self._policy))
                continue
            status, limits = answer.status, answer.limits
            self._note_limits(bucket, limits)
            if 200 <= status < 300:
                self.delivered += 1
                latency_ms = round((self._clock.monotonic() - pending.queued_mono) * 1000, 1)
                self._event("discord.delivered", "info", n, {"attempts": attempts, "status_code": status,
                                                             "latency_ms": latency_ms})
                return
            if status == 429:
                retry_after = limits.retry_after_sec
                if retry_after is None:
                    retry_after = backoff_sec(attempts, self._policy)
                self.rate_limited += 1
                self._event("discord.rate_limited", "warning", n, {
                    "attempts": attempts, "status_code": status, "retry_after_sec": retry_after,
                    "scope": limits.scope, "global": limits.is_global, "bucket": limits.bucket,
                })
                resume = self._clock.monotonic() + retry_after
                if limits.is_global:
                    self._global_resume_mono = max(self._global_resume_mono, resume)
                else:
                    bucket.resume_mono = max(bucket.resume_mono, resume)
                if attempts >= self._policy.max_attempts:
                    self._fail(n, attempts, status, "rate_limited", "HTTP 429", retry_after_sec=retry_after)
                    return
                continue
            if status >= 500:
                delay = max(backoff_sec(attempts, self._policy), limits.retry_after_sec or 0.0)
                if attempts >= self._policy.max_attempts or delay > self._policy.max_wait_sec:
                    self._fail(n, attempts, status, "server_error", f"HTTP {status}")
                    return
                await self._sleep(delay)
                continue
            self._fail(n, attempts, status, "rejected" if 400 <= status < 500 else "unexpected_status",
                       f"HTTP {status}", body=answer.body)
            return

    def _note_limits(self, bucket: _Bucket, limits: RateLimit) -> None:
        """Hold the URL until its reset once Discord says no request is left, before a 429 happens."""
        if limits.remaining is not None and limits.remaining <= 0 and limits.reset_after_sec is not None:
            bucket.resume_mono = max(bucket.resume_mono, self._clock.monotonic() + limits.reset_after_sec)

    async def _post(self, url: Secret, body: bytes) -> _Answer | _NoAnswer:
        """One POST under the configured timeout; errors become a _NoAnswer with a URL-free text."""
        if self._closed:
            return _NoAnswer("closed", "notifier closed", retryable=False)
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": f"swimmy/{__version__}"})
        timeout = aiohttp.ClientTimeout(total=self._cfg.timeout_sec)
        try:
            async with self._session.post(url.reveal(), data=body, timeout=timeout, allow_redirects=False,
                                          headers={"Content-Type": "application/json"}) as resp:
                raw = bytearray()
                while len(raw) < MAX_BODY_BYTES and (chunk := await resp.content.read(MAX_BODY_BYTES - len(raw))):
                    raw += chunk
                status, headers = resp.status, dict(resp.headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason, error, retryable = describe_error(exc)
            if reason == "timeout":
                error = f"{error}: no answer within {self._cfg.timeout_sec} s"
            return _NoAnswer(reason, error, retryable)
        parsed: Mapping[str, Any] | None = None
        if raw:
            with contextlib.suppress(orjson.JSONDecodeError):
                loaded = orjson.loads(raw)
                parsed = loaded if isinstance(loaded, dict) else None
        return _Answer(status, read_rate_limit(headers, parsed), parsed)

    async def _with_ticks(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Await `coro` while beating on_progress every second (a request may take `timeout_sec`)."""
        task = asyncio.ensure_future(coro)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=TICK_SEC)
                if done:
                    return task.result()
                self._on_progress()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved, so an error is not also reported as "never retrieved"

    async def _sleep(self, seconds: float) -> None:
        """Wait on the injected clock in slices of at most TICK_SEC, beating on_progress."""
        deadline = self._clock.monotonic() + seconds
        while (left := deadline - self._clock.monotonic()) > 0:
            await self._clock.sleep(min(left, TICK_SEC))
            self._on_progress()

    # -- events -----------------------------------------------------------------------------------

    def _fail(self, n: Notification, attempts: int, status: int | None, reason: str, error: str, *,
              retry_after_sec: float | None = None, body: Mapping[str, Any] | None = None) -> None:
        self.failed += 1
        data: dict[str, Any] = {"attempts": attempts, "status_code": status, "reason": reason, "error": error}
        if retry_after_sec is not None:
            data["retry_after_sec"] = retry_after_sec
        if body is not None:  # Discord's own words help: {"code": 50035, "message": "Invalid Form Body"}
            if isinstance(body.get("code"), int):
                data["discord_code"] = body["code"]
            if isinstance(body.get("message"), str):
                data["discord_message"] = body["message"][:200]
        self._event("discord.failed", "error", n, data)
