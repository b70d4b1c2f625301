"""What a Discord message says: the Notification, its webhook JSON, the heartbeat and a burst's summary.

Pure steps, no I/O. The rules they follow (Discord's limits, lengths in UTF-16 units, mentions off, how a burst
reads) are the operator notes of swimmy/notify/discord.py, which re-exports these names.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

HEARTBEAT_KIND = "heartbeat"
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
CONTENT_MAX = 2000
FOOTER_MAX = 256  # our own bound: title + description + footer stays under Discord's 6,000 per message
ELLIPSIS = "…"
TIMES = "×"  # noqa: RUF001 - the multiplication sign of a burst's title, not an x
COLOURS = {"info": 0x3498DB, "warning": 0xE67E22, "error": 0xE74C3C, "critical": 0x992D22}
OTHER_COLOUR = 0x95A5A6


@dataclass(frozen=True)
class Notification:
    """One message for Discord; `id` is the correlation_id of its discord.* events."""

    kind: str
    title: str
    description: str
    severity: str = "info"
    subject: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


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

