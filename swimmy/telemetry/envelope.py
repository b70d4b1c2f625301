"""The JSONL envelope (SPEC §2.1): pure, no I/O.

`emit` only captures a tuple (a Record); the writer turns it into a line here,
so the caller pays for a tuple and an append, not for JSON. The timestamp is
captured at the call and only formatted here.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

SCHEMA_VERSION = 1
SEVERITIES = ("debug", "info", "warning", "error", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
# Spellings the original system used; mapped rather than rejected (SPEC §9: "severity spelled three ways").
SEVERITY_ALIASES = {"warn": "warning", "err": "error", "fatal": "critical", "crit": "critical", "information": "info"}
_MAX_DEPTH = 32


# One accepted event as `emit` captured it: (seq, time, log_type, event_type, service, severity,
# correlation_id, data). A plain tuple, not a NamedTuple: building one is a third of emit's cost.
Record = tuple[int, float, str, str, str, str, Any, Any]
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


class TimestampFormatter:
    """RFC 3339 UTC with milliseconds and `Z`; caches the formatted second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, t: float) -> str:
        # Round to the nearest millisecond on t * 1000: `t - int(t)` would expose the float's
        # representation error (x.123 becoming x.122999...) and truncate the wrong way.
        second, ms = divmod(int(t * 1000 + 0.5), 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._prefix + _MILLIS[ms]


def normalize_severity(value: Any) -> tuple[str, bool]:
    """(severity, was_valid). Known aliases map silently; anything else becomes `warning`."""
    if isinstance(value, str):
        low = value.lower()
        if low in SEVERITY_RANK:
            return low, low == value
        if low in SEVERITY_ALIASES:
            return SEVERITY_ALIASES[low], False
    return "warning", False


def sanitize(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy: str keys, str() for anything JSON can't carry, cycles and depth cut."""
    if depth > _MAX_DEPTH:
        return "<too deep>"
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, dict):
        return {str(k): sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v, depth + 1) for v in value]
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not cost the event
        return f"<unprintable {type(value).__name__}>"


class Encoder:
    """Turns Records into complete JSONL lines (bytes ending in newline)."""

    def __init__(self, *, run_id: str, pid: int, host: str, max_event_bytes: int) -> None:
        self.run_id = run_id
        self.pid = pid
        self.host = host
        self.max_event_bytes = max_event_bytes
        self.timestamp = TimestampFormatter()
        self.truncated = 0

    def encode(self, rec: Record) -> bytes:
        """One line; never raises for anything a caller could have put in the record."""
        seq, t, log_type, event_type, service, severity, cid, data = rec
        if severity not in SEVERITY_RANK:
            given = severity
            severity, _ = normalize_severity(given)
            data = {**self._as_dict(data), "severity_given": sanitize(given)}
        env = {
            "schema_version": SCHEMA_VERSION,
            "timestamp": self.timestamp(t),
            "log_type": log_type,
            "event_type": event_type if type(event_type) is str else str(event_type),
            "service": service if type(service) is str else str(service),
            "severity": severity,
            "correlation_id": cid if type(cid) is str else ("unknown" if cid is None else str(cid)),
            "data": data if type(data) is dict else self._as_dict(data),
            "seq": seq,
            "pid": self.pid,
            "host": self.host,
            "run_id": self.run_id,
        }
        try:
            line = orjson.dumps(env, default=str, option=orjson.OPT_APPEND_NEWLINE)
        except (orjson.JSONEncodeError, TypeError, ValueError):
            env["data"] = sanitize(env["data"])
            line = orjson.dumps(env, default=str, option=orjson.OPT_APPEND_NEWLINE)
        if len(line) > self.max_event_bytes:
            self.truncated += 1
            env["data"] = {"truncated": True, "bytes": len(line)}
            line = orjson.dumps(env, default=str, option=orjson.OPT_APPEND_NEWLINE)
        return line

    def encode_batch(self, records: list[Record]) -> list[bytes]:
        """Lines for many records: the common case inlined (locals, the timestamp cache), the rest via encode().

        This loop is the writer's hot path; it must produce exactly what encode() produces.
        """
        dumps = orjson.dumps
        option = orjson.OPT_APPEND_NEWLINE
        ranks = SEVERITY_RANK
        pid, host, run_id, limit = self.pid, self.host, self.run_id, self.max_event_bytes
        stamp = self.timestamp
        out: list[bytes] = []
        append = out.append
        for rec in records:
            seq, t, log_type, event_type, service, severity, cid, data = rec
            if (type(data) is not dict or severity not in ranks or type(event_type) is not str
                    or type(service) is not str or (cid is not None and type(cid) is not str)):
                append(self.encode(rec))
                continue
            second, ms = divmod(int(t * 1000 + 0.5), 1000)
            if second != stamp._second:
                stamp(t)
            env = {
                "schema_version": SCHEMA_VERSION,
                "timestamp": stamp._prefix + _MILLIS[ms],
                "log_type": log_type,
                "event_type": event_type,
                "service": service,
                "severity": severity,
                "correlation_id": "unknown" if cid is None else cid,
                "data": data,
                "seq": seq,
                "pid": pid,
                "host": host,
                "run_id": run_id,
            }
            try:
                line = dumps(env, default=str, option=option)
            except (orjson.JSONEncodeError, TypeError, ValueError):
                append(self.encode(rec))
                continue
            if len(line) > limit:
                append(self.encode(rec))
                continue
            append(line)
        return out

    @staticmethod
    def _as_dict(data: Any) -> dict[str, Any]:
        if data is None:
            return {}
        if isinstance(data, dict):
            return data
        return {"value": sanitize(data)}
