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

Threads: the main thread owns the DEALER and runs the backtests, in one plain loop
(take what has arrived, run the next request, send its result; when idle, wait on the
socket and beat READY), as the ZeroMQ guide's Paranoid-Pirate worker does. A second
thread owns the heartbeat sockets and answers the daemon's heartbeats (so a hung
backtest still answers them, and only the missing BUSY beats give it away), and a third
watches the backtest thread for the hang exit. Nothing hops between threads per request:
an asyncio loop beside the backtest thread cost about 0.6 ms of CPU a request in thread
hand-offs and GIL traffic, more than the backtest itself (docs/protocol.md, "Throughput").

Every request gets an answer: a request it cannot serve is an `error` result with
the reason, never silence and never a crash. A request for data other than ours (its
`data_hash` differs from our file's) is answered `data mismatch: ...`, which the daemon
treats as a lost request. The costs come from the request, so every worker charges the
daemon's costs. Workers log to stderr only.

Running one request is swimmy/backtest/serve.py.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from typing import Any

import orjson
import structlog

from swimmy.backtest.data import data_hash, universe_dir, universe_name
from swimmy.backtest.engine import warm_up
from swimmy.backtest.serve import serve_request as serve_request  # re-exported: school/validity.py imports it here
from swimmy.backtest.supervisor import WORK_ENDPOINT_ENV
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
from swimmy.wire.zmq import (
    DEALER,
    PUSH,
    SUB,
    Waiter,
    Wire,
    load_curve_keys,
    recv_nowait,
    send_nowait,
    send_within,
    subscribe,
)

STOP_GRACE_SEC = 5.0
BEAT_SEC = 1.0  # READY while idle, BUSY while working: at least this often
BUSY_MIN_GAP_SEC = 0.5
RESULT_SEND_SEC = 5.0  # a result waits this long for room in a full pipe (the daemon's timeout covers the rest)
HANG_EXIT_FACTOR = 3  # a backtest thread silent for 3 x worker_timeout_sec: exit, the supervisor restarts us
HANG_EXIT_CODE = 3
WATCH_SEC = 0.5
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


class Worker:
    """The worker process's sockets and loops."""

    def __init__(self, cfg: Config, worker_id: str) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        self.source = f"worker-{worker_id}"
        self.credit = cfg.workers.queue_depth
        z = cfg.zmq
        needs_curve = any(uses_curve(z, e) for e in (z.backtest_endpoint, z.pub_endpoint, z.pull_endpoint))
        self.wire = Wire(z, load_curve_keys(z) if needs_curve else None, blocking=True)
        # An embedded worker is told the daemon's private Unix socket (the same ROUTER, the same CURVE rule).
        self.endpoint = os.environ.get(WORK_ENDPOINT_ENV) or z.backtest_endpoint
        self.work = self.wire.connect(DEALER, self.endpoint, curve=uses_curve(z, z.backtest_endpoint),
                                      rcvhwm=self.credit + 8)
        self.served = 0
        self.holding = 0  # received and not yet answered
        self.thread_beat = time.monotonic()  # the backtest thread's last sign of life
        self.stop_at: float | None = None  # when SIGTERM/SIGINT came
        self._last_beat_sent = 0.0  # the last BUSY or result sent
        self._next_ready = 0.0
        self._pending: deque[BacktestRequest] = deque()
        self._closing = threading.Event()  # the helper threads end
        self._wake_r, self._wake_w = os.pipe()  # a signal ends the idle wait at once
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    # -- sending (the backtest thread only: it owns the DEALER) -----------------------------------

    def _send(self, body: dict[str, Any]) -> None:
        send_nowait(self.work, [encode_work(body)])  # a full pipe drops a beat; the next one follows in a second

    def _ready(self) -> None:
        self._send(ready_body(worker=self.worker_id, credit=self.credit, data=local_data(self.cfg)))
        self._next_ready = time.monotonic() + BEAT_SEC

    def _beat(self, request_id: str, progress: float) -> None:
        """Called by serve_request in the backtest thread: the thread is alive.

        A result is a beat too, so at full pace (a result every millisecond) BUSY goes out only when the
        last beat is BUSY_MIN_GAP_SEC old: one message per request saved, and a long backtest still beats.
        """
        now = time.monotonic()
        self.thread_beat = now
        if now - self._last_beat_sent >= BUSY_MIN_GAP_SEC:
            self._last_beat_sent = now
            self._send(busy_body(worker=self.worker_id, request_id=request_id, progress=progress))

    def _send_result(self, body: dict[str, Any]) -> None:
        """A result must not be lost to a momentarily full pipe: wait for room, within reason."""
        if not send_within(self.work, [encode_work(body)], RESULT_SEND_SEC):
            log.warning("result not sent: the daemon's pipe stayed full; its timeout will re-send the request",
                        request_id=body.get("request_id"), waited_sec=RESULT_SEND_SEC)
        self._last_beat_sent = time.monotonic()

    # -- the backtest thread's loop ----------------------------------------------------------------

    def _take(self) -> None:
        """Everything that has arrived: requests to the queue, the unusable ones answered at once."""
        while (frames := recv_nowait(self.work)) is not None:
            reply = self._answer(frames)
            if reply is None:
                continue
            if isinstance(reply, dict):
                self._send_result(reply)
                continue
            self._pending.append(reply)
            self.holding += 1

    def serve(self) -> None:
        """Run requests as they come, one at a time, until a stop and its grace; READY every second when idle."""
        waiter = Waiter(self.work, self._wake_r)
        self._ready()
        while True:
            # The loop is the thread's sign of life. Beating here, idle or not, also keeps a request just taken
            # after a long idle spell from meeting an old beat in the watchdog before it starts.
            self.thread_beat = time.monotonic()
            if self.stop_at is not None:  # take no more; finish what we hold within the grace
                if not self._pending or time.monotonic() - self.stop_at > STOP_GRACE_SEC:
                    return
            elif self._pending:
                self._take()
            else:
                if time.monotonic() >= self._next_ready:
                    self._ready()
                if self._wake_r in waiter.wait(self._next_ready - time.monotonic()):
                    self._drain_wake()
                if self.stop_at is None:
                    self._take()
                continue
            req = self._pending.popleft()
            result = serve_request(req, self.cfg, self.worker_id, self._beat)
            self._send_result(result)
            self.served += 1
            self.holding -= 1
            # The result returned its credit, and it is a beat: the idle READY follows a second after it.
            self._next_ready = self._last_beat_sent + BEAT_SEC

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

    # -- signals -----------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stop_at is None:
            self.stop_at = time.monotonic()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 256):
                pass
        except BlockingIOError:
            pass

    # -- the helper threads ------------------------------------------------------------------------

    def ack_heartbeats(self) -> None:
        """Answer every daemon HEARTBEAT with our own (`ack_of` = its id), on sockets of this thread's own."""
        z = self.cfg.zmq
        heartbeats = self.wire.connect(SUB, z.pub_endpoint, curve=uses_curve(z, z.pub_endpoint))
        subscribe(heartbeats, b"HEARTBEAT")
        acks = self.wire.connect(PUSH, z.pull_endpoint, curve=uses_curve(z, z.pull_endpoint))
        waiter = Waiter(heartbeats)
        while not self._closing.is_set():
            waiter.wait(WATCH_SEC)
            while (frames := recv_nowait(heartbeats)) is not None:
                if len(frames) != 2:
                    continue
                try:
                    hb = orjson.loads(frames[1])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(hb, dict):
                    ack = ack_body(source=self.source, status="OK", hb_id=str(uuid.uuid4()),
                                   ack_of=hb.get("id") if isinstance(hb.get("id"), str) else None)
                    send_nowait(acks, [encode(ack)])

    def watch(self) -> None:
        """Exit when the backtest thread has hung for too long, or still runs at the end of a stop's grace."""
        hang_limit = HANG_EXIT_FACTOR * self.cfg.backtest.worker_timeout_sec
        while not self._closing.wait(WATCH_SEC):
            now = time.monotonic()
            if self.holding > 0 and now - self.thread_beat > hang_limit:
                log.error("the backtest thread has hung; exiting so that the worker is restarted",
                          silent_sec=round(now - self.thread_beat, 1))
                os._exit(HANG_EXIT_CODE)
            if self.stop_at is not None and now - self.stop_at > STOP_GRACE_SEC + 2 * WATCH_SEC:
                log.warning("stopping: a backtest still runs after the grace; exiting without it",
                            grace_sec=STOP_GRACE_SEC, served=self.served)
                os._exit(0)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the backtests in hand get STOP_GRACE_SEC to finish."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        helpers = [threading.Thread(target=self.ack_heartbeats, name="acks", daemon=True),
                   threading.Thread(target=self.watch, name="watch", daemon=True)]
        for thread in helpers:
            thread.start()
        try:
            # Before the first READY: loading the compiled loops takes ~0.5 s, compiling them (once per install,
            # into NUMBA_CACHE_DIR) several seconds, and a backtest that compiled inside a request would stay
            # silent past backtest.worker_timeout_sec.
            warm_started = time.monotonic()
            warm_up()
            log.info("worker started", worker=self.worker_id, pid=os.getpid(), work=self.endpoint,
                     credit=self.credit, warm_up_sec=round(time.monotonic() - warm_started, 2))
            if self.stop_at is None:
                self.serve()
        except Exception as exc:
            log.error("worker failed", exc_info=exc)
            return 1
        finally:
            self._closing.set()
            for thread in helpers:
                thread.join(timeout=2 * WATCH_SEC)
            signal.set_wakeup_fd(-1)
            self.wire.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
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
    from swimmy.telemetry.logbridge import configure_stderr_logging

    configure_stderr_logging(cfg.telemetry.log_level)
    if not follow_parent():
        log.warning("the daemon that started this embedded worker is gone; exiting")
        return 1
    worker = Worker(cfg, worker_id or default_worker_id())
    return worker.run()

