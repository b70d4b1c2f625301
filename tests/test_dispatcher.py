"""The dispatcher never dies of input; every message is handled or counted as rejected."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swimmy.testing import CapturingEmitter, FakeClock
from swimmy.wire.dispatcher import Dispatcher, RejectionCoalescer, heartbeat_handler
from swimmy.wire.messages import Message, Rejected

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
messages = st.fixed_dictionaries(
    {}, optional={"v": st.sampled_from([1, 2, "1", True, None]), "type": st.sampled_from(["HEARTBEAT", "X", 3, ""]),
                  "source": json_values, "status": json_values, "id": json_values, "ack_of": json_values,
                  "seq": json_values},
)


def make(max_bytes: int = 4096) -> tuple[Dispatcher, CapturingEmitter, list[Message]]:
    emit = CapturingEmitter()
    d = Dispatcher(emit, FakeClock(), max_message_bytes=max_bytes)
    handled: list[Message] = []

    def record(msg: Message) -> None:
        handled.append(msg)

    d.register("X", record)
    d.register("HEARTBEAT", heartbeat_handler(emit, lambda s: None, lambda a: None))
    return d, emit, handled


class TestFuzz:
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=64), min_size=1, max_size=3))
    def test_random_bytes_never_kill_it(self, frames: list[bytes]) -> None:
        """Random frames: no exception, and handled + rejected == received."""
        d, _, _ = make()
        d.dispatch(frames)
        assert d.handled + sum(d.rejected.values()) == d.received == 1

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(json_values, messages))
    def test_random_json_is_handled_or_rejected(self, value: Any) -> None:
        """Random JSON (and near-valid messages): handled or counted as rejected, never raised."""
        d, emit, _ = make()
        ok = d.dispatch([json.dumps(value).encode()])  # stdlib: it writes ints beyond 64 bits too
        assert d.handled + sum(d.rejected.values()) == 1
        assert ok is (d.handled == 1)
        if not ok:
            assert emit.of_type("message.rejected")

    def test_a_handler_that_raises_is_a_rejection_not_a_crash(self) -> None:
        """A handler bug is counted as handler_error; the dispatcher goes on."""
        d, _, _ = make()

        def boom(msg: Message) -> None:
            raise ZeroDivisionError

        d.register("BOOM", boom)
        assert d.dispatch([b'{"v":1,"type":"BOOM"}']) is False
        assert d.rejected == {"handler_error": 1}
        assert d.dispatch([b'{"v":1,"type":"X"}']) is True


class TestOversize:
    def test_oversize_never_reaches_the_handler(self) -> None:
        """A message over max_message_bytes is rejected as oversize before parsing."""
        d, emit, handled = make(max_bytes=1024)
        body = orjson.dumps({"v": 1, "type": "X", "pad": "x" * 2000})
        assert d.dispatch([body]) is False
        assert handled == []
        (event,) = emit.of_type("message.rejected")
        assert event.data["reason"] == "oversize" and event.data["bytes"] == len(body)
        assert d.dispatch([b'{"v":1,"type":"X"}']) is True


class TestCoalescing:
    def test_at_most_one_event_a_second_per_reason(self) -> None:
        """1,000 bad messages in a second give one event at once and one with the rest a second later."""
        clock = FakeClock()
        emit = CapturingEmitter()
        d = Dispatcher(emit, clock, max_message_bytes=1024)
        for _ in range(1000):
            d.dispatch([b"garbage"])
        d.dispatch([b"[]"])
        assert [(e.data["reason"], e.data["count"]) for e in emit.of_type("message.rejected")] == [
            ("malformed_json", 1), ("not_an_object", 1)]
        clock.advance(1.0)
        d.flush_rejections()
        last = emit.of_type("message.rejected")[-1].data
        assert (last["reason"], last["bytes"], last["count"]) == ("malformed_json", 7, 999)
        clock.advance(5.0)
        d.flush_rejections()
        assert len(emit.of_type("message.rejected")) == 3

    @pytest.mark.parametrize(("times", "reports"), [([0.0], 1), ([0.0, 0.5], 1), ([0.0, 1.0], 2), ([0.0, 0.2, 1.5], 2)])
    def test_coalescer_rule(self, times: list[float], reports: int) -> None:
        """The first rejection reports at once; later ones wait for the window."""
        c = RejectionCoalescer()
        out = [c.add(Rejected("r", 1), t) for t in times]
        assert sum(r is not None for r in out) == reports


class TestHeartbeatHandler:
    def test_recv_carries_ack_of_as_correlation_and_rtt(self) -> None:
        """heartbeat.recv's correlation id is the acked id (it matches our heartbeat.sent) with rtt_ms."""
        emit = CapturingEmitter()
        heard: list[str] = []
        handler = heartbeat_handler(emit, heard.append, lambda ack: 1.5 if ack == "OURS" else None)
        msg = Message("HEARTBEAT", {"v": 1, "type": "HEARTBEAT", "source": "w1", "status": "OK", "id": "THEIRS",
                                    "ack_of": "OURS"}, 10)
        assert handler(msg) is None
        (event,) = emit.of_type("heartbeat.recv")
        assert event.correlation_id == "OURS"
        assert event.data["rtt_ms"] == 1.5 and event.data["heartbeat_id"] == "THEIRS"
        assert heard == ["w1"]

    def test_recv_without_ack_uses_its_own_id(self) -> None:
        """A plain peer heartbeat is correlated by its own id."""
        emit = CapturingEmitter()
        handler = heartbeat_handler(emit, lambda s: None, lambda a: None)
        handler(Message("HEARTBEAT", {"v": 1, "type": "HEARTBEAT", "source": "w1", "status": "OK", "id": "I"}, 1))
        assert emit.of_type("heartbeat.recv")[0].correlation_id == "I"
        assert "rtt_ms" not in emit.of_type("heartbeat.recv")[0].data


class TestWorkSocket:
    def test_the_work_socket_speaks_v2_and_hands_the_sender_identity(self) -> None:
        """[identity, payload]: a v2 message reaches its handler with the identity; v1 is bad_version."""
        d, emit, _ = make()
        seen: list[tuple[bytes, str]] = []
        d.register_work("READY", lambda identity, msg: seen.append((identity, msg.type)))  # type: ignore[func-returns-value]
        assert d.dispatch_work([b"id-1", orjson.dumps({"v": 2, "type": "READY"})])
        assert seen == [(b"id-1", "READY")]
        assert not d.dispatch_work([b"id-1", orjson.dumps({"v": 1, "type": "READY"})])
        assert not d.dispatch_work([b"lonely"])  # no identity frame
        assert not d.dispatch_work([b"id-1", orjson.dumps({"v": 2, "type": "HEARTBEAT"})])  # not a work message
        assert d.rejected == {"bad_version": 1, "multipart": 1, "unknown_type": 1}
        assert {e.data["reason"] for e in emit.of_type("message.rejected")} == {"bad_version", "multipart",
                                                                                 "unknown_type"}

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(max_size=64), max_size=4))
    def test_junk_on_the_work_socket_never_escapes(self, frames: list[bytes]) -> None:
        d, _, _ = make()
        d.register_work("READY", lambda identity, msg: None)
        d.dispatch_work(frames)
        assert d.received == 1 and d.handled + sum(d.rejected.values()) == 1
