"""The envelope (SPEC §2.1): key order, timestamp format, bad values survived, truncation."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swimmy.telemetry.envelope import Encoder, TimestampFormatter, normalize_severity, sanitize

ENVELOPE_KEYS = ["schema_version", "timestamp", "log_type", "event_type", "service", "severity",
                 "correlation_id", "data", "seq", "pid", "host", "run_id"]


def encode(data: Any = None, *, severity: Any = "info", cid: Any = "CID-1", max_bytes: int = 65536) -> dict[str, Any]:
    enc = Encoder(run_id="RUN", pid=42, host="h", max_event_bytes=max_bytes)
    line = enc.encode((7, 1_790_000_000.123, "telemetry", "test.event", "school", severity, cid, data))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed: dict[str, Any] = orjson.loads(line)
    return parsed


class TestShape:
    def test_keys_in_order_with_their_values(self) -> None:
        """The envelope's keys come first in SPEC order, then seq, pid, host, run_id."""
        obj = encode({"foo": 1})
        assert list(obj) == ENVELOPE_KEYS
        assert obj["schema_version"] == 1
        assert obj["timestamp"] == "2026-09-21T14:13:20.123Z"
        assert (obj["log_type"], obj["event_type"], obj["service"]) == ("telemetry", "test.event", "school")
        assert (obj["severity"], obj["correlation_id"], obj["data"]) == ("info", "CID-1", {"foo": 1})
        assert (obj["seq"], obj["pid"], obj["host"], obj["run_id"]) == (7, 42, "h", "RUN")

    @pytest.mark.parametrize(
        ("t", "expected"),
        [
            (0.0, "1970-01-01T00:00:00.000Z"),
            (1_790_000_000.999, "2026-09-21T14:13:20.999Z"),
            (1_790_000_001.0004, "2026-09-21T14:13:21.000Z"),
            (1_790_000_001.9996, "2026-09-21T14:13:22.000Z"),
        ],
    )
    def test_timestamp_is_rfc3339_utc_with_millis_and_z(self, t: float, expected: str) -> None:
        """Zone-less timestamps were a defect of the original: every one ends in Z."""
        assert TimestampFormatter()(t) == expected
        parsed = datetime.strptime(expected, "%Y-%m-%dT%H:%M:%S.%f%z")
        assert parsed.tzinfo == UTC

    @pytest.mark.parametrize(("given", "data"), [(None, {}), ([1, 2], {"value": [1, 2]}), ("x", {"value": "x"})])
    def test_data_is_always_an_object(self, given: Any, data: dict[str, Any]) -> None:
        """`data` is a JSON object, never null or an array (the original serialised plists as arrays)."""
        assert encode(given)["data"] == data

    def test_missing_correlation_id_is_unknown_and_others_are_strings(self) -> None:
        """correlation_id is "unknown" only when none exists; a uuid is written as its string."""
        assert encode(cid=None)["correlation_id"] == "unknown"
        u = uuid.uuid4()
        assert encode(cid=u)["correlation_id"] == str(u)


class TestBadInput:
    def test_unserializable_values_are_written_as_str(self) -> None:
        """A value JSON can't carry is written as its str(); the event is not lost."""
        obj = encode({"d": Decimal("1.5"), "o": object, "s": {1, 2} and frozenset([3]), "nan": math.nan})
        assert obj["data"]["d"] == "1.5"
        assert obj["data"]["o"] == str(object)
        assert obj["data"]["s"] == "frozenset({3})"
        assert obj["data"]["nan"] is None

    def test_non_string_keys_huge_ints_and_cycles_survive(self) -> None:
        """Non-str keys, ints beyond 64 bits and self-references still give one valid line."""
        cyclic: dict[str, Any] = {"a": 1}
        cyclic["self"] = cyclic
        obj = encode({1: "one", "big": 10**30, "cyclic": cyclic})
        assert obj["data"]["1"] == "one"
        assert obj["data"]["big"] == str(10**30)
        assert "<too deep>" in orjson.dumps(obj["data"]["cyclic"]).decode()

    @pytest.mark.parametrize(
        ("given", "written"),
        [("warn", "warning"), ("WARNING", "warning"), ("fatal", "critical"), ("loud", "warning"), (3, "warning")],
    )
    def test_bad_severity_is_normalised_and_the_original_kept(self, given: Any, written: str) -> None:
        """Severity is exactly one of five names; what the caller gave is kept in data.severity_given."""
        obj = encode({"k": 1}, severity=given)
        assert obj["severity"] == written
        assert obj["data"] == {"k": 1, "severity_given": given}

    def test_normalize_accepts_the_five_names(self) -> None:
        """The five names pass unchanged."""
        for name in ("debug", "info", "warning", "error", "critical"):
            assert normalize_severity(name) == (name, True)

    def test_oversize_event_has_its_data_replaced(self) -> None:
        """An event over max_event_bytes is written with data {truncated: true, bytes: N}."""
        obj = encode({"blob": "x" * 5000}, max_bytes=1024)
        assert obj["data"]["truncated"] is True
        assert obj["data"]["bytes"] > 5000
        assert obj["event_type"] == "test.event" and obj["seq"] == 7

    def test_sanitize_leaves_plain_json_alone(self) -> None:
        """sanitize is the identity on JSON-safe data."""
        value = {"a": [1, 2.5, "x", None, True], "b": {"c": -(2**63)}}
        assert sanitize(value) == value


class TestBatch:
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(
        st.floats(min_value=0, max_value=4e9),
        st.sampled_from(["info", "warning", "LOUD", 3]),
        st.one_of(st.none(), st.text(max_size=8), st.integers()),
        st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5)),
                  st.lists(st.integers(), max_size=3), st.just({"blob": "x" * 3000})),
    ), max_size=20))
    def test_encode_batch_writes_exactly_what_encode_writes(self, specs: list[tuple[Any, ...]]) -> None:
        """The inlined batch path and the per-record path give the same bytes for every kind of record."""
        records = [(i, t, "telemetry", "e.t", "core", sev, cid, data) for i, (t, sev, cid, data) in enumerate(specs)]
        one = Encoder(run_id="R", pid=1, host="h", max_event_bytes=2048)
        many = Encoder(run_id="R", pid=1, host="h", max_event_bytes=2048)
        assert many.encode_batch(records) == [one.encode(r) for r in records]
