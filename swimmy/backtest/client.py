"""The daemon's backtest client (SPEC §4): the in-flight map, timeouts, one resend, results by request_id.

Results are routed by `request_id`, never by name. A request unanswered after
`backtest.timeout_sec` is re-sent once under the same request_id; after the
second timeout it is `backtest.timeout` and its owner hears `timeout`. A result
answered after its timeout still goes to its owner (marked `late`), who decides what it is
worth; only a duplicate (the second answer to a resent request) is ignored.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swimmy.clock import Clock
from swimmy.telemetry.queue import Emit
from swimmy.wire.messages import (
    BacktestResultMsg,
    Message,
    Rejected,
    backtest_body,
    encode,
    parse_backtest_result,
)

TICK_SEC = 1.0
MAX_INFLIGHT = 10_000  # a bound on the map; past it, submit refuses (the caller's error path)


@dataclass(frozen=True)
class Outcome:
    """How a request ended: ok / error (the worker's answer) or timeout (no answer after the resend)."""

    request_id: str
    purpose: str
    strategy: str
    status: str
    metrics: dict[str, float | int | None] | None = None
    error: str | None = None
    result: BacktestResultMsg | None = None
    attempts: int = 1


@dataclass
class _Pending:
    frames: list[bytes]
    purpose: str
    strategy: str
    sent_at: float
    on_done: Callable[[Outcome], None] | None
    attempts: int = 1
    context: dict[str, Any] = field(default_factory=dict)


class BacktestClient:
    """Sends BACKTEST requests through a non-blocking PUSH and matches their results."""

    def __init__(self, send: Callable[[list[bytes]], bool], emit: Emit, clock: Clock, *, timeout_sec: float,
                 on_progress: Callable[[], None] | None = None) -> None:
        self._send = send
        self._emit = emit
        self._clock = clock
        self.timeout_sec = timeout_sec
        self._on_progress = on_progress or (lambda: None)
        self._inflight: dict[str, _Pending] = {}
        # Requests that timed out, so a late answer still reaches its owner (who judges it: the OOS
        # requester takes the latest request's result and calls anything older stale). Bounded.
        self._timed_out: OrderedDict[str, _Pending] = OrderedDict()
        self.sent = 0
        self.refused = 0
        self.completed = 0
        self.timeouts = 0
        self.resends = 0
        self.ignored = 0

    @property
    def inflight(self) -> int:
        """Requests sent and not yet answered or timed out."""
        return len(self._inflight)

    def submit(self, purpose: str, strategy: dict[str, Any], *, start_ts: int | None, end_ts: int | None,
               include_trades: bool = False, on_done: Callable[[Outcome], None] | None = None,
               request_id: str | None = None, debug: dict[str, Any] | None = None) -> str | None:
        """Send a request without blocking; its request_id, or None when refused (no worker, queue full)."""
        request_id = request_id or str(uuid.uuid4())
        body = backtest_body(request_id=request_id, purpose=purpose, strategy=strategy, start_ts=start_ts,
                             end_ts=end_ts, include_trades=include_trades)
        if debug:
            body["debug"] = debug
        frames = [encode(body)]
        if len(self._inflight) >= MAX_INFLIGHT or not self._try_send(frames):
            self.refused += 1
            return None
        self.sent += 1
        self._inflight[request_id] = _Pending(frames, purpose, str(strategy.get("name", "")),
                                              self._clock.monotonic(), on_done)
        return request_id

    def is_inflight(self, request_id: str) -> bool:
        """Whether this request is still waiting for its answer."""
        return request_id in self._inflight

    def adopt(self, request_id: str, purpose: str, strategy: str, on_done: Callable[[Outcome], None]) -> None:
        """Track a request sent by an earlier run (found in the store at start-up), so its result is accepted.

        Its frames are not known, so it is not re-sent: it counts as already on its second attempt and
        times out after one `timeout_sec` if no answer comes.
        """
        self._inflight[request_id] = _Pending([], purpose, strategy, self._clock.monotonic(), on_done, attempts=2)

    def _try_send(self, frames: list[bytes]) -> bool:
        try:
            return self._send(frames)
        except Exception:  # noqa: BLE001 - a socket error is a refusal, reported by the caller's error path
            return False

    def handle_result(self, msg: Message) -> Rejected | None:
        """Dispatcher handler for BACKTEST_RESULT."""
        result = parse_backtest_result(msg)
        if isinstance(result, Rejected):
            return result
        pending = self._inflight.pop(result.request_id, None)
        late = False
        if pending is None:
            pending = self._timed_out.pop(result.request_id, None)
            late = pending is not None
        if pending is None:
            self.ignored += 1  # a duplicate: the resend was answered too
            self._emit("backtest.result_ignored", service="school", severity="debug", correlation_id=result.request_id,
                       data={"request_id": result.request_id, "status": result.status, "worker": result.worker,
                             "reason": "already answered: the duplicate of a resend"})
            return None
        self.completed += 1
        sharpe = result.metrics.get("sharpe") if result.metrics else None
        trades = result.metrics.get("trades") if result.metrics else None
        # Routed by request_id: the strategy is the one this request was sent for, whatever the worker says.
        data: dict[str, Any] = {
            "request_id": result.request_id, "strategy": pending.strategy,
            "purpose": pending.purpose, "status": result.status, "sharpe": sharpe, "trades": trades,
            "elapsed_ms": result.elapsed_ms, "worker": result.worker, "attempts": pending.attempts,
        }
        if late:
            data["late"] = True  # after backtest.timeout
        if result.error is not None:
            data["error"] = result.error
        self._emit("backtest.completed", service="school", severity="info" if result.status == "ok" else "error",
                   correlation_id=result.request_id, data=data)
        self._finish(pending, Outcome(result.request_id, pending.purpose, data["strategy"], result.status,
                                      result.metrics, result.error, result, pending.attempts))
        return None

    def check_timeouts(self) -> None:
        """Resend a request once after its first timeout; give up after the second."""
        now = self._clock.monotonic()
        for request_id, pending in list(self._inflight.items()):
            if now - pending.sent_at < self.timeout_sec:
                continue
            if pending.attempts == 1:
                pending.attempts = 2
                pending.sent_at = now
                self.resends += 1
                self._try_send(pending.frames)  # refused now: it times out again and ends below
                continue
            del self._inflight[request_id]
            self._timed_out[request_id] = pending
            while len(self._timed_out) > MAX_INFLIGHT:
                self._timed_out.popitem(last=False)
            self.timeouts += 1
            self._emit("backtest.timeout", service="school", severity="warning", correlation_id=request_id,
                       data={"request_id": request_id, "strategy": pending.strategy, "purpose": pending.purpose,
                             "attempts": pending.attempts, "timeout_sec": self.timeout_sec})
            self._finish(pending, Outcome(request_id, pending.purpose, pending.strategy, "timeout",
                                          error=f"no answer after {pending.attempts} attempts",
                                          attempts=pending.attempts))

    def _finish(self, pending: _Pending, outcome: Outcome) -> None:
        if pending.on_done is not None:
            pending.on_done(outcome)

    async def run(self) -> None:
        """Check timeouts once a second."""
        while True:
            self._on_progress()
            self.check_timeouts()
            await self._clock.sleep(TICK_SEC)
