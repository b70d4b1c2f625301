"""The heartbeat publisher (SPEC §3): a PUB HEARTBEAT once at least `interval_sec` has passed."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable

from swimmy.clock import Clock
from swimmy.config import Config
from swimmy.telemetry.envelope import TimestampFormatter
from swimmy.telemetry.queue import Emit
from swimmy.wire.messages import encode, heartbeat_body

TOPIC = b"HEARTBEAT"
SOURCE = "school"
REMEMBERED = 256  # our recent heartbeat ids, to measure the round trip of acks
TICK_SEC = 1.0


def heartbeat_due(last_sent_mono: float | None, now_mono: float, interval_sec: float) -> bool:
    """A send happens once at least the interval has passed since the last one."""
    return last_sent_mono is None or now_mono - last_sent_mono >= interval_sec


class HeartbeatPublisher:
    """Sends our HEARTBEAT through `send` (a non-blocking PUB send) and remembers ids for RTT."""

    def __init__(
        self,
        send: Callable[[list[bytes]], bool],
        emit: Emit,
        clock: Clock,
        *,
        interval_sec: float,
        version: str,
        config_hash: str,
        status: Callable[[], str],
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._emit = emit
        self._clock = clock
        self.interval_sec = interval_sec
        self._version = version
        self.config_hash = config_hash  # follows SIGHUP reloads
        self._status = status
        self._on_progress = on_progress or (lambda: None)
        self._stamp = TimestampFormatter()
        self.last_sent_mono: float | None = None
        self.seq = 0
        self.sent = 0
        self.send_failures = 0
        self.last_rtt_ms: float | None = None
        self._recent: OrderedDict[str, float] = OrderedDict()

    def update_config(self, cfg: Config) -> None:
        """A reload: the config hash heartbeats carry, and their interval."""
        self.config_hash = cfg.config_hash
        self.interval_sec = cfg.heartbeat.interval_sec

    def maybe_send(self) -> str | None:
        """Send if due; return the heartbeat id sent."""
        if not heartbeat_due(self.last_sent_mono, self._clock.monotonic(), self.interval_sec):
            return None
        return self.send_now()

    def send_now(self) -> str | None:
        """Send one heartbeat now, whatever the interval; None when the socket refused it."""
        now = self._clock.monotonic()
        hb_id = str(uuid.uuid4())
        status = self._status()
        body = heartbeat_body(
            hb_id=hb_id,
            seq=self.seq + 1,
            source=SOURCE,
            status=status,
            sent_at=self._stamp(self._clock.time()),
            version=self._version,
            config_hash=self.config_hash,
        )
        self.last_sent_mono = now  # a refused send is retried at the next interval, not in a tight loop
        try:
            ok = self._send([TOPIC, encode(body)])
        except Exception as exc:  # noqa: BLE001 - a socket error must not end the publisher
            ok = False
            error = repr(exc)
        else:
            error = "send queue full"
        if not ok:
            self.send_failures += 1
            self._emit("heartbeat.send_failed", service="executor", severity="warning", correlation_id=hb_id,
                       data={"heartbeat_id": hb_id, "error": error})
            return None
        self.seq += 1
        self.sent += 1
        self._recent[hb_id] = now
        if len(self._recent) > REMEMBERED:
            self._recent.popitem(last=False)
        self._emit("heartbeat.sent", service="executor", correlation_id=hb_id,
                   data={"heartbeat_id": hb_id, "seq": self.seq, "status": status, "source": SOURCE})
        return hb_id

    def rtt_ms(self, ack_of: str) -> float | None:
        """Round trip of one of our heartbeats, if `ack_of` names a recent one."""
        sent_at = self._recent.get(ack_of)
        if sent_at is None:
            return None
        self.last_rtt_ms = round((self._clock.monotonic() - sent_at) * 1000, 3)
        return self.last_rtt_ms

    async def run(self) -> None:
        """Send when due; wake at least once a second."""
        while True:
            self._on_progress()
            self.maybe_send()
            assert self.last_sent_mono is not None
            wait = self.last_sent_mono + self.interval_sec - self._clock.monotonic()
            await self._clock.sleep(min(max(wait, 0.0), TICK_SEC))
