"""Telemetry throughput, emit cost, loop stall and memory (SPEC §2; the telemetry issue's numbers).

Run:  .venv/bin/python bench/telemetry_bench.py [--events N] [--reps R]

Cases, each measured in the same run, interleaved per repetition, medians reported:

  (a)  stdlib `logging` + RotatingFileHandler(10 MiB, 5) + a json.dumps Formatter: what users write today
  (b)  the ceiling: build the envelope dict, orjson.dumps, write 1,000 lines at a time, no rotation, no fsync
  (c)  swimmy: EventQueue.emit -> TelemetryWriter (rotation on, fsync="interval"), first emit to last line on disk;
       the producer yields every 1,000 emits and waits for room when the queue is full (emit drops, never blocks)
  (c') informative: (c) with a producer that keeps at most 8,000 events queued

Every case writes the same envelope keys (SPEC §2.1) for the same realistic event: a `wfv.result` with a
uuid correlation id and a 7-key data object that the caller builds per event, as a real caller does.
Each case and repetition runs in a fresh child process (`--case NAME`), with glibc malloc primed the way a
long-running process is (one large block freed), then an untimed warm-up: the allocator state one case leaves
behind otherwise changes the next case's page faults by up to 2x.

Then: the caller-side cost of one emit; the event loop's stalls while the writer drains a full queue (a
sleep(0) probe task, in wall and loop-thread CPU time, plus a call_later lateness probe) and, informative,
during case (c) itself; peak RSS (VmHWM of child processes: baseline, a full queue, (c) with N and 2N events).
The final table prints PASS/FAIL per target; the script exits 0 either way: it is a report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import logging.handlers
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from swimmy.config import TelemetryConfig
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import TelemetryWriter

MIB = 1024 * 1024
POOL = 4096  # distinct correlation ids / values the producers cycle through
MASK = POOL - 1
CHUNK = 1000  # the producer in (c) yields to the loop after this many emits
ENVELOPE_KEYS = [
    "schema_version",
    "timestamp",
    "log_type",
    "event_type",
    "service",
    "severity",
    "correlation_id",
    "data",
    "seq",
    "pid",
    "host",
    "run_id",
]
SHALLOW = 8_000  # (c'): the producer keeps at most this many events queued
HELD_MS = 0.05  # a gap of the sleep(0) probe longer than this means another task held the loop
TARGETS = {"c/a": 10.0, "c/b": 0.5, "emit_us": 1.0, "stall_p99_ms": 2.0}

CIDS = [str(uuid.uuid4()) for _ in range(POOL)]
STRATEGIES = [f"trend-{n:03d}-ema{5 + n % 40}x{50 + n % 150}" for n in range(64)]
DECISIONS = ["promote", "keep", "demote", "reject"]
IS_SHARPE = [round(0.2 + (n * 7919 % 1000) / 400, 4) for n in range(POOL)]
OOS_SHARPE = [round(-0.5 + (n * 104729 % 1000) / 500, 4) for n in range(POOL)]
SPLIT = 0.2
HOST = socket.gethostname()
PID = os.getpid()
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]


def make_data(i: int, cid: str) -> dict[str, Any]:
    """The data object of one wfv.result (used where the call cost does not matter: fills, the emit bench)."""
    return {
        "wfv_id": cid,
        "strategy": STRATEGIES[i & 63],
        "generation": i,
        "split_ratio": SPLIT,
        "is_sharpe": IS_SHARPE[i & MASK],
        "oos_sharpe": OOS_SHARPE[i & MASK],
        "decision": DECISIONS[i & 3],
    }


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run one coroutine on a fresh uvloop loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def maxrss_bytes() -> int:
    """Peak RSS of this process.

    VmHWM where there is /proc: Linux carries ru_maxrss across fork+exec (a child would report at least its
    parent's RSS at spawn time), while VmHWM belongs to the exec'd image alone.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def usage() -> tuple[float, float, int]:
    """(user CPU s, system CPU s, minor page faults) of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def usage_since(before: tuple[float, float, int]) -> dict[str, float]:
    after = usage()
    return {"user": after[0] - before[0], "sys": after[1] - before[1], "minflt": after[2] - before[2]}


def telemetry_cfg(path: Path, n: int, queue_size: int) -> TelemetryConfig:
    """The default config, with max_bytes small enough that n events rotate at least once."""
    max_bytes = min(32 * MIB, max(64 * 1024, n * 450 // 3))
    backups = max(8, n * 600 // max_bytes + 2)  # keep every file, so the line count can be verified
    return TelemetryConfig(path=path, max_bytes=max_bytes, backups=backups, queue_size=queue_size, fsync="interval")


# -- (a) stdlib logging ------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """What users write today: a Formatter that builds the envelope and json.dumps it."""

    converter = time.gmtime  # type: ignore[assignment]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.host = HOST
        self.seq = 0

    def format(self, record: logging.LogRecord) -> str:
        seq = record.__dict__.get("seq")
        if seq is None:  # RotatingFileHandler formats each record twice (shouldRollover, then emit)
            self.seq += 1
            seq = record.seq = self.seq
        env = {
            "schema_version": 1,
            "timestamp": f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}.{int(record.msecs):03d}Z",
            "log_type": "telemetry",
            "event_type": record.event_type,  # type: ignore[attr-defined]
            "service": record.service,  # type: ignore[attr-defined]
            "severity": record.levelname.lower(),
            "correlation_id": record.correlation_id,  # type: ignore[attr-defined]
            "data": record.data,  # type: ignore[attr-defined]
            "seq": seq,
            "pid": record.process,
            "host": self.host,
            "run_id": self.run_id,
        }
        return json.dumps(env)


def case_a(tmp: Path, n: int) -> dict[str, Any]:
    path = tmp / "a.jsonl"
    logger = logging.getLogger(f"bench.a.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=10 * MIB, backupCount=5, encoding="utf-8")
    handler.setFormatter(JsonFormatter(str(uuid.uuid4())))
    logger.addHandler(handler)
    info = logger.info
    u0 = usage()
    t0 = time.perf_counter()
    for i in range(n):
        cid = CIDS[i & MASK]
        info(
            "wfv.result",
            extra={
                "event_type": "wfv.result",
                "service": "school",
                "correlation_id": cid,
                "data": {
                    "wfv_id": cid,
                    "strategy": STRATEGIES[i & 63],
                    "generation": i,
                    "split_ratio": SPLIT,
                    "is_sharpe": IS_SHARPE[i & MASK],
                    "oos_sharpe": OOS_SHARPE[i & MASK],
                    "decision": DECISIONS[i & 3],
                },
            },
        )
    handler.close()
    elapsed = time.perf_counter() - t0
    cpu = usage_since(u0)
    logger.removeHandler(handler)
    files = sorted(tmp.glob("a.jsonl*"))
    return {"sec": elapsed, "eps": n / elapsed, "cpu": cpu, "files": len(files), "first_line": _first_line(path)}


# -- (b) the ceiling -----------------------------------------------------------------------------


def case_b(tmp: Path, n: int) -> dict[str, Any]:
    path = tmp / "b.jsonl"
    run_id = str(uuid.uuid4())
    dumps = orjson.dumps
    opt = orjson.OPT_APPEND_NEWLINE
    now = time.time
    gmtime = time.gmtime
    strftime = time.strftime
    millis = _MILLIS
    second, prefix = -1, ""
    u0 = usage()
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        write = f.write
        buf: list[bytes] = []
        append = buf.append
        for i in range(n):
            cid = CIDS[i & MASK]
            data = {
                "wfv_id": cid,
                "strategy": STRATEGIES[i & 63],
                "generation": i,
                "split_ratio": SPLIT,
                "is_sharpe": IS_SHARPE[i & MASK],
                "oos_sharpe": OOS_SHARPE[i & MASK],
                "decision": DECISIONS[i & 3],
            }
            sec, ms = divmod(int(now() * 1000 + 0.5), 1000)  # nearest ms, as swimmy's encoder rounds
            if sec != second:
                second = sec
                prefix = strftime("%Y-%m-%dT%H:%M:%S", gmtime(sec))
            env = {
                "schema_version": 1,
                "timestamp": prefix + millis[ms],
                "log_type": "telemetry",
                "event_type": "wfv.result",
                "service": "school",
                "severity": "info",
                "correlation_id": cid,
                "data": data,
                "seq": i + 1,
                "pid": PID,
                "host": HOST,
                "run_id": run_id,
            }
            append(dumps(env, option=opt))
            if len(buf) == 1000:
                write(b"".join(buf))
                buf.clear()
        if buf:
            write(b"".join(buf))
    elapsed = time.perf_counter() - t0
    return {"sec": elapsed, "eps": n / elapsed, "cpu": usage_since(u0), "first_line": _first_line(path)}


# -- (c) swimmy ------------------------------------------------------------------------------------


def make_pipeline(cfg: TelemetryConfig) -> tuple[EventQueue, TelemetryWriter]:
    """Composed exactly as the daemon does it (call inside the running loop)."""
    queue = EventQueue(cfg.queue_size)
    queue.bind_loop(asyncio.get_running_loop())
    encoder = Encoder(run_id=str(uuid.uuid4()), pid=os.getpid(), host=HOST, max_event_bytes=cfg.max_event_bytes)
    writer = TelemetryWriter(cfg, queue, encoder)
    writer.open()
    return queue, writer


async def _case_c(cfg: TelemetryConfig, n: int, backlog: int | None = None) -> dict[str, Any]:
    """Emit n events as fast as the loop allows, then close and await the writer.

    The producer yields after every 1,000 emits and, as emit drops when the queue is full, waits while fewer
    than 1,000 slots are free: a sustained burst, so the queue runs full. With `backlog`, it waits instead
    while more than `backlog` events are queued (informative: the same work with a shallow queue).
    """
    queue, writer = make_pipeline(cfg)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)  # the writer parks in queue.wait()
    emit = queue.emit
    high = queue.maxsize - CHUNK if backlog is None else backlog
    sleep = asyncio.sleep
    u0 = usage()
    t0 = time.perf_counter()
    i = 0
    while i < n:
        end = min(i + CHUNK, n)
        for j in range(i, end):
            cid = CIDS[j & MASK]
            emit(
                "wfv.result",
                service="school",
                correlation_id=cid,
                data={
                    "wfv_id": cid,
                    "strategy": STRATEGIES[j & 63],
                    "generation": j,
                    "split_ratio": SPLIT,
                    "is_sharpe": IS_SHARPE[j & MASK],
                    "oos_sharpe": OOS_SHARPE[j & MASK],
                    "decision": DECISIONS[j & 3],
                },
            )
        i = end
        await sleep(0)
        while len(queue) > high:  # emit drops when full: wait for room rather than lose events
            await sleep(0)
    queue.close()
    await task  # drained, fsynced, closed: the last line is on disk
    elapsed = time.perf_counter() - t0
    return {
        "sec": elapsed,
        "eps": n / elapsed,
        "cpu": usage_since(u0),
        "dropped": queue.dropped_total,
        "rotations": writer.rotations,
        "written": writer.written,
        "seq": queue.seq,
        "failed_writes": writer.failed_writes,
    }


def case_c(tmp: Path, n: int, queue_size: int, *, verify: bool = True, backlog: int | None = None) -> dict[str, Any]:
    cfg = telemetry_cfg(tmp / "c.jsonl", n, queue_size)
    res: dict[str, Any] = run_loop(_case_c(cfg, n, backlog))
    res["first_line"] = _first_line(cfg.path)
    if verify:
        res["verify"] = verify_files(cfg.path, n, res)
    return res


def verify_files(path: Path, n: int, res: dict[str, Any]) -> dict[str, Any]:
    """Every line across path and path.N parses; seqs are exactly 1..seq; n events + the writer's own lines."""
    files = [path, *sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]))]
    lines = torn = events = rotated = other = 0
    seqs: list[int] = []
    for f in files:
        blob = f.read_bytes()
        if blob and not blob.endswith(b"\n"):
            torn += 1
        for raw in blob.splitlines():
            lines += 1
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                torn += 1
                continue
            seqs.append(obj["seq"])
            if obj["event_type"] == "wfv.result":
                events += 1
            elif obj["event_type"] == "telemetry.rotated":
                rotated += 1
            else:
                other += 1
    writer_lines = res["seq"] - n  # every seq is a line: n events + lines the writer made itself
    seqs.sort()
    ok = (
        torn == 0
        and events == n
        and rotated == res["rotations"]
        and lines == n + writer_lines == res["written"]
        and seqs == list(range(1, res["seq"] + 1))
        and res["dropped"] == 0
        and res["rotations"] > 0
    )
    return {
        "files": len(files),
        "lines": lines,
        "events": events,
        "writer_lines": writer_lines,
        "rotated": rotated,
        "other": other,
        "torn": torn,
        "ok": ok,
    }


def _first_line(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return dict(orjson.loads(f.readline()))


# -- emit cost ----------------------------------------------------------------------------------


def _noop(
    event_type: str, *, service: str, severity: str = "info", correlation_id: Any = None, data: Any = None
) -> None:
    return None


async def _emit_cost(n: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    cids = CIDS
    datas = [make_data(k, CIDS[k]) for k in range(POOL)]  # built up front: this measures emit alone
    pc = time.perf_counter_ns
    chunks = max(1, n // CHUNK)

    def chunked(fn: Any) -> list[float]:
        per: list[float] = []
        for c in range(chunks):
            base = c * CHUNK
            t0 = pc()
            for j in range(base, base + CHUNK):
                fn("wfv.result", service="school", correlation_id=cids[j & MASK], data=datas[j & MASK])
            per.append((pc() - t0) / CHUNK)
        return per

    def bare_loop() -> list[float]:
        per: list[float] = []
        x = y = None
        for c in range(chunks):
            base = c * CHUNK
            t0 = pc()
            for j in range(base, base + CHUNK):
                x = cids[j & MASK]
                y = datas[j & MASK]
            per.append((pc() - t0) / CHUNK)
        del x, y
        return per

    def fresh_queue() -> EventQueue:
        q = EventQueue(n * 2 + 10)
        q.bind_loop(loop)
        return q

    chunked(fresh_queue().emit)  # warm-up
    q = fresh_queue()
    per_emit = chunked(q.emit)
    accepted, dropped = len(q), q.dropped_total
    del q
    per_noop = chunked(_noop)
    per_loop = bare_loop()

    # single-emit latency, each call timed on its own (minus the timer's own cost)
    q = fresh_queue()
    emit = q.emit
    single: list[int] = [0] * n
    timer: list[int] = [0] * n
    for j in range(n):
        t0 = pc()
        t1 = pc()
        timer[j] = t1 - t0
    for j in range(n):
        cid = cids[j & MASK]
        data = datas[j & MASK]
        t0 = pc()
        emit("wfv.result", service="school", correlation_id=cid, data=data)
        t1 = pc()
        single[j] = t1 - t0
    del q
    timer_ns = statistics.median(timer)
    net = [max(0.0, s - timer_ns) for s in single]
    loop_ns = statistics.median(per_loop)
    return {
        "gross_med": statistics.median(per_emit),
        "gross_p99": pct(per_emit, 99),
        "loop_ns": loop_ns,
        "net_med": statistics.median(per_emit) - loop_ns,
        "net_p99": pct(per_emit, 99) - loop_ns,
        "noop_net": statistics.median(per_noop) - loop_ns,
        "timer_ns": timer_ns,
        "single_p50": pct(net, 50),
        "single_p99": pct(net, 99),
        "single_p999": pct(net, 99.9),
        "single_max": max(net),
        "accepted": accepted,
        "dropped": dropped,
    }


# -- loop stall ---------------------------------------------------------------------------------


def _fill(queue: EventQueue, count: int, start: int = 0) -> None:
    emit = queue.emit
    for j in range(start, start + count):
        cid = CIDS[j & MASK]
        emit("wfv.result", service="school", correlation_id=cid, data=make_data(j, cid))


async def _stall(cfg: TelemetryConfig, prefill: int, probe: str) -> dict[str, Any]:
    """Measure how long the event loop is held while the writer works.

    probe="gap":   pre-fill the queue, then let the writer drain it while a task that only does
                   `await asyncio.sleep(0)` runs beside it. A turn of that task alone takes microseconds; a longer
                   gap between two turns is a period in which something else held the loop (a writer batch, a GC
                   pass). Each gap is measured in wall time and in the loop thread's CPU time: the wall time also
                   holds the moments the OS ran another process, the CPU time is what the loop itself spent.
    probe="burst": the same probe during case (c) itself: the producer's 1,000-emit chunks and the GC passes
                   over a full queue are in it too (informative).
    probe="timer": pre-fill and drain as "gap", probed by a call_later(1 ms) chain; lateness = actual - due.
    probe="idle":  the timer probe on an idle loop: the timer granularity and the machine's own noise.
    """
    loop = asyncio.get_running_loop()
    pc = time.perf_counter
    tt = time.thread_time
    wall: list[float] = []
    cpu: list[float] = []
    done = False

    async def gap_probe() -> None:
        last, last_cpu = pc(), tt()
        while not done:
            await asyncio.sleep(0)
            now, now_cpu = pc(), tt()
            if now - last >= HELD_MS / 1000:
                wall.append((now - last) * 1000)
                cpu.append((now_cpu - last_cpu) * 1000)
            last, last_cpu = pc(), tt()

    def tick(due: float) -> None:
        wall.append((pc() - due) * 1000)
        if not done:
            loop.call_later(0.001, tick, pc() + 0.001)

    gc_pauses: list[tuple[int, float]] = []  # (generation, ms) of each collection while measuring
    gc_start = 0.0

    def on_gc(phase: str, info: dict[str, int]) -> None:
        nonlocal gc_start
        if phase == "start":
            gc_start = pc()
        else:
            gc_pauses.append((info["generation"], (pc() - gc_start) * 1000))

    res: dict[str, Any] = {}
    if probe == "burst":
        probe_task = asyncio.create_task(gap_probe())
        await asyncio.sleep(0.02)
        wall.clear()
        cpu.clear()
        gc.callbacks.append(on_gc)
        res = await _case_c(cfg, prefill)
        done = True
    else:
        queue, writer = make_pipeline(cfg)
        if probe != "idle":
            _fill(queue, prefill)
        queue.close()  # nothing more comes: the writer drains what is queued and stops
        if probe == "gap":
            probe_task = asyncio.create_task(gap_probe())
        else:
            loop.call_later(0.001, tick, pc() + 0.001)
        await asyncio.sleep(0.02)  # let the probe settle
        wall.clear()
        cpu.clear()
        gc.callbacks.append(on_gc)
        t0 = pc()
        if probe == "idle":
            await asyncio.sleep(0.5)
        writer_task = asyncio.create_task(writer.run())
        await writer_task
        res = {"sec": pc() - t0, "rotations": writer.rotations}
        done = True
    gc.callbacks.remove(on_gc)
    if probe in ("gap", "burst"):
        await probe_task
    return {
        "wall": wall,
        "cpu": cpu,
        "sec": res["sec"],
        "rotations": res["rotations"],
        "gc": len(gc_pauses),
        "gc_max_ms": max((d for _, d in gc_pauses), default=0.0),
        "gc_full": sum(1 for g, _ in gc_pauses if g == 2),
        "gc_full_max_ms": max((d for g, d in gc_pauses if g == 2), default=0.0),
    }


# -- subprocess cases (peak RSS) --------------------------------------------------------------------


async def _rss_fill(queue_size: int) -> dict[str, Any]:
    queue = EventQueue(queue_size)
    queue.bind_loop(asyncio.get_running_loop())
    _fill(queue, queue_size)
    return {"queued": len(queue), "dropped": queue.dropped_total}


async def _rss_baseline() -> dict[str, Any]:
    await asyncio.sleep(0)
    return {}


TIMED = ("a", "b", "c", "c'")


def timed_case(name: str, n: int, queue_size: int, prime_allocator: bool = True) -> dict[str, Any]:
    """One timed case in a fresh process, after a short untimed warm-up of the same case.

    A fresh process per case and repetition: the allocator's state (glibc's adaptive trim/mmap thresholds,
    pymalloc arenas) left by one case changes the next one's page faults, by up to 2x for (b) here.
    """
    backlog = min(SHALLOW, queue_size - CHUNK) if name == "c'" else None

    def one(k: int, verify: bool) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="swimmy-bench-") as tmp:
            if name == "a":
                return case_a(Path(tmp), k)
            if name == "b":
                return case_b(Path(tmp), k)
            return case_c(Path(tmp), k, queue_size, verify=verify, backlog=backlog)

    if prime_allocator:
        # What a long-running process has done long before: freed a large malloc'd block (file reads, numpy
        # arrays). glibc then raises its mmap threshold to that size and its trim threshold to twice it,
        # and stops handing freed heap back to the kernel after every burst (then faulting it back in).
        block = bytearray(8 * MIB)
        del block
    one(max(1000, n // 20), False)
    gc.collect()
    return one(n, True)


def subcase(name: str, n: int, queue_size: int) -> dict[str, Any]:
    """Run in a child process; returns the case's numbers plus its peak RSS."""
    res: dict[str, Any]
    if name in TIMED:
        res = timed_case(name, n, queue_size)
    elif name.startswith("fresh-") and name[6:] in TIMED:
        res = timed_case(name[6:], n, queue_size, prime_allocator=False)
    elif name == "rss-baseline":
        res = run_loop(_rss_baseline())
    elif name == "rss-fill":
        res = run_loop(_rss_fill(queue_size))
    elif name == "rss-c":
        with tempfile.TemporaryDirectory(prefix="swimmy-bench-") as tmp:
            res = case_c(Path(tmp), n, queue_size, verify=False)
            res.pop("first_line", None)
    else:
        raise SystemExit(f"unknown case {name}")
    res["maxrss"] = maxrss_bytes()
    return res


def run_subcase(name: str, n: int, queue_size: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", name, "--events", str(n)]
    cmd += ["--queue-size", str(queue_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- the report -----------------------------------------------------------------------------------


def fmt_rate(eps: float) -> str:
    return f"{eps:>12,.0f} ev/s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000, help="events per case (default 200,000)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per case (default 3)")
    ap.add_argument("--queue-size", type=int, default=100_000, help="telemetry.queue_size (default 100,000)")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case in a child process
    args = ap.parse_args()
    n, reps, qsize = args.events, args.reps, args.queue_size

    if args.case:
        print(json.dumps(subcase(args.case, n, qsize)))
        return 0

    started = time.perf_counter()
    print("swimmy telemetry bench")
    print(f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, {platform.machine()}")
    print(
        f"  python {platform.python_version()} ({platform.python_implementation()}), "
        f"uvloop {version('uvloop')}, orjson {orjson.__version__}"
    )
    print(f"  {n:,} events per case, {reps} repetitions (interleaved a, b, c, c'), medians; queue_size {qsize:,}")
    print(
        f"  temp dir under {tempfile.gettempdir()}; load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine skews all cases alike)"
    )
    print()

    # -- throughput --------------------------------------------------------------------------------
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in TIMED}
    backlog = min(SHALLOW, qsize - CHUNK)
    print("throughput (each case and repetition in a fresh child process: allocator primed as in a long-running")
    print("process by freeing one 8 MiB block, then an untimed warm-up of the same case, then the timed run)")
    for rep in range(reps):
        for name in TIMED:
            res = run_subcase(name, n, qsize)
            results[name].append(res)
            cpu = res["cpu"]
            extra = f"  cpu {cpu['user']:.2f}u+{cpu['sys']:.2f}s faults {cpu['minflt'] / 1000:5.0f}k"
            if name == "a":
                extra += f"  ({res['files']} files after rotation)"
            if name.startswith("c"):
                v = res["verify"]
                extra += (
                    f"  rotations={res['rotations']} dropped={res['dropped']} files={v['files']} "
                    f"lines={v['lines']:,} (= {v['events']:,} events + {v['writer_lines']} writer lines) "
                    f"torn={v['torn']} verify={'OK' if v['ok'] else 'FAILED'}"
                )
            print(f"  rep {rep + 1} ({name:2}) {res['sec']:7.3f} s {fmt_rate(res['eps'])}{extra}")
    eps = {k: statistics.median(r["eps"] for r in v) for k, v in results.items()}
    keys = {k: list(v[0]["first_line"]) for k, v in results.items()}
    same_keys = all(k == ENVELOPE_KEYS for k in keys.values())
    cs = results["c"] + results["c'"]
    c_ok = all(r["verify"]["ok"] for r in cs)
    c_dropped = max(r["dropped"] for r in cs)
    c_rot = min(r["rotations"] for r in cs)
    print()
    print(f"  (a) logging + RotatingFileHandler + json.dumps {fmt_rate(eps['a'])}  {1e6 / eps['a']:6.2f} us/event")
    print(f"  (b) ceiling: dict + orjson + 1,000-line writes {fmt_rate(eps['b'])}  {1e6 / eps['b']:6.2f} us/event")
    print(f"  (c) swimmy emit -> writer, rotation, fsync     {fmt_rate(eps['c'])}  {1e6 / eps['c']:6.2f} us/event")
    print(f"  c/a = {eps['c'] / eps['a']:.2f}x   c/b = {eps['c'] / eps['b']:.2f}x")
    cpu_per = {k: statistics.median(r["cpu"]["user"] + r["cpu"]["sys"] for r in v) for k, v in results.items()}
    print(
        f"  CPU time (user+sys) per run, medians: a {cpu_per['a']:.2f} s, b {cpu_per['b']:.2f} s, "
        f"c {cpu_per['c']:.2f} s -> CPU ratios c/a = {cpu_per['a'] / cpu_per['c']:.2f}x, "
        f"c/b = {cpu_per['b'] / cpu_per['c']:.2f}x (less sensitive to other load on the machine)"
    )
    shallow = eps["c'"]
    print(
        f"  (c') informative: as (c), <= {backlog:,} queued      {fmt_rate(shallow)}  {1e6 / shallow:6.2f} us/event"
        f"  (c'/a = {shallow / eps['a']:.2f}x, c'/b = {shallow / eps['b']:.2f}x)"
    )
    print("      (c) runs with a full queue: the writer encodes records made ~100k events earlier (cold in cache)")
    print("      and every GC pass walks the queued record tuples; (c') shows what the depth itself costs.")
    fb, fc = run_subcase("fresh-b", n, qsize), run_subcase("fresh-c", n, qsize)
    print(
        f"  allocator sensitivity, one run each without priming glibc malloc (fresh process): "
        f"(b) {fb['eps']:,.0f} ev/s with {fb['cpu']['minflt'] / 1000:.0f}k page faults, "
        f"(c) {fc['eps']:,.0f} ev/s with {fc['cpu']['minflt'] / 1000:.0f}k; c/b = {fc['eps'] / fb['eps']:.2f}x"
    )
    print(f"  envelope keys identical in a, b, c and per SPEC §2.1: {'yes' if same_keys else 'NO: ' + repr(keys)}")
    print(
        f"  (c), (c') every rep: dropped={c_dropped}, rotations>={c_rot}, lines/seqs/no torn line verified: "
        f"{'yes' if c_ok else 'NO'}"
    )
    print()

    # -- emit cost --------------------------------------------------------------------------------
    em = run_loop(_emit_cost(100_000))
    print("emit: caller-side cost (100,000 emits into a big queue, no writer; 1,000-emit chunks)")
    print(f"  per emit, chunk median {em['gross_med']:6.0f} ns  p99 {em['gross_p99']:6.0f} ns  (incl. loop)")
    print(
        f"  bare loop (index the args) {em['loop_ns']:6.0f} ns/iter  -> emit itself: "
        f"median {em['net_med']:6.0f} ns  p99 {em['net_p99']:6.0f} ns"
    )
    print(f"  for scale: calling a no-op Python function with the same signature costs {em['noop_net']:.0f} ns")
    print(
        f"  single emits timed one by one (timer cost {em['timer_ns']:.0f} ns subtracted): "
        f"p50 {em['single_p50']:.0f} ns  p99 {em['single_p99']:.0f} ns  p99.9 {em['single_p999']:.0f} ns  "
        f"max {em['single_max'] / 1000:.1f} us"
    )
    print(f"  accepted {em['accepted']:,}, dropped {em['dropped']}")
    print("  (the tails are the cyclic GC: every emit allocates a tracked tuple, so a collection can fall into any")
    print("   emit, and a full one walks every queued record; with gc disabled chunk p99 ~= median, max < 0.1 ms)")
    print()

    # -- loop stall -------------------------------------------------------------------------------
    prefill = min(qsize, 100_000)
    runs: dict[str, list[dict[str, Any]]] = {"gap": [], "timer": [], "idle": [], "burst": []}
    for _ in range(reps):
        for probe, sink in runs.items():
            with tempfile.TemporaryDirectory(prefix="swimmy-bench-") as tmp:
                k = n if probe == "burst" else prefill
                cfg = telemetry_cfg(Path(tmp) / "s.jsonl", k, qsize)
                gc.collect()
                sink.append(run_loop(_stall(cfg, k, probe)))

    def pooled(probe: str, key: str = "wall") -> list[float]:
        return [x for r in runs[probe] for x in r[key]]

    def dist(xs: list[float]) -> str:
        if not xs:
            return "no samples"
        return f"p50 {pct(xs, 50):6.3f}  p99 {pct(xs, 99):6.3f}  p99.9 {pct(xs, 99.9):6.3f}  max {max(xs):6.3f} ms"

    def gc_note(probe: str) -> str:
        rs = runs[probe]
        return (
            f"GC: {sum(r['gc'] for r in rs)} passes, longest {max(r['gc_max_ms'] for r in rs):.2f} ms, "
            f"{sum(r['gc_full'] for r in rs)} full (longest {max(r['gc_full_max_ms'] for r in rs):.2f} ms)"
        )

    held_cpu, held_wall = pooled("gap", "cpu"), pooled("gap")
    stall_p99 = pct(held_cpu, 99)
    stall_wall_p99 = pct(held_wall, 99)
    idle_p99 = pct(pooled("idle"), 99)
    print(f"loop stall while writing ({reps} runs each, samples pooled; a stall = a period the loop was held)")
    print(f"  queue pre-filled with {prefill:,} events, the writer drains it, {len(held_cpu):,} stalls:")
    print(f"    loop thread CPU per stall  {dist(held_cpu)}")
    print(f"    wall clock per stall       {dist(held_wall)}")
    print(
        f"    per run: drain {statistics.median(r['sec'] for r in runs['gap']):.3f} s, "
        f"{runs['gap'][0]['rotations']} rotations; {gc_note('gap')}"
    )
    print(f"    call_later(1 ms) lateness  {dist(pooled('timer'))}  ({len(pooled('timer')):,} ticks)")
    print(f"    same, idle loop            {dist(pooled('idle'))}  (timer granularity + the machine's noise)")
    print(f"  during case (c) itself ({n:,} events; the producer's 1,000-emit chunks and GC included, informative):")
    print(f"    loop thread CPU per stall  {dist(pooled('burst', 'cpu'))}")
    print(f"    wall clock per stall       {dist(pooled('burst'))}")
    print(f"    {gc_note('burst')}: a pass over a full queue walks ~{qsize:,} tracked record tuples")
    print()

    # -- peak RSS ---------------------------------------------------------------------------------
    base = run_subcase("rss-baseline", n, qsize)
    fill = run_subcase("rss-fill", n, qsize)
    rc1 = run_subcase("rss-c", n, qsize)
    rc2 = run_subcase("rss-c", 2 * n, qsize)
    b_mb = base["maxrss"] / MIB
    fill_d = (fill["maxrss"] - base["maxrss"]) / MIB
    per_event = (fill["maxrss"] - base["maxrss"]) / max(1, fill["queued"])
    c1_d = (rc1["maxrss"] - base["maxrss"]) / MIB
    c2_d = (rc2["maxrss"] - base["maxrss"]) / MIB
    bounded = max(c1_d, c2_d) <= fill_d + 16 and abs(c2_d - c1_d) <= 16
    print("peak RSS (VmHWM of a child process per case)")
    print(f"  baseline (imports, pools, an idle uvloop)        {b_mb:7.1f} MiB")
    print(
        f"  queue full: {fill['queued']:,} events queued, none written   {fill['maxrss'] / MIB:7.1f} MiB  "
        f"(+{fill_d:.1f} MiB, {per_event:.0f} B per queued event)"
    )
    print(
        f"  case (c), {n:>9,} events end to end           {rc1['maxrss'] / MIB:7.1f} MiB  (+{c1_d:.1f} MiB, "
        f"dropped {rc1['dropped']})"
    )
    print(
        f"  case (c), {2 * n:>9,} events end to end           {rc2['maxrss'] / MIB:7.1f} MiB  (+{c2_d:.1f} MiB, "
        f"dropped {rc2['dropped']})"
    )
    print(
        f"  unbounded, {2 * n:,} events would need about +{2 * n * per_event / MIB:.0f} MiB; "
        f"bounded = the same peak for N and 2N, within the full queue's +{fill_d:.0f} MiB (+16 MiB slack)"
    )
    print()

    # -- summary ----------------------------------------------------------------------------------
    rows = [
        ("throughput c/a", ">= 10x", f"{eps['c'] / eps['a']:.2f}x", eps["c"] / eps["a"] >= TARGETS["c/a"]),
        ("throughput c/b", ">= 0.5x", f"{eps['c'] / eps['b']:.2f}x", eps["c"] / eps["b"] >= TARGETS["c/b"]),
        ("emit median (net of loop)", "<= 1 us", f"{em['net_med'] / 1000:.3f} us", em["net_med"] / 1000 <= 1.0),
        ("emit median (incl. loop)", "<= 1 us", f"{em['gross_med'] / 1000:.3f} us", em["gross_med"] / 1000 <= 1.0),
        ("loop stall p99 (loop CPU)", "<= 2 ms", f"{stall_p99:.3f} ms", stall_p99 <= TARGETS["stall_p99_ms"]),
        (
            "loop stall p99 (wall)",
            "<= 2 ms",
            f"{stall_wall_p99:.3f} ms",
            stall_wall_p99 <= TARGETS["stall_p99_ms"],
        ),
        ("peak RSS bounded by queue", f"<= +{fill_d + 16:.0f} MiB", f"+{c1_d:.0f} / +{c2_d:.0f} MiB", bounded),
        ("(c), (c') dropped events", "0", str(c_dropped), c_dropped == 0),
        ("(c) lines verified, rotations", "ok, >= 1", f"{'ok' if c_ok else 'FAILED'}, {c_rot}", c_ok and c_rot > 0),
        ("same envelope keys a/b/c", "yes", "yes" if same_keys else "no", same_keys),
    ]
    print("summary")
    print(f"  {'target':<30} {'wanted':>14} {'measured':>16}  result")
    for name, want, got, ok in rows:
        print(f"  {name:<30} {want:>14} {got:>16}  {'PASS' if ok else '*** FAIL ***'}")
    print(
        f"  (the wall-clock stall includes the moments the OS ran other processes: idle-loop timer lateness p99 here "
        f"was {idle_p99:.3f} ms, load average now {os.getloadavg()[0]:.2f})"
    )
    failed = [r[0] for r in rows if not r[3]]
    print(f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    print(f"  {len(rows) - len(failed)}/{len(rows)} PASS" + (f"; FAIL: {', '.join(failed)}" if failed else ""))
    print(f"  total bench time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
