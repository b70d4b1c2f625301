"""Wire parsing: every bad input has a reason; nothing raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from swimmy.config import ZmqConfig
from swimmy.wire.messages import Heartbeat, Message, Rejected, parse, parse_heartbeat
from swimmy.wire.security import is_loopback, plan_security


class TestParse:
    @pytest.mark.parametrize(
        ("frames", "reason"),
        [
            ([b"x" * 2000], "oversize"),
            ([b"{}", b"{}"], "multipart"),
            ([b"{not json"], "malformed_json"),
            ([b"[1,2]"], "not_an_object"),
            ([b'"text"'], "not_an_object"),
            ([b'{"type":"HEARTBEAT"}'], "bad_version"),
            ([b'{"v":2,"type":"HEARTBEAT"}'], "bad_version"),
            ([b'{"v":true,"type":"HEARTBEAT"}'], "bad_version"),
            ([b'{"v":1}'], "missing_type"),
            ([b'{"v":1,"type":7}'], "missing_type"),
        ],
    )
    def test_generic_rejections(self, frames: list[bytes], reason: str) -> None:
        """Size, framing, JSON, object, version and type are checked for every socket alike."""
        result = parse(frames, 1024)
        assert isinstance(result, Rejected)
        assert result.reason == reason

    def test_a_good_message(self) -> None:
        """A v1 object with a type passes with its body."""
        assert parse([b'{"v":1,"type":"X","id":"a"}'], 1024) == Message("X", {"v": 1, "type": "X", "id": "a"}, 27)


class TestHeartbeat:
    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            ({"status": "OK"}, "missing_field"),
            ({"source": "w"}, "missing_field"),
            ({"source": "", "status": "OK"}, "bad_field"),
            ({"source": 3, "status": "OK"}, "bad_field"),
            ({"source": "w", "status": "OK", "ack_of": 5}, "bad_field"),
            ({"source": "w", "status": "OK", "seq": "1"}, "bad_field"),
            ({"source": "w" * 300, "status": "OK"}, "bad_field"),
        ],
    )
    def test_bad_heartbeats(self, body: dict[str, object], reason: str) -> None:
        """A peer HEARTBEAT needs a source and a status; optional fields have their types."""
        result = parse_heartbeat(Message("HEARTBEAT", {"v": 1, "type": "HEARTBEAT", **body}, 10))
        assert isinstance(result, Rejected) and result.reason == reason

    def test_an_ack(self) -> None:
        """source, status, id, ack_of and seq are read."""
        body = {"v": 1, "type": "HEARTBEAT", "source": "w", "status": "OK", "id": "i", "ack_of": "a", "seq": 4}
        assert parse_heartbeat(Message("HEARTBEAT", body, 10)) == Heartbeat("w", "OK", "i", "a", 4)


class TestSecurity:
    @pytest.mark.parametrize(
        ("endpoint", "loopback"),
        [
            ("tcp://127.0.0.1:5556", True),
            ("tcp://127.9.0.1:5556", True),
            ("tcp://localhost:5556", True),
            ("tcp://[::1]:5556", True),
            ("ipc:///run/swimmy/ctl", True),
            ("inproc://x", True),
            ("tcp://*:5556", False),
            ("tcp://0.0.0.0:5556", False),
            ("tcp://10.1.2.3:5556", False),
            ("tcp://eth0:5556", False),
        ],
    )
    def test_loopback(self, endpoint: str, loopback: bool) -> None:
        """Loopback is 127/8, ::1, localhost, ipc and inproc; anything else is reachable."""
        assert is_loopback(endpoint) is loopback

    @pytest.mark.parametrize(
        ("overrides", "curve", "problem"),
        [
            ({}, set(), None),
            ({"pub_endpoint": "tcp://*:1"}, set(), "zmq.pub_endpoint: tcp://*:1 needs CurveZMQ"),
            ({"pub_endpoint": "tcp://*:1", "allow_insecure": True}, set(), None),
            ({"pub_endpoint": "tcp://*:1", "curve": "off"}, set(), "reachable from other hosts without CurveZMQ"),
            ({"curve": "always"}, set(), "needs CurveZMQ (zmq.curve = 'always')"),
            ({"curve": "always", "curve_secret_key_file": Path("s"), "curve_public_key_file": Path("p")},
             {"tcp://127.0.0.1:5556", "tcp://127.0.0.1:5590"}, None),
        ],
    )
    def test_plan(self, overrides: dict[str, object], curve: set[str], problem: str | None) -> None:
        """A reachable endpoint without keys is refused unless allow_insecure; 'always' secures everything."""
        plan = plan_security(ZmqConfig(**overrides), "tcp://127.0.0.1:5590")  # type: ignore[arg-type]
        if problem is None:
            assert plan.problems == ()
        else:
            assert any(problem in p for p in plan.problems), plan.problems
        assert curve <= plan.curve_endpoints
