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
"""  # noqa: RUF002 - the multiplication sign of a burst's title is what Discord shows

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
import orjson
from yarl import URL

from swimmy import __version__
from swimmy.backoff import backoff_for_attempt
from swimmy.clock import Clock
from swimmy.config import DiscordConfig, Secret
from swimmy.telemetry.queue import Emit

SERVICE = "notifier"
HEARTBEAT_KIND = "heartbeat"
TICK_SEC = 1.0
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
CONTENT_MAX = 2000
FOOTER_MAX = 256  # our own bound: title + description + footer stays under Discord's 6,000 per message
ELLIPSIS = "…"
TIMES = "×"  # noqa: RUF001 - the multiplication sign of a burst's title, not an x
MAX_BODY_BYTES = 64 * 1024  # a Discord answer is a few hundred bytes; never buffer an unbounded one
COOLDOWN_PRUNE_AT = 1024
MERGED_SUBJECTS_MAX = 10  # a burst of 3,000 peers keeps 10 names in memory and on Discord, and counts the rest
QUEUE_FULL_REPORT_SEC = 60.0  # during one queue_full episode, at most one discord.failed per this many seconds
COLOURS = {"info": 0x3498DB, "warning": 0xE67E22, "error": 0xE74C3C, "critical": 0x992D22}
OTHER_COLOUR = 0x95A5A6
_T = TypeVar("_T")


@dataclass(frozen=True)
class Notification:
    """One message for Discord; `id` is the correlation_id of its discord.* events."""

    kind: str
    title: str
    description: str
    severity: str = "info"
    subject: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits per notification (module docstring); tests shorten them."""

    max_attempts: int = 5
    backoff_base_sec: float = 1.0
    backoff_cap_sec: float = 60.0
    max_wait_sec: float = 300.0


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


@dataclass(frozen=True)
class RateLimit:
    """What one answer says about the rate limit (SPEC: Discord's headers and 429 body)."""

    remaining: int | None = None
    reset_after_sec: float | None = None
    retry_after_sec: float | None = None
    bucket: str | None = None
    scope: str | None = None
    is_global: bool = False


# -- pure steps ---------------------------------------------------------------------------------


def cut(text: str, limit: int) -> str:
    """`text` within `limit` UTF-16 units (Discord's count is never larger), ending in … when cut."""
    if len(text) <= limit // 2 or _utf16_len(text) <= limit:
        return text
    out = text[: limit - 1]
    while _utf16_len(out) > limit - 1:
        out = out[:-1]
    return out + ELLIPSIS


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def build_payload(n: Notification, *, timestamp: str, content: str = "") -> dict[str, Any]:
    """The webhook JSON for `n`: one embed cut to Discord's limits."""
    embed: dict[str, Any] = {"color": COLOURS.get(n.severity, OTHER_COLOUR), "timestamp": timestamp}
    title, description = cut(n.title, TITLE_MAX), cut(n.description, DESCRIPTION_MAX)
    if title:
        embed["title"] = title
    if description or not title:
        embed["description"] = description or n.kind  # Discord refuses an empty embed
    embed["footer"] = {"text": cut(" · ".join(p for p in ("swimmy", n.kind, n.subject) if p), FOOTER_MAX)}
    payload: dict[str, Any] = {"username": "swimmy", "embeds": [embed], "allowed_mentions": {"parse": []}}
    if content:
        payload["content"] = cut(content, CONTENT_MAX)
    return payload


def heartbeat_notification(status: str, figures: Mapping[str, Any]) -> Notification:
    """The periodic summary as a heartbeat Notification: the status in the title, one line per figure."""
    return Notification(
        kind=HEARTBEAT_KIND,
        title=f"swimmy heartbeat: {status}",
        description="\n".join(f"**{key}**: {value}" for key, value in figures.items()),
        severity="info" if status == "OK" else "warning",
    )


def title_head(n: Notification) -> str:
    """`n`'s title without its subject ("Peer silent: worker-a" -> "Peer silent"), or its kind if nothing is left."""
    head = n.title
    if n.subject and head.endswith(n.subject):
        head = head[: -len(n.subject)].rstrip().rstrip(":").rstrip()
    return head or n.kind


def summary_notification(
    first: Notification, count: int, subjects: Sequence[str], named: int, head: str | None = None,
) -> Notification:
    """The one message for `count` merged alerts of `first.kind`: the count, the first subjects, `first`'s text.

    `subjects` are the first distinct subjects kept, `named` how many of the `count` alerts had one of them, and
    `head` the title they share without their subjects (by default `first`'s).
    """
    if count <= 1:
        return first
    head = head or title_head(first)
    names = ", ".join(subjects)
    more = count - named if subjects else 0
    listed = names + (f", {ELLIPSIS} (and {more} more)" if more > 0 else "")
    title = f"{count} {TIMES} {head}" + (f": {listed}" if listed else "")
    lead = f"{count} {first.kind} alerts arrived while the first waited to be sent"
    description = f"{lead}: {listed}." if listed else f"{lead}."
    if first.description:
        description += f"\n\nThe first: {first.description}"
    return replace(first, title=title, description=description)


def _seconds(value: Any) -> float | None:
    """A non-negative finite number of seconds, or None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        sec = float(value)
    except (TypeError, ValueError):
        return None
    return sec if math.isfinite(sec) and sec >= 0 else None


def read_rate_limit(headers: Mapping[str, str], body: Mapping[str, Any] | None) -> RateLimit:
    """Discord's rate-limit headers and 429 body; the retry-after is the longer of header and body."""
    h = {k.lower(): v for k, v in headers.items()}
    body = body or {}
    remaining: int | None
    try:
        remaining = int(h["x-ratelimit-remaining"])
    except (KeyError, ValueError):
        remaining = None
    waits = [s for s in (_seconds(h.get("retry-after")), _seconds(body.get("retry_after"))) if s is not None]
    scope = h.get("x-ratelimit-scope")
    is_global = h.get("x-ratelimit-global", "").lower() == "true" or scope == "global" or body.get("global") is True
    return RateLimit(
        remaining=remaining,
        reset_after_sec=_seconds(h.get("x-ratelimit-reset-after")),
        retry_after_sec=max(waits) if waits else None,
        bucket=h.get("x-ratelimit-bucket"),
        scope=scope,
        is_global=is_global,
    )


def backoff_sec(attempt: int, policy: RetryPolicy) -> float:
    """The wait after failed attempt `attempt` (1-based): base doubling, capped."""
    return backoff_for_attempt(attempt, base_sec=policy.backoff_base_sec, cap_sec=policy.backoff_cap_sec)


def secret_fragments(urls: list[Secret]) -> tuple[str, ...]:
    """Strings to scrub from anything emitted: each URL as given and normalised, its path and token."""
    found: set[str] = set()
    for secret in urls:
        raw = secret.reveal()
        found.add(raw)
        with contextlib.suppress(ValueError, TypeError):
            url = URL(raw)
            found.update((str(url), url.path, url.raw_path, url.name))
        found.update(part for part in raw.split("/") if len(part) >= 16)  # a webhook token, however the URL reads
    return tuple(sorted((s for s in found if len(s) >= 8), key=len, reverse=True))


def scrub(value: Any, fragments: tuple[str, ...]) -> Any:
    """`value` with every fragment replaced by *** in its strings (dicts and lists walked)."""
    if isinstance(value, str):
        for frag in fragments:
            if frag in value:
                value = value.replace(frag, "***")
        return value
    if isinstance(value, dict):
        return {k: scrub(v, fragments) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, fragments) for v in value]
    return value


def describe_error(exc: BaseException) -> tuple[str, str, bool]:
    """(reason, error text, retryable) for a request that got no answer; the text never carries the URL."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return "invalid_url", name, False
    if isinstance(exc, TimeoutError):
        return "timeout", name, True
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "connection_error", f"{name}: name lookup failed", True
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return "connection_error", f"{name}: {os.strerror(errno)}", True
    return "connection_error", name, True


# -- the service --------------------------------------------------------------------------------


@dataclass
class _Pending:
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
class _DropEpisode:
    """Drops on a full queue until a notification is queued again: reported at first, then at most every 60 s."""

    reported_mono: float  # when the last queue_full event was emitted
    unreported: int = 0  # drops since then
    first_unreported: Notification | None = None  # the first of them: its id, kind and subject name the event


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


class DiscordNotifier:
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
        self._queue: deque[_Pending] = deque()
        self._waiting: dict[str, _Pending] = {}  # alert kind -> its queued entry, the one later alerts merge into
        self._drops: _DropEpisode | None = None
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

    # -- intake -----------------------------------------------------------------------------------

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
        pending = _Pending(n, self._clock.now_utc().isoformat(), now)
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
            self._drops = _DropEpisode(reported_mono=now)
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

    async def _deliver(self, pending: _Pending) -> None:
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

    def _event(self, event_type: str, severity: str, n: Notification, data: dict[str, Any]) -> None:
        data = {"kind": n.kind, "subject": n.subject, **data}
        self._emit(event_type, service=SERVICE, severity=severity, correlation_id=n.id,
                   data=scrub(data, self._fragments))
