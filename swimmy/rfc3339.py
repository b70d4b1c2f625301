"""RFC 3339 times (`2026-11-26T18:35:20Z`, `...+09:00`): the one parser of the CLI tools and readers, and the
one formatter of the times people read on the pages and in exports (UTC, whole seconds, `Z`).

Imports nothing from swimmy.
"""

from __future__ import annotations

from datetime import UTC, datetime


class NoTimeZone(ValueError):
    """A readable time without `Z` or an offset, where one is required."""


def parse_rfc3339(text: str, *, assume_utc: bool = False) -> datetime:
    """An aware datetime. ValueError when `text` is not a time; NoTimeZone when it has no zone, unless
    `assume_utc` (for the event envelope and the snapshots, always written in UTC)."""
    when = datetime.fromisoformat(text.strip())  # Python >= 3.11 reads `Z`
    if when.tzinfo is None:
        if not assume_utc:
            raise NoTimeZone(f"{text!r} has no time zone")
        when = when.replace(tzinfo=UTC)
    return when


def format_rfc3339(unix_sec: float) -> str:
    """Unix seconds as `2026-11-26T18:35:20Z` (UTC, whole seconds)."""
    return datetime.fromtimestamp(unix_sec, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
