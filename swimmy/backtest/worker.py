"""`swimmy worker`: the worker side of the work protocol (SPEC §4), and a heartbeat peer.

One DEALER to the daemon's ROUTER (`zmq.backtest_endpoint`). The worker announces
itself with READY: its id, its credit (`workers.queue_depth`: how many requests it
holds at once, one running and the rest waiting here, so the next one starts without
a round trip) and the hash of each configured universe's data file. It re-sends READY
every second while it holds nothing (the Paranoid-Pirate idle beat). While it holds
work, the thread that runs the backtests sends BUSY at the start of every request and
then at least every second at its progress points; a thread that hangs sends nothing,
so the daemon declares the worker dead although its process is alive, and the worker
exits by itself after 3 x `backtest.worker_timeout_sec` so its supervisor restarts it.

Every request gets an answer: a request it cannot serve is an `error` result with
the reason, never silence and never a crash. A request for data other than ours (its
`data_hash` differs from our file's) is answered `data mismatch: ...`, which the daemon
treats as a lost request. The costs come from the request, so every worker charges the
daemon's costs. Workers log to stderr only.

Running one request is swimmy/backtest/serve.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from swimmy.backtest.data import data_hash, universe_dir, universe_name
from swimmy.backtest.engine import warm_up
from swimmy.backtest.serve import Beat
from swimmy.backtest.serve import serve_request as serve_request  # re-exported: school/validity.py imports it here
from swimmy.config import Config
from swimmy.wire.messages import (
    WORK_VERSION,
    BacktestRequest,
    Rejected,
    ack_body,
    busy_body,
    encode,
    encode_work,
    parse,
    parse_backtest_request,
    ready_body,
    request_problem,
    result_body,
)
from swimmy.wire.security import uses_curve
from swimmy.wire.zmq import DEALER, PUSH, SUB, Wire, load_curve_keys, subscribe, try_send

STOP_GRACE_SEC = 5.0
BEAT_SEC = 1.0  # READY while idle, BUSY while working: at least this often
BUSY_MIN_GAP_SEC = 0.5
HANG_EXIT_FACTOR = 3  # a backtest thread silent for 3 x worker_timeout_sec: exit, the supervisor restarts us
HANG_EXIT_CODE = 3
PR_SET_PDEATHSIG = 1
log = structlog.get_logger(logger_name="swimmy.worker")


def default_worker_id() -> str:
    """`<host>-<pid>` (SPEC §10)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def local_data(cfg: Config) -> dict[str, str]:
    """Universe -> hash of every configured universe whose file we have."""
    out = {}
    for symbol, timeframe in cfg.school.universes():
        h = data_hash(universe_dir(cfg, symbol), symbol, timeframe)
        if h is not None:
            out[universe_name(symbol, timeframe)] = h
    return out


class _Runner:
    """One daemon thread that runs the backtests in order (a hung one can't hold the process's exit)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[tuple[Callable[[], dict[str, Any]], asyncio.Future[dict[str, Any]]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="backtests", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], dict[str, Any]]) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._jobs.put((job, fut))
        return fut

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, fut = item
            try:
                out = job()
            except BaseException as exc:  # noqa: BLE001 - serve_request catches; this is belt and braces
                self._loop.call_soon_threadsafe(_set_exception, fut, exc)
            else:
                self._loop.call_soon_threadsafe(_set_result, fut, out)

    def close(self) -> None:
        self._jobs.put(None)


def _set_result(fut: asyncio.Future[dict[str, Any]], value: dict[str, Any]) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[dict[str, Any]], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class Worker:
    """The worker process's sockets and loops."""

    def __init__(self, cfg: Config, worker_id: str) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        self.source = f"worker-{worker_id}"
        self.credit = cfg.workers.queue_depth
        z = cfg.zmq
        needs_curve = any(uses_curve(z, e) for e in (z.backtest_endpoint, z.pub_endpoint, z.pull_endpoint))
        self.wire = Wire(z, load_curve_keys(z) if needs_curve else None)
        self.work = self.wire.connect(DEALER, z.backtest_endpoint, curve=uses_curve(z, z.backtest_endpoint),
                                      rcvhwm=self.credit + 8)
        self.heartbeats = self.wire.connect(SUB, z.pub_endpoint, curve=uses_curve(z, z.pub_endpoint))
        subscribe(self.heartbeats, b"HEARTBEAT")
        self.acks = self.wire.connect(PUSH, z.pull_endpoint, curve=uses_curve(z, z.pull_endpoint))
        self.served = 0
        self.holding = 0  # received and not yet answered
        self.thread_beat = time.monotonic()  # the backtest thread's last sign of life
        self._last_beat_sent = 0.0  # the last BUSY or result sent
        self._requests: asyncio.Queue[BacktestRequest] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: _Runner | None = None

    # -- sending ---------------------------------------------------------------------------------

    def _send(self, body: dict[str, Any]) -> None:
        try_send(self.work, [encode_work(body)])  # a full pipe drops a beat; the next one follows in a second

    def _ready(self) -> None:
        self._send(ready_body(worker=self.worker_id, credit=self.credit, data=local_data(self.cfg)))

    def _busy(self, request_id: str, progress: float) -> None:
        """Called from the backtest thread (through the loop): the thread is alive.

        A result is a beat too, so at full pace (a result every few ms) BUSY goes out only when the last
        beat is BUSY_MIN_GAP_SEC old: one message per request saved, and a long backtest still beats.
        """
        now = time.monotonic()
        self.thread_beat = now
        if now - self._last_beat_sent >= BUSY_MIN_GAP_SEC:
            self._last_beat_sent = now
            self._send(busy_body(worker=self.worker_id, request_id=request_id, progress=progress))

    def _beat_from_thread(self, loop: asyncio.AbstractEventLoop) -> Beat:
        def beat(request_id: str, progress: float) -> None:
            loop.call_soon_threadsafe(self._busy, request_id, progress)
        return beat

    # -- loops -----------------------------------------------------------------------------------

    async def receive(self) -> None:
        """Take requests from the daemon into our queue; answer the unusable ones at once."""
        while True:
            frames = await self.work.recv_multipart()
            reply = self._answer(frames)
            if reply is None:
                continue
            if isinstance(reply, dict):
                await self.work.send(encode_work(reply))
                continue
            self.holding += 1
            self._idle.clear()
            self._requests.put_nowait(reply)

    async def serve_forever(self) -> None:
        """Run the queued requests one at a time in the backtest thread; send each result."""
        loop = asyncio.get_running_loop()
        self._runner = _Runner(loop)
        beat = self._beat_from_thread(loop)
        try:
            while True:
                req = await self._requests.get()
                self.thread_beat = time.monotonic()
                result = await self._runner.submit(
                    lambda req=req: serve_request(req, self.cfg, self.worker_id, beat))  # type: ignore[misc]
                # A result must not be lost to a momentarily full pipe: wait for room.
                await self.work.send(encode_work(result))
                self._last_beat_sent = time.monotonic()
                self.served += 1
                self.holding -= 1
                if self.holding == 0:
                    self._idle.set()
                    self._ready()  # the credit is back: say so now rather than at the next beat
        finally:
            self._runner.close()

    async def beat(self) -> None:
        """READY every second while idle; exit when the backtest thread has hung for too long."""
        self._ready()
        hang_limit = HANG_EXIT_FACTOR * self.cfg.backtest.worker_timeout_sec
        while True:
            await asyncio.sleep(BEAT_SEC)
            if self.holding == 0:
                self._ready()
            elif time.monotonic() - self.thread_beat > hang_limit:
                log.error("the backtest thread has hung; exiting so that the worker is restarted",
                          silent_sec=round(time.monotonic() - self.thread_beat, 1))
                os._exit(HANG_EXIT_CODE)

    def _answer(self, frames: list[bytes]) -> BacktestRequest | dict[str, Any] | None:
        """A request to run, an error result to send at once, or None when nothing can be answered."""
        msg = parse(frames, self.cfg.zmq.max_message_bytes, version=WORK_VERSION)
        if isinstance(msg, Rejected):
            log.warning("unreadable request dropped", reason=msg.reason, bytes=msg.size)
            return None
        if msg.type != "BACKTEST":
            log.warning("unexpected message on the work socket", type=msg.type)
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
        """Serve until SIGTERM/SIGINT; the backtests in hand get STOP_GRACE_SEC to finish."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Before the first READY: loading the compiled loops takes ~0.5 s, compiling them (once per install,
        # into NUMBA_CACHE_DIR) several seconds, and a backtest that compiled inside a request would stay
        # silent past backtest.worker_timeout_sec.
        warm_started = time.monotonic()
        await asyncio.to_thread(warm_up)
        log.info("worker started", worker=self.worker_id, pid=os.getpid(), work=self.cfg.zmq.backtest_endpoint,
                 credit=self.credit, warm_up_sec=round(time.monotonic() - warm_started, 2))
        tasks = [asyncio.create_task(coro, name=name) for coro, name in (
            (self.receive(), "receive"), (self.serve_forever(), "serve"), (self.beat(), "beat"),
            (self.ack_heartbeats(), "acks"))]
        stopped = asyncio.create_task(stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    log.error("worker task failed", task=task.get_name(), exc_info=task.exception())
                    return 1
            tasks[0].cancel()  # take no more requests; let the ones in hand finish and their results leave
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=STOP_GRACE_SEC)
        finally:
            for task in [*tasks, stopped]:
                task.cancel()
            await asyncio.gather(*tasks, stopped, return_exceptions=True)
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

