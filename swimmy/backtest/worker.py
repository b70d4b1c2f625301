"""`swimmy worker`: PULL backtest requests, PUSH results, answer the daemon's heartbeats as a peer.

One request at a time (the PULL's receive high-water mark is 1: no hoarding);
the backtest runs in a thread so heartbeat acks keep flowing meanwhile. Every
request gets an answer: a request it cannot serve is an `error` result with the
reason, never silence and never a crash. Workers log to stderr only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
import uuid
from typing import Any

import orjson
import structlog

from swimmy.backtest.data import load_bars
from swimmy.backtest.engine import Costs, run_backtest
from swimmy.backtest.strategies import StrategySpec
from swimmy.config import Config
from swimmy.errors import BacktestError, DataError
from swimmy.wire.messages import (
    BacktestRequest,
    Rejected,
    ack_body,
    encode,
    parse,
    parse_backtest_request,
    request_problem,
    result_body,
)
from swimmy.wire.security import uses_curve
from swimmy.wire.zmq import PULL, PUSH, SUB, Wire, load_curve_keys, subscribe, try_send

STOP_GRACE_SEC = 5.0
PR_SET_PDEATHSIG = 1
log = structlog.get_logger(logger_name="swimmy.worker")


def default_worker_id() -> str:
    """`<host>-<pid>` (SPEC §10)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def serve_request(req: BacktestRequest, cfg: Config, worker: str, delay_sec: float = 0.0) -> dict[str, Any]:
    """Run one backtest and build its BACKTEST_RESULT body; every failure becomes an error result."""
    started = time.perf_counter()
    name = ""
    if delay_sec > 0:
        time.sleep(delay_sec)  # [debug] only: a slow backtest, for the tests of timeouts and killed workers
    try:
        spec = StrategySpec.from_wire(req.strategy)
        name = spec.name()
        if isinstance(req.strategy, dict) and isinstance(req.strategy.get("name"), str):
            name = req.strategy["name"]
        bars = load_bars(cfg.school.data_dir, spec.symbol, spec.timeframe)
        costs = Costs(cfg.backtest.spread_pips, cfg.backtest.slippage_pips)
        result = run_backtest(spec, bars, start_ts=req.start_ts, end_ts=req.end_ts, costs=costs,
                              include_trades=req.include_trades)
    except (BacktestError, DataError) as exc:
        return result_body(request_id=req.request_id, strategy_name=name, status="error", error=str(exc),
                           elapsed_ms=_ms(started), worker=worker)
    except Exception as exc:
        log.error("backtest failed", request_id=req.request_id, exc_info=exc)
        return result_body(request_id=req.request_id, strategy_name=name, status="error",
                           error=f"internal error in the worker: {exc!r}", elapsed_ms=_ms(started), worker=worker)
    trades = None
    if req.include_trades:
        trades = [
            {"entry_ts": t.entry_ts, "exit_ts": t.exit_ts, "side": t.side, "entry_price": t.entry_price,
             "exit_price": t.exit_price, "pnl_pips": t.pnl_pips, "exit_reason": t.exit_reason}
            for t in result.trades
        ]
    return result_body(request_id=req.request_id, strategy_name=name, status="ok", metrics=result.metrics,
                       bars=result.bars, start_ts=result.start_ts, end_ts=result.end_ts, elapsed_ms=_ms(started),
                       worker=worker, trades=trades)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class Worker:
    """The worker process's sockets and loops."""

    def __init__(self, cfg: Config, worker_id: str) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        self.source = f"worker-{worker_id}"
        z = cfg.zmq
        needs_curve = any(uses_curve(z, e) for e in (z.backtest_endpoint, z.result_endpoint, z.pub_endpoint,
                                                     z.pull_endpoint))
        self.wire = Wire(z, load_curve_keys(z) if needs_curve else None)
        self.requests = self.wire.connect(PULL, z.backtest_endpoint, curve=uses_curve(z, z.backtest_endpoint),
                                          rcvhwm=1)
        self.results = self.wire.connect(PUSH, z.result_endpoint, curve=uses_curve(z, z.result_endpoint))
        self.heartbeats = self.wire.connect(SUB, z.pub_endpoint, curve=uses_curve(z, z.pub_endpoint))
        subscribe(self.heartbeats, b"HEARTBEAT")
        self.acks = self.wire.connect(PUSH, z.pull_endpoint, curve=uses_curve(z, z.pull_endpoint))
        self.served = 0
        self._idle = asyncio.Event()

    async def serve_forever(self) -> None:
        """Take requests one at a time until cancelled."""
        while True:
            self._idle.set()
            frames = await self.requests.recv_multipart()
            self._idle.clear()
            reply = self._answer(frames)
            if reply is None:
                continue
            if isinstance(reply, dict):
                result = reply
            else:
                result = await asyncio.to_thread(serve_request, reply, self.cfg, self.worker_id,
                                                 self._debug_delay(reply))
            # A result must not be lost to a momentarily full pipe: wait for room (bounded by the daemon's LINGER).
            await self.results.send(encode(result))
            self.served += 1

    def _answer(self, frames: list[bytes]) -> BacktestRequest | dict[str, Any] | None:
        """A request to run, an error result to send at once, or None when nothing can be answered."""
        msg = parse(frames, self.cfg.zmq.max_message_bytes)
        if isinstance(msg, Rejected):
            log.warning("unreadable request dropped", reason=msg.reason, bytes=msg.size)
            return None
        if msg.type != "BACKTEST":
            log.warning("unexpected message on the request socket", type=msg.type)
            return None
        req = parse_backtest_request(msg)
        if isinstance(req, Rejected):
            log.warning("request without a request_id dropped: nothing to answer to", detail=req.detail)
            return None
        problem = request_problem(msg.body)
        if problem is not None:
            return result_body(request_id=req.request_id, strategy_name="", status="error", error=problem,
                               elapsed_ms=0.0, worker=self.worker_id)
        return req

    def _debug_delay(self, req: BacktestRequest) -> float:
        delay = req.debug.get("sleep_sec") if self.cfg.debug.enabled else None
        if isinstance(delay, int | float) and not isinstance(delay, bool) and delay > 0:
            return min(float(delay), 60.0)
        return 0.0

    async def ack_heartbeats(self) -> None:
        """Answer every daemon HEARTBEAT with our own (`ack_of` = its id)."""
        while True:
            frames = await self.heartbeats.recv_multipart()
            if len(frames) != 2:
                continue
            try:
                hb = orjson.loads(frames[1])
            except orjson.JSONDecodeError:
                continue
            if isinstance(hb, dict):
                ack = ack_body(source=self.source, status="OK", hb_id=str(uuid.uuid4()),
                               ack_of=hb.get("id") if isinstance(hb.get("id"), str) else None)
                try_send(self.acks, [encode(ack)])

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; an in-flight backtest gets STOP_GRACE_SEC to finish."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker started", worker=self.worker_id, pid=os.getpid(), requests=self.cfg.zmq.backtest_endpoint)
        serving = asyncio.create_task(self.serve_forever(), name="serve")
        acking = asyncio.create_task(self.ack_heartbeats(), name="acks")
        stopped = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([serving, acking, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    log.error("worker task failed", task=task.get_name(), exc_info=task.exception())
                    return 1
            with contextlib.suppress(TimeoutError):  # let the backtest in hand finish and its result leave
                await asyncio.wait_for(self._idle.wait(), timeout=STOP_GRACE_SEC)
        finally:
            for task in (serving, acking, stopped):
                task.cancel()
            await asyncio.gather(serving, acking, stopped, return_exceptions=True)
            self.wire.close()
        log.info("worker stopped", worker=self.worker_id, served=self.served)
        return 0


def follow_parent() -> bool:
    """An embedded worker dies with its daemon (Linux PR_SET_PDEATHSIG); False when the daemon is already gone."""
    expected = os.environ.get("SWIMMY_PARENT_PID")
    if not expected or not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return str(os.getppid()) == expected  # the daemon may have died before the prctl took effect


def run_worker(cfg: Config, worker_id: str | None) -> int:
    """Entry point of `swimmy worker`."""
    import uvloop

    from swimmy.telemetry.logbridge import configure_stderr_logging

    configure_stderr_logging(cfg.telemetry.log_level)
    if not follow_parent():
        log.warning("the daemon that started this embedded worker is gone; exiting")
        return 1
    worker = Worker(cfg, worker_id or default_worker_id())
    return uvloop.run(worker.run())

