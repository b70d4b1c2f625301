"""The webhook's HTTP side as pure steps: what an answer says of the rate limits, how long to wait before the next
attempt, what a request that got no answer means, and the webhook URL kept out of every text.

The rules they serve (attempts, waits, buckets, secrets) are the operator notes of swimmy/notify/discord.py, which
re-exports these names.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from swimmy.backoff import backoff_for_attempt
from swimmy.config import Secret


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits per notification (module docstring); tests shorten them."""

    max_attempts: int = 5
    backoff_base_sec: float = 1.0
    backoff_cap_sec: float = 60.0
    max_wait_sec: float = 300.0


@dataclass(frozen=True)
class RateLimit:
    """What one answer says about the rate limit (SPEC: Discord's headers and 429 body)."""

    remaining: int | None = None
    reset_after_sec: float | None = None
    retry_after_sec: float | None = None
    bucket: str | None = None
    scope: str | None = None
    is_global: bool = False


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
