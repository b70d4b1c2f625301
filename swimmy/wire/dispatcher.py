"""The dispatcher (SPEC §3): one set of parsing and rejection rules for every socket it reads.

The peer PULL socket speaks `v: 1` (heartbeats); the work ROUTER speaks `v: 2`
(READY, BUSY, BACKTEST_RESULT) and hands its handlers the sender's identity.
Handlers register by message type; whatever does not parse (a v1 message on the
work socket is `bad_version`), has no handler, or is refused by its handler
becomes `message.rejected`, coalesced per reason to at most one event a second.
The dispatcher never dies of input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from swimmy.clock import Clock
from swimmy.telemetry.queue import Emit
from swimmy.wire.messages import (
    MULTIPART,
    PROTOCOL_VERSION,
    UNKNOWN_TYPE,
    WORK_VERSION,
    Message,
    Rejected,
    parse,
    parse_heartbeat,
)
from swimmy.wire.zmq import Reader

Handler = Callable[[Message], "Rejected | None"]
WorkHandler = Callable[[bytes, Message], "Rejected | None"]
HANDLER_ERROR = "handler_error"
BATCH = 1000  # messages taken from one socket per wake, so one busy socket can't starve the other
TICK_SEC = 1.0

log = structlog.get_logger(logger_name="swimmy.dispatcher")


@dataclass
class _Window:
    opened: float
    count: int = 0
    sample: Rejected | None = None


@dataclass(frozen=True)
class RejectionReport:
    """What one message.rejected event says: a reason, how many, and the latest example."""

    reason: str
    count: int
    sample: Rejected


@dataclass
class RejectionCoalescer:
    """Per reason, the first rejection is reported at once and the rest at most once per window."""

    window_sec: float = 1.0
    _last_report: dict[str, float] = field(default_factory=dict)
    _pending: dict[str, _Window] = field(default_factory=dict)

    def add(self, rejected: Rejected, now: float) -> RejectionReport | None:
        """Count a rejection; a report when this reason may be reported now."""
        last = self._last_report.get(rejected.reason)
        if last is None or now - last >= self.window_sec:
            pending = self._pending.pop(rejected.reason, None)
            count = 1 + (pending.count if pending else 0)
            self._last_report[rejected.reason] = now
            return RejectionReport(rejected.reason, count, rejected)
        window = self._pending.setdefault(rejected.reason, _Window(now))
        window.count += 1
        window.sample = rejected
        return None

    def flush(self, now: float) -> list[RejectionReport]:
        """Reports for reasons whose window has passed with rejections still unreported."""
        out = []
        for reason, window in list(self._pending.items()):
            if now - self._last_report.get(reason, 0.0) >= self.window_sec and window.sample is not None:
                out.append(RejectionReport(reason, window.count, window.sample))
                self._last_report[reason] = now
                del self._pending[reason]
        return out


class Dispatcher:
    """Routes received messages to handlers by type; counts and reports every rejection."""

    def __init__(self, emit: Emit, clock: Clock, *, max_message_bytes: int,
                 on_progress: Callable[[], None] | None = None) -> None:
        self._emit = emit
        self._clock = clock
        self.max_message_bytes = max_message_bytes
        self._on_progress = on_progress or (lambda: None)
        self._handlers: dict[str, Handler] = {}
        self._work_handlers: dict[str, WorkHandler] = {}
        self._work_readers: list[Reader] = []
        self._coalescer = RejectionCoalescer()
        self.received = 0
        self.handled = 0
        self.rejected: dict[str, int] = {}

    def register(self, message_type: str, handler: Handler) -> None:
        """Route messages of this type to `handler`, which returns a Rejected to refuse one."""
        self._handlers[message_type] = handler

    def register_work(self, message_type: str, handler: WorkHandler) -> None:
        """Route work-socket messages (`v: 2`) of this type to `handler(identity, message)`."""
        self._work_handlers[message_type] = handler

    def dispatch_work(self, frames: list[bytes]) -> bool:
        """Handle one message from the work ROUTER: [identity, payload] (`v: 2`)."""
        if len(frames) < 2:
            self.received += 1
            self._reject(Rejected(MULTIPART, sum(len(f) for f in frames), detail="no identity frame"))
            return False
        identity = frames[0]
        return self._dispatch(frames[1:], WORK_VERSION, self._work_handlers,
                              lambda handler, msg: handler(identity, msg))

    def dispatch(self, frames: list[bytes]) -> bool:
        """Handle one received message; True if a handler took it, False if it was rejected."""
        return self._dispatch(frames, PROTOCOL_VERSION, self._handlers, lambda handler, msg: handler(msg))

    def _dispatch(self, frames: list[bytes], version: int, handlers: Mapping[str, Any],
                  call: Callable[[Any, Message], Rejected | None]) -> bool:
        """The one set of rules for every socket: parse, route by type, count and report every rejection."""
        self.received += 1
        parsed = parse(frames, self.max_message_bytes, version=version)
        if isinstance(parsed, Rejected):
            self._reject(parsed)
            return False
        handler = handlers.get(parsed.type)
        if handler is None:
            self._reject(Rejected(UNKNOWN_TYPE, parsed.size, parsed.type, _id_of(parsed.body)))
            return False
        try:
            result = call(handler, parsed)
        except Exception as exc:
            log.error("message handler failed", type=parsed.type, exc_info=exc)
            result = Rejected(HANDLER_ERROR, parsed.size, parsed.type, _id_of(parsed.body), repr(exc)[:200])
        if result is not None:
            self._reject(result)
            return False
        self.handled += 1
        return True

    def _reject(self, rejected: Rejected) -> None:
        self.rejected[rejected.reason] = self.rejected.get(rejected.reason, 0) + 1
        report = self._coalescer.add(rejected, self._clock.monotonic())
        if report is not None:
            self._report(report)

    def flush_rejections(self) -> None:
        """Report rejections held back by the once-a-second rule."""
        for report in self._coalescer.flush(self._clock.monotonic()):
            self._report(report)

    def _report(self, report: RejectionReport) -> None:
        sample = report.sample
        data: dict[str, Any] = {"reason": report.reason, "bytes": sample.size, "count": report.count}
        if sample.type is not None:
            data["type"] = sample.type
        if sample.detail:
            data["detail"] = sample.detail
        self._emit("message.rejected", service="dispatcher", severity="warning",
                   correlation_id=sample.id or "unknown", data=data)

    def work_reader(self, sock: Any) -> Reader:
        """The reader of the work ROUTER; the daemon sends through it too (one owner of the socket)."""
        reader = Reader(sock, self.dispatch_work, batch=BATCH)
        self._work_readers.append(reader)
        return reader

    async def run(self, sockets: list[Any]) -> None:
        """Dispatch from every socket as messages arrive; tick once a second (progress, coalesced reports)."""
        readers = [Reader(sock, self.dispatch, batch=BATCH) for sock in sockets] + self._work_readers
        for reader in readers:
            reader.start()
        try:
            while True:
                self._on_progress()
                self.flush_rejections()
                await self._clock.sleep(TICK_SEC)
        finally:
            for reader in readers:
                reader.stop()


def heartbeat_handler(emit: Emit, heard: Callable[[str], None], rtt_ms: Callable[[str], float | None]) -> Handler:
    """HEARTBEAT from a peer: liveness, `heartbeat.recv`, and the round trip when it acks one of ours."""

    def handle(msg: Message) -> Rejected | None:
        hb = parse_heartbeat(msg)
        if isinstance(hb, Rejected):
            return hb
        heard(hb.source)
        data: dict[str, Any] = {"heartbeat_id": hb.id, "status": hb.status, "source": hb.source}
        if hb.ack_of is not None:
            data["ack_of"] = hb.ack_of
            rtt = rtt_ms(hb.ack_of)
            if rtt is not None:
                data["rtt_ms"] = rtt
        if hb.seq is not None:
            data["seq"] = hb.seq
        emit("heartbeat.recv", service="dispatcher", correlation_id=hb.ack_of or hb.id or "unknown", data=data)
        return None

    return handle


def _id_of(body: dict[str, Any]) -> str | None:
    value = body.get("id") or body.get("request_id")
    return value if isinstance(value, str) and len(value) <= 256 else None
