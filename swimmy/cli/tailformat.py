"""`swimmy tail`'s filter and readable form: which events to show, `--since` read as a time, one event per line.

Pure: no file, no output. swimmy/cli/tail.py applies them to the lines it reads.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

import orjson

from swimmy.rfc3339 import NoTimeZone, parse_rfc3339
from swimmy.telemetry.envelope import SEVERITY_RANK, normalize_severity

_SEVERITY_WIDTH = max(len(name) for name in SEVERITY_RANK)
_UNIT_SEC = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RELATIVE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
# A value printed without quotes must not be mistaken for a separator or a second key=value pair.
_PLAIN = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class TailFilter:
    """Which events to show; every condition that is set must hold (an empty filter shows everything)."""

    event_glob: str | None = None  # fnmatch glob on event_type, e.g. "wfv.*"
    min_severity: str | None = None  # one of debug, info, warning, error, critical; lines below are hidden
    service: str | None = None  # exact match on service
    correlation_id: str | None = None  # exact match on correlation_id
    since: float | None = None  # Unix seconds; lines with an older timestamp are hidden

    def __post_init__(self) -> None:
        if self.min_severity is not None:
            low = self.min_severity.lower()
            if low not in SEVERITY_RANK:
                raise ValueError(f"unknown severity {self.min_severity!r}: expected one of {', '.join(SEVERITY_RANK)}")
            object.__setattr__(self, "min_severity", low)

    def matches(self, event: dict[str, Any]) -> bool:
        """True when the event passes every condition set; a timestamp that can't be read fails `since`."""
        if self.service is not None and event.get("service") != self.service:
            return False
        if self.correlation_id is not None and event.get("correlation_id") != self.correlation_id:
            return False
        if self.event_glob is not None and not fnmatch.fnmatchcase(_text(event.get("event_type")), self.event_glob):
            return False
        if self.min_severity is not None:
            severity, _ = normalize_severity(event.get("severity"))
            if SEVERITY_RANK[severity] < SEVERITY_RANK[self.min_severity]:
                return False
        if self.since is not None:
            t = _event_time(event.get("timestamp"))
            if t is None or t < self.since:
                return False
        return True


def parse_since(text: str, now: float) -> float:
    """'10m', '30s', '2h', '1d' (relative to `now`) or an RFC 3339 timestamp -> Unix seconds.

    Raises ValueError, with a message naming the accepted forms, for anything else.
    """
    m = _RELATIVE.fullmatch(text)
    if m is not None:
        return now - float(m.group(1)) * _UNIT_SEC[m.group(2)]
    try:
        return parse_rfc3339(text).timestamp()
    except NoTimeZone:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +09:00") from None
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: expected an age such as 30s, 10m, 2h, 1d "
            "or an RFC 3339 timestamp such as 2026-11-26T18:35:20Z"
        ) from None


def format_event(event: dict[str, Any]) -> str:
    """One readable line: `<timestamp> <SEVERITY> <service> <event_type> [cid=<id>] key=value ...`.

    The cid is left out when it is 'unknown'; string values that hold no space, quote or `=` are shown bare,
    every other value JSON-encoded. A log line (log_type 'log') shows data.message right after its event_type.
    """
    severity = _text(event.get("severity")).upper()
    parts = [
        _text(event.get("timestamp")),
        f"{severity:<{_SEVERITY_WIDTH}}",
        _text(event.get("service")),
        _text(event.get("event_type")),
    ]
    data = event.get("data")
    fields: dict[Any, Any] = dict(data) if isinstance(data, dict) else {}
    if event.get("log_type") == "log" and "message" in fields:
        message = fields.pop("message")
        # The message is for reading, not parsing: bare unless it would break the one-line form.
        parts.append(message if isinstance(message, str) and message.isprintable() else _json(message))
    cid = event.get("correlation_id")
    if cid is not None and cid not in ("unknown", ""):
        parts.append(f"cid={_value(cid)}")
    parts.extend(f"{_text(key)}={_value(value)}" for key, value in fields.items())
    if data is not None and not isinstance(data, dict):
        parts.append(f"data={_value(data)}")
    return " ".join(parts)


def _text(value: Any) -> str:
    if value is None:
        return "?"
    return value if isinstance(value, str) else _json(value)


def _value(value: Any) -> str:
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    return _json(value)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except (orjson.JSONEncodeError, TypeError):
        return repr(value)


def _event_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:  # the envelope is always UTC; a zone-less stamp is read as such
        return parse_rfc3339(value, assume_utc=True).timestamp()
    except ValueError:
        return None
