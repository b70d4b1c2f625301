"""Wire messages (SPEC §3): bytes -> a typed message or Rejected(reason). Pure: no sockets, no clock.

Every message is one JSON object with `"v": 1` and a `"type"`. The generic checks
(size, JSON, object, version, type) are the same for every socket; each type then
has its own field checks. Nothing here raises on input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

PROTOCOL_VERSION = 1
MAX_TEXT = 256  # ids, sources and statuses longer than this are not ours

# Rejection reasons (the `reason` of message.rejected).
OVERSIZE = "oversize"
MULTIPART = "multipart"
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
BAD_VERSION = "bad_version"
MISSING_TYPE = "missing_type"
UNKNOWN_TYPE = "unknown_type"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"


@dataclass(frozen=True)
class Rejected:
    """Why a message was refused, with what little could be read of it."""

    reason: str
    size: int
    type: str | None = None
    id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Message:
    """A message that passed the generic checks: its type and its object."""

    type: str
    body: dict[str, Any]
    size: int


@dataclass(frozen=True)
class Heartbeat:
    """A peer's HEARTBEAT; `ack_of` is the id of one of ours it answers."""

    source: str
    status: str
    id: str | None
    ack_of: str | None
    seq: int | None


def parse(frames: list[bytes], max_bytes: int) -> Message | Rejected:
    """Apply the generic checks to one received message (its frames)."""
    size = sum(len(f) for f in frames)
    if size > max_bytes:
        return Rejected(OVERSIZE, size, detail=f"{size} bytes > {max_bytes}")
    if len(frames) != 1:
        return Rejected(MULTIPART, size, detail=f"{len(frames)} frames, expected 1")
    try:
        body = orjson.loads(frames[0])
    except orjson.JSONDecodeError as exc:
        return Rejected(MALFORMED_JSON, size, detail=str(exc)[:200])
    if not isinstance(body, dict):
        return Rejected(NOT_AN_OBJECT, size, detail=type(body).__name__)
    kind = body.get("type")
    msg_id = _text(body.get("id"))
    if "v" not in body or body["v"] != PROTOCOL_VERSION or isinstance(body["v"], bool):
        return Rejected(BAD_VERSION, size, _text(kind), msg_id, detail=f"v={body.get('v')!r:.40}")
    if not isinstance(kind, str) or not kind:
        return Rejected(MISSING_TYPE, size, None, msg_id)
    if len(kind) > MAX_TEXT:
        return Rejected(BAD_FIELD, size, None, msg_id, detail="type too long")
    return Message(kind, body, size)


def parse_heartbeat(msg: Message) -> Heartbeat | Rejected:
    """A peer HEARTBEAT: `source` and `status` required, `id`, `ack_of` and `seq` optional."""
    body = msg.body
    msg_id = _text(body.get("id"))
    for name in ("source", "status"):
        if name not in body:
            return Rejected(MISSING_FIELD, msg.size, msg.type, msg_id, detail=name)
        if not _is_text(body[name]):
            return Rejected(BAD_FIELD, msg.size, msg.type, msg_id, detail=name)
    for name in ("id", "ack_of"):
        if body.get(name) is not None and not _is_text(body[name]):
            return Rejected(BAD_FIELD, msg.size, msg.type, None, detail=name)
    seq = body.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        return Rejected(BAD_FIELD, msg.size, msg.type, msg_id, detail="seq")
    return Heartbeat(body["source"], body["status"], body.get("id"), body.get("ack_of"), seq)


def encode(body: dict[str, Any]) -> bytes:
    """A message as bytes, with the protocol version first."""
    return orjson.dumps({"v": PROTOCOL_VERSION, **body})


def heartbeat_body(
    *, hb_id: str, seq: int, source: str, status: str, sent_at: str, version: str, config_hash: str
) -> dict[str, Any]:
    """Our HEARTBEAT's fields (SPEC §3)."""
    return {
        "type": "HEARTBEAT",
        "id": hb_id,
        "seq": seq,
        "source": source,
        "status": status,
        "sent_at": sent_at,
        "version": version,
        "config_hash": config_hash,
    }


def ack_body(*, source: str, status: str, hb_id: str, ack_of: str | None) -> dict[str, Any]:
    """A peer's HEARTBEAT answering one of ours."""
    body: dict[str, Any] = {"type": "HEARTBEAT", "source": source, "status": status, "id": hb_id}
    if ack_of is not None:
        body["ack_of"] = ack_of
    return body


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT


def _text(value: Any) -> str | None:
    return value if _is_text(value) else None
