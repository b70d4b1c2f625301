"""The heartbeat publisher with an injected clock (seed Task 5 and the original's throttle test)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from swimmy.peers.heartbeat import HeartbeatPublisher, heartbeat_due
from swimmy.testing import CapturingEmitter, FakeClock, RecordingPub


def make(clock: FakeClock, send: RecordingPub, emit: CapturingEmitter, status: str = "OK") -> HeartbeatPublisher:
    return HeartbeatPublisher(send, emit, clock, interval_sec=10, version="9.9", config_hash="abc",
                              status=lambda: status)


class TestThrottle:
    def test_send_with_last_send_at_zero_emits_heartbeat_sent(self) -> None:
        """Seed Task 5: last send at 0 -> a heartbeat goes out and heartbeat.sent is emitted."""
        clock, send, emit = FakeClock(monotonic_start=1000.0), RecordingPub(), CapturingEmitter()
        pub = make(clock, send, emit)
        pub.last_sent_mono = 0.0
        hb_id = pub.maybe_send()
        (event,) = emit.of_type("heartbeat.sent")
        assert event.correlation_id == hb_id
        assert event.service == "executor"
        assert event.data == {"heartbeat_id": hb_id, "seq": 1, "status": "OK", "source": "school"}

    @pytest.mark.parametrize(("after_sec", "sends"), [(9.0, False), (9.999, False), (10.0, True), (11.0, True)])
    def test_a_send_happens_once_at_least_the_interval_has_passed(self, after_sec: float, sends: bool) -> None:
        """The original's throttle: 11 s after the last send a new one goes out, 9 s after it does not."""
        clock, send, emit = FakeClock(), RecordingPub(), CapturingEmitter()
        pub = make(clock, send, emit)
        assert pub.maybe_send() is not None
        clock.advance(after_sec)
        assert (pub.maybe_send() is not None) is sends
        assert len(emit.of_type("heartbeat.sent")) == (2 if sends else 1)

    @pytest.mark.parametrize(("last", "now", "due"), [(None, 0.0, True), (100.0, 109.0, False), (100.0, 110.0, True)])
    def test_due_rule(self, last: float | None, now: float, due: bool) -> None:
        """heartbeat_due is the pure rule."""
        assert heartbeat_due(last, now, 10.0) is due


class TestMessage:
    def test_two_frames_with_every_field(self) -> None:
        """[b"HEARTBEAT", json] with v, type, id, seq, source, status, sent_at, version, config_hash."""
        clock, send, emit = FakeClock(start=1_790_000_000.5), RecordingPub(), CapturingEmitter()
        pub = make(clock, send, emit, status="DEGRADED")
        hb_id = pub.send_now()
        ((topic, payload),) = send.frames
        assert topic == b"HEARTBEAT"
        body = orjson.loads(payload)
        assert body == {"v": 1, "type": "HEARTBEAT", "id": hb_id, "seq": 1, "source": "school",
                        "status": "DEGRADED", "sent_at": "2026-09-21T14:13:20.500Z", "version": "9.9",
                        "config_hash": "abc"}

    def test_seq_counts_sent_heartbeats_and_a_refused_send_is_reported(self) -> None:
        """A refused send takes no seq and says so; the next one goes out at the next interval."""
        clock, emit = FakeClock(), CapturingEmitter()
        send = RecordingPub(accept=False)
        pub = make(clock, send, emit)
        assert pub.maybe_send() is None
        assert [e.event_type for e in emit.events] == ["heartbeat.send_failed"]
        send.accept = True
        assert pub.maybe_send() is None  # not due yet: no tight retry loop
        clock.advance(10)
        pub.maybe_send()
        assert orjson.loads(send.frames[0][1])["seq"] == 1

    def test_rtt_of_an_ack(self) -> None:
        """An ack of one of ours gives the round trip in ms; an unknown id gives None."""
        clock, emit = FakeClock(), CapturingEmitter()
        pub = make(clock, RecordingPub(), emit)
        hb_id = pub.send_now()
        assert hb_id is not None
        clock.advance(0.0125)
        assert pub.rtt_ms(hb_id) == pytest.approx(12.5)
        assert pub.rtt_ms("not-ours") is None


class TestRun:
    async def test_run_sends_on_schedule_with_a_fake_clock(self) -> None:
        """The task sends at start and then every interval as the clock advances."""
        clock, send, emit = FakeClock(), RecordingPub(), CapturingEmitter()
        pub = make(clock, send, emit)
        task = asyncio.create_task(pub.run())
        try:
            await asyncio.sleep(0)
            assert len(send.frames) == 1
            for _ in range(25):
                clock.advance(1.0)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            assert len(send.frames) == 3
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
