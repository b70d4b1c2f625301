"""Heartbeat round trip and stop time (SPEC §3; the heartbeat issue's numbers).

Run:  .venv/bin/python bench/heartbeat_bench.py [--heartbeats N] [--interval SEC] [--load-rate R]

Cases, all in the same run, on loopback, every party in its own process:

  raw floor      plain pyzmq (blocking sockets, no asyncio, no JSON work): the bench PUBs the two-frame message
                 swimmy sends ([b"HEARTBEAT", ~200 bytes of JSON]), an echo process SUBs it and PUSHes a one-frame
                 body back to the bench's PULL (the shape of a peer's ack); N back-to-back round trips timed with
                 perf_counter_ns, three times: the two processes pinned to two different CPUs (THE FLOOR: the
                 placement an idle machine gives the daemon and its peer), pinned to one CPU, and unpinned
                 (which flips between the two when other work occupies a CPU). Then N/2 unpinned round trips
                 paced at the heartbeat interval, so both sides sleep between messages as swimmy's do.
  swimmy idle    `python -m swimmy run` with [heartbeat] interval_sec = INTERVAL, acked by a separate
                 `python -m swimmy peer` process; RTT = data.rtt_ms of the daemon's own `heartbeat.recv` events
                 (measured in the daemon, from just before it builds and PUB-sends a heartbeat to the handling of
                 the ack), read from the telemetry file as it grows, after a warm-up of 500 acks.
  daemon + pyzmq the same daemon acked by a minimal blocking-pyzmq peer (N/2 samples): the daemon's share of
                 the round trip without the swimmy peer's (informative).
  swimmy loaded  the daemon and the swimmy peer while `debug.load` (control channel) makes the daemon emit R
                 events/s into its telemetry writer; samples once the load has run 0.5 s, while it still runs.
                 The achieved rate is reported by the events' own timestamps and as lines reaching the file
                 per wall-clock second (with drops and the writer's lag).
  stop           a fresh daemon ([zmq] sndhwm = 10) and a SUB process that never reads (RCVHWM 10, SO_RCVBUF
                 4 KiB). The daemon publishes every 0.1 ms until its TCP send queue to the SUB stops growing
                 (at 1 ms the kernel's autotuned send buffer, up to 4 MiB, takes ~20 s to fill), is reloaded
                 (SIGHUP) to 1 ms, the SUB is killed (SIGKILL: the kernel resets the connection) or frozen
                 (SIGSTOP: the connection stays open with every buffer full, like a host that vanished), and
                 the time from SIGTERM to the daemon's exit is measured, median of 3 each.

Every case reports the CPU the bench's processes and everything else on the machine used meanwhile: on a
small shared machine, the tails mostly measure waiting for a CPU.
The daemon runs with [telemetry] fsync = "off" (the file's durability is not what is measured here).
The final table prints PASS/FAIL per target; the script exits 0 either way: it is a report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import zmq
from benchkit import note

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from helpers import write_config  # type: ignore[import-not-found]  # noqa: E402  (tests/helpers.py)

from swimmy.config import load_config  # noqa: E402
from swimmy.daemon.control import ControlUnavailableError, request  # noqa: E402
from swimmy.wire.security import uses_curve  # noqa: E402
from swimmy.wire.zmq import Wire  # noqa: E402

TARGETS = {"idle_p99_ms": 2.0, "load_p99_ms": 5.0, "p50_vs_floor": 3.0, "stop_sec": 1.0}
WARMUP_SAMPLES = 500  # idle: acked heartbeats skipped after the peer connects
LOAD_WARMUP_SEC = 0.5  # loaded: samples are taken once the load has run this long (by its own events)
STOP_REPS = 3
TOPIC = b"HEARTBEAT"
RECV = b'"event_type":"heartbeat.recv"'
SENT = b'"event_type":"heartbeat.sent"'
LOAD = b'"event_type":"debug.load"'
DROPPED = b'"event_type":"telemetry.dropped"'


# ---------------------------------------------------------------------------------------------
# small helpers


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "p999": pct(values, 99.9), "max": max(values) if values else float("nan"),
            "mean": statistics.fmean(values) if values else float("nan")}


def parse_ts(raw: str) -> float:
    return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()


class Procs:
    """Every subprocess the bench starts; `cleanup` kills whatever is still running (also stopped ones)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list[Any] = []

    def log_file(self, path: Path) -> Any:
        """A file for a child's output, closed by cleanup()."""
        f = open(path, "wb")  # noqa: SIM115 - closed in cleanup()
        self.files.append(f)
        return f

    def start(self, argv: list[str], *, cwd: Path | None = None, stdout: Any = subprocess.DEVNULL,
              stderr: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # SIGKILL also ends a SIGSTOPped process
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs.clear()
        for f in self.files:
            f.close()
        self.files.clear()


class CpuMeter:
    """How busy the machine was during a case: all CPUs (/proc/stat) and the bench's own processes."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, pids: list[int], *, reaped_children: bool = False) -> None:
        """`pids`: children alive until read(); `reaped_children`: count children waited for before read()."""
        self.pids = [os.getpid(), *pids]
        self.reaped_children = reaped_children
        self.t0 = time.monotonic()
        self.busy0, self.steal0 = self._machine()
        self.ours0 = self._ours()

    @staticmethod
    def _machine() -> tuple[int, int]:
        try:
            f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except OSError:
            return 0, 0
        user, nice, system, _idle, _iowait, irq, softirq, steal = (f + [0] * 8)[:8]
        return user + nice + system + irq + softirq, steal

    def _ours(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (every thread of the process)
        if self.reaped_children:
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            total += round((children.ru_utime + children.ru_stime) * self.TICK)
        return total

    def read(self) -> dict[str, float]:
        """Cores busy since construction: machine, ours, others, steal (call while the pids are alive)."""
        wall = max(1e-9, time.monotonic() - self.t0)
        busy, steal = self._machine()
        machine = (busy - self.busy0) / self.TICK / wall
        ours = (self._ours() - self.ours0) / self.TICK / wall
        return {"machine": machine, "ours": ours, "others": max(0.0, machine - ours),
                "steal": (steal - self.steal0) / self.TICK / wall}


def child_argv(role: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--role", role, *args]


def heartbeat_like(seq: int) -> bytes:
    """A body the size and shape of the daemon's HEARTBEAT."""
    return orjson.dumps({
        "v": 1, "type": "HEARTBEAT", "id": str(uuid.uuid4()), "seq": seq, "source": "school", "status": "OK",
        "sent_at": "2026-01-01T00:00:00.000Z", "version": "0.1.0", "config_hash": "0123456789ab",
    })


def ack_like(body: bytes) -> bytes:
    """A one-frame reply the size of a peer's ack, carrying the ping's seq so stale replies are recognised."""
    return body + b" " * 40


# ---------------------------------------------------------------------------------------------
# child roles


def role_raw_echo(sub_ep: str, push_ep: str, cpu: str = "") -> None:
    """The raw floor's peer: SUB -> PUSH, blocking pyzmq, no parsing; pinned to `cpu` when given."""
    if cpu:
        os.sched_setaffinity(0, {int(cpu)})  # before the context: its I/O thread inherits the mask
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(sub_ep)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(push_ep)
    while True:
        frames = sub.recv_multipart()
        if frames[1] == b"STOP":
            break
        push.send(ack_like(frames[1]))
    sub.close()
    push.close()
    ctx.term()


def role_stuck_sub(sub_ep: str) -> None:
    """Subscribes to the daemon's heartbeats and never reads one."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 10)
    sub.setsockopt(zmq.RCVBUF, 4096)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
    sub.connect(sub_ep)
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def role_raw_peer(sub_ep: str, push_ep: str) -> None:
    """A minimal heartbeat peer in blocking pyzmq: parse, ack with `ack_of` (the swimmy peer minus asyncio)."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
    sub.connect(sub_ep)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(push_ep)
    while True:
        frames = sub.recv_multipart()
        hb = orjson.loads(frames[1])
        push.send(orjson.dumps({"v": 1, "type": "HEARTBEAT", "source": "bench-raw-peer", "status": "OK",
                                "id": str(uuid.uuid4()), "ack_of": hb.get("id")}))


# ---------------------------------------------------------------------------------------------
# raw floor


def floor_cpus() -> tuple[int, int] | None:
    """Two CPUs this process may run on, for the pinned floors (None on a one-CPU machine)."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def raw_floor(procs: Procs, n: int, interval: float, placement: str, *, paced: bool = False) -> dict[str, Any]:
    """n round trips bench PUB -> echo SUB, echo PUSH -> bench PULL; `placement`: free, same (one CPU), cross.

    Pinned placements pin the bench's main thread (so the I/O thread of the context made here too) and the
    echo process before their zmq contexts exist; the bench's main thread is unpinned again afterwards.
    """
    cpus = floor_cpus()
    allowed = os.sched_getaffinity(0)
    echo_cpu = ""
    try:
        if placement != "free" and cpus is not None:
            os.sched_setaffinity(0, {cpus[0]})
            echo_cpu = str(cpus[0] if placement == "same" else cpus[1])
        result = _raw_round_trips(procs, n, interval, echo_cpu, paced)
    finally:
        os.sched_setaffinity(0, allowed)
    result["pinned"] = bool(echo_cpu)
    return result


def _raw_round_trips(procs: Procs, n: int, interval: float, echo_cpu: str, paced: bool) -> dict[str, Any]:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pull = ctx.socket(zmq.PULL)
    for sock in (pub, pull):
        sock.setsockopt(zmq.LINGER, 0)
    pub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    pull_port = pull.bind_to_random_port("tcp://127.0.0.1")
    echo = procs.start(child_argv("raw-echo", f"tcp://127.0.0.1:{pub_port}", f"tcp://127.0.0.1:{pull_port}",
                                  echo_cpu))
    bodies = [heartbeat_like(i) for i in range(n + 200)]
    try:
        # slow joiner: ping until the subscription is through, then drain stray replies
        deadline = time.monotonic() + 10
        while not pull.poll(50):
            if time.monotonic() > deadline:
                raise RuntimeError("the raw echo process never answered")
            pub.send_multipart([TOPIC, b"{}"])
        while pull.poll(100):
            pull.recv()
        out: list[float] = []
        t = time.monotonic()
        meter = CpuMeter([echo.pid])
        for i, body in enumerate(bodies):  # the first 200 are warm-up
            if paced:
                time.sleep(interval)
            t0 = time.perf_counter_ns()
            pub.send_multipart([TOPIC, body])
            while not pull.recv().startswith(body):
                pass  # a stale reply
            t1 = time.perf_counter_ns()
            if i >= 200:
                out.append((t1 - t0) / 1e6)
        cpu = meter.read()
        sec = time.monotonic() - t
        pub.send_multipart([TOPIC, b"STOP"])
        echo.wait(timeout=5)
    finally:
        pub.close()
        pull.close()
        ctx.term()
    return {"rtt": summary(out), "sec": sec, "cpu": cpu}


# ---------------------------------------------------------------------------------------------
# the telemetry file, read as it grows


class TelemetryTail:
    """Reads complete lines appended to the file; parses only heartbeat.recv lines, counts the rest.

    Classifies each acked heartbeat by how many debug.load events the file held before it (file order is
    seq order), so the loaded window is exactly "while the load was running".
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: Any = None
        self._ino: int | None = None
        self._rest = b""
        self.bytes_read = 0
        self.lines = 0
        self.sent = 0
        self.loads = 0
        self.first_load_ts: float | None = None
        self.last_load_ts: float | None = None
        self.dropped_events: list[dict[str, Any]] = []
        # (loads_before, sent_before, ts, rtt_ms or None, has_ack_of, source)
        self.recvs: list[tuple[int, int, float, float | None, bool, str]] = []

    def poll(self) -> None:
        if self._f is None:
            if not self.path.exists():
                return
            self._f = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
            self._ino = os.fstat(self._f.fileno()).st_ino
        while True:
            chunk = self._f.read(16 * 1024 * 1024)
            if chunk:
                self._feed(chunk)
                continue
            try:
                ino = os.stat(self.path).st_ino
            except FileNotFoundError:
                return
            if ino != self._ino:  # rotated: the old file is drained, go on with the new one
                self._f.close()
                self._f = open(self.path, "rb")  # noqa: SIM115
                self._ino = os.fstat(self._f.fileno()).st_ino
                continue
            return

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def _feed(self, chunk: bytes) -> None:
        self.bytes_read += len(chunk)
        buf = self._rest + chunk
        end = buf.rfind(b"\n") + 1
        buf, self._rest = buf[:end], buf[end:]
        if not buf:
            return
        self.lines += buf.count(b"\n")
        first = buf.find(LOAD)
        if first >= 0:
            if self.first_load_ts is None:
                self.first_load_ts = self._ts_of_line(buf, first)
            self.last_load_ts = self._ts_of_line(buf, buf.rfind(LOAD))
        pos = 0
        while (p := buf.find(RECV, pos)) >= 0:
            self.loads += buf.count(LOAD, pos, p)
            self.sent += buf.count(SENT, pos, p)
            start = buf.rfind(b"\n", 0, p) + 1
            stop = buf.find(b"\n", p)
            ev = orjson.loads(buf[start:stop])
            data = ev.get("data") or {}
            rtt = data.get("rtt_ms")
            self.recvs.append((self.loads, self.sent, parse_ts(ev["timestamp"]),
                               float(rtt) if rtt is not None else None, "ack_of" in data, str(data.get("source"))))
            pos = stop + 1
        self.loads += buf.count(LOAD, pos)
        self.sent += buf.count(SENT, pos)
        pos = 0
        while (p := buf.find(DROPPED, pos)) >= 0:
            start = buf.rfind(b"\n", 0, p) + 1
            stop = buf.find(b"\n", p)
            self.dropped_events.append(orjson.loads(buf[start:stop]))
            pos = stop + 1

    @staticmethod
    def _ts_of_line(buf: bytes, p: int) -> float:
        start = buf.rfind(b"\n", 0, p) + 1
        stop = buf.find(b"\n", p)
        return parse_ts(orjson.loads(buf[start:stop])["timestamp"])

    def stop_events(self) -> tuple[float | None, float | None, bool]:
        """daemon.stopping / daemon.stopped timestamps and whether a config.reloaded happened (small files only)."""
        stopping = stopped = None
        reloaded = False
        for line in self.path.read_bytes().splitlines():
            if b'"event_type":"daemon.stopp' in line:
                ev = orjson.loads(line)
                if ev["event_type"] == "daemon.stopping":
                    stopping = parse_ts(ev["timestamp"])
                elif ev["event_type"] == "daemon.stopped":
                    stopped = parse_ts(ev["timestamp"])
            elif b'"event_type":"config.reloaded"' in line:
                reloaded = True
        return stopping, stopped, reloaded


# ---------------------------------------------------------------------------------------------
# the daemon


def start_daemon(procs: Procs, workdir: Path, sections: dict[str, dict[str, Any]]) -> tuple[Any, Path, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = write_config(workdir, sections)
    err = procs.log_file(workdir / "daemon.stderr")
    proc = procs.start([sys.executable, "-m", "swimmy", "run", "--config", str(cfg_path)], cwd=workdir,
                       stderr=err, stdout=err)
    cfg = load_config(cfg_path)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}: {daemon_stderr(workdir)}")
        try:
            reply = asyncio.run(control(cfg, "ping", {}, timeout_sec=1.0))
            if reply.get("ok"):
                break
        except ControlUnavailableError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"daemon did not answer ping: {daemon_stderr(workdir)}")
    return proc, cfg_path, cfg


def daemon_stderr(workdir: Path, name: str = "daemon.stderr") -> str:
    try:
        return (workdir / name).read_text(errors="replace")[-2000:]
    except OSError:
        return ""


async def control(cfg: Any, command: str, args: dict[str, Any], *, timeout_sec: float) -> dict[str, Any]:
    curve = uses_curve(cfg.zmq, cfg.control.endpoint)
    wire = Wire(cfg.zmq, None)
    try:
        return await request(wire, cfg.control.endpoint, command, args, timeout_sec=timeout_sec, curve=curve)
    finally:
        wire.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> tuple[float, bool]:
    """SIGTERM, wait; (seconds to exit, exited by itself). Kills it after `timeout`."""
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        return time.perf_counter() - t0, True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return time.perf_counter() - t0, False


Record = tuple[int, int, float, "float | None", bool, str]


def rtt_stats(samples: list[Record]) -> dict[str, Any]:
    """RTT summary of acked heartbeats, how many acks came too late to match, and the send cadence."""
    rtts = [r[3] for r in samples if r[3] is not None]
    span = samples[-1][2] - samples[0][2] if len(samples) > 1 else float("nan")
    sent = samples[-1][1] - samples[0][1] if samples else 0
    return {"rtt": summary(rtts), "unmatched": sum(1 for r in samples if r[3] is None), "span_sec": span,
            "sent": sent, "every_ms": 1000 * span / sent if sent else float("nan")}


def collect(tail: TelemetryTail, source: str, skip: int, n: int, timeout: float, alive: Callable[[], None],
            keep: Callable[[Record], bool] = lambda r: True) -> list[Record]:
    """Acks from `source` appended from now on: skip the first `skip`, return the next n (or what came in time)."""
    tail.poll()
    index = len(tail.recvs)
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(0.1)
        tail.poll()
        acked = [r for r in tail.recvs[index:] if r[4] and r[5] == source and keep(r)]
        if len(acked) >= skip + n or time.monotonic() > deadline:
            return acked[skip:skip + n]
        alive()


def swimmy_rtt(procs: Procs, root: Path, n: int, interval: float, load_rate: int) -> dict[str, Any]:
    workdir = root / "rtt"
    sections: dict[str, dict[str, Any]] = {
        "heartbeat": {"interval_sec": interval},
        "debug": {"enabled": True},
        "telemetry": {"fsync": "off", "queue_size": 1_000_000, "max_bytes": 8 * 1024**3, "backups": 2},
    }
    daemon, cfg_path, cfg = start_daemon(procs, workdir, sections)
    tail = TelemetryTail(workdir / "var" / "telemetry.jsonl")
    peer_argv = [sys.executable, "-m", "swimmy", "peer", "--config", str(cfg_path), "--source", "bench-peer"]
    out: dict[str, Any] = {}
    peer: subprocess.Popen[bytes] | None = None

    def alive() -> None:
        if daemon.poll() is not None or (peer is not None and peer.poll() is not None):
            raise RuntimeError(f"the daemon or the peer exited early; daemon: {daemon_stderr(workdir)}; "
                               f"peer: {daemon_stderr(workdir, 'peer.stderr')}")

    def stop_peer() -> None:
        if peer is not None and peer.poll() is None:
            peer.kill()
            peer.wait()

    try:
        # -- idle, the swimmy peer (`python -m swimmy peer`, stdout to /dev/null) -------------------------------
        peer = procs.start(peer_argv, cwd=workdir, stderr=procs.log_file(workdir / "peer.stderr"))
        timeout = max(60.0, 8 * (n + WARMUP_SAMPLES) * interval)
        meter = CpuMeter([daemon.pid, peer.pid])
        out["idle"] = rtt_stats(collect(tail, "bench-peer", WARMUP_SAMPLES, n, timeout, alive))
        out["idle"]["cpu"] = meter.read()
        note(f"swimmy idle: {out['idle']['rtt']['n']} samples over {out['idle']['span_sec']:.1f} s")

        # -- idle, a minimal blocking-pyzmq peer: the daemon's share without the swimmy peer's --------------------
        stop_peer()
        peer = procs.start(child_argv("raw-peer", cfg.zmq.pub_endpoint, cfg.zmq.pull_endpoint))
        meter = CpuMeter([daemon.pid, peer.pid])
        out["rawpeer"] = rtt_stats(collect(tail, "bench-raw-peer", WARMUP_SAMPLES, max(1, n // 2), timeout, alive))
        out["rawpeer"]["cpu"] = meter.read()
        note(f"swimmy daemon + pyzmq peer: {out['rawpeer']['rtt']['n']} samples")
        stop_peer()

        # -- loaded: the swimmy peer again, while debug.load runs ---------------------------------------------
        peer = procs.start(peer_argv, cwd=workdir, stderr=procs.log_file(workdir / "peer.stderr"))
        collect(tail, "bench-peer", 0, 200, 20.0, alive)  # connected and acking
        idle_rate = 1000 / out["idle"]["every_ms"] if out["idle"]["every_ms"] == out["idle"]["every_ms"] else 500
        load_sec = min(90.0, 3.0 + 3.0 * n / idle_rate)
        out["load_requested"] = {"rate": load_rate, "seconds": round(load_sec, 1)}
        meter = CpuMeter([daemon.pid, peer.pid])
        out.update(asyncio.run(_loaded(cfg, tail, n, load_rate, load_sec, alive)))
        out["loaded"]["cpu"] = meter.read()
        note(f"swimmy loaded: {out['loaded']['rtt']['n']} samples")
    finally:
        stop_peer()
        if daemon.poll() is None:  # the loaded daemon has a queue to drain; its stop time is informative only
            drain_sec, clean = stop_process(daemon, timeout=30)
            out["loaded_stop_sec"] = drain_sec
            out["loaded_stop_clean"] = clean
        tail.poll()
        tail.close()
        out["dropped_total"] = sum(int((e.get("data") or {}).get("dropped", 0)) for e in tail.dropped_events)
        out["file_bytes"] = tail.bytes_read
    return out


async def _loaded(cfg: Any, tail: TelemetryTail, n: int, rate: int, seconds: float,
                  alive: Callable[[], None]) -> dict[str, Any]:
    """Start debug.load; collect n acked heartbeats sampled while it runs (after LOAD_WARMUP_SEC of it)."""
    loop = asyncio.get_running_loop()
    curve = uses_curve(cfg.zmq, cfg.control.endpoint)
    wire = Wire(cfg.zmq, None)
    tail.poll()
    recv_index, loads_at_start = len(tail.recvs), tail.loads
    load = asyncio.create_task(request(wire, cfg.control.endpoint, "debug.load", {"rate": rate, "seconds": seconds},
                                       timeout_sec=seconds + 60, curve=curve))
    t_start = loop.time()
    first_seen: float | None = None
    loads_at_first = 0
    samples: list[Record] = []
    result: dict[str, Any] = {}
    try:
        while True:
            await asyncio.sleep(0.1)
            tail.poll()
            alive()
            now = loop.time()
            if tail.first_load_ts is None:
                if now - t_start > 10:
                    raise RuntimeError("no debug.load event reached the telemetry file within 10 s")
                continue
            if first_seen is None:
                first_seen, loads_at_first = now, tail.loads
            warm_ts = tail.first_load_ts + LOAD_WARMUP_SEC
            samples = [r for r in tail.recvs[recv_index:]
                       if r[4] and r[5] == "bench-peer" and r[0] > loads_at_start and r[2] >= warm_ts]
            if len(samples) >= n or now - t_start > seconds + 5 or load.done():
                break
        assert first_seen is not None
        wall = loop.time() - first_seen
        loads_read = tail.loads - loads_at_first
        if load.done() and not load.cancelled() and load.exception() is None:
            result["load_reply"] = load.result().get("result")
    finally:
        load.cancel()
        await asyncio.gather(load, return_exceptions=True)
        wire.close()
    total_loads = tail.loads
    samples = [r for r in samples[:n] if r[0] < total_loads]  # a load event follows: the load was still running
    emitted_span = (tail.last_load_ts or 0) - (tail.first_load_ts or 0)
    result.update({
        "loaded": rtt_stats(samples),
        "load_events": tail.loads - loads_at_start,
        "load_rate_by_ts": (tail.loads - loads_at_start - 1) / emitted_span if emitted_span > 0 else float("nan"),
        "load_rate_written": loads_read / wall if wall > 0 else float("nan"),
        "writer_lag_sec": time.time() - tail.last_load_ts if tail.last_load_ts else float("nan"),
    })
    return result


# ---------------------------------------------------------------------------------------------
# stop with a peer gone


def tcp_send_queue(port: int) -> int:
    """Bytes in the kernel send queue of established loopback connections whose local port is `port`."""
    total = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, queues = parts[1], parts[3], parts[4]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                total += int(queues.split(":")[0], 16)
    return total


FILL_INTERVAL = 0.0001  # the daemon publishes this fast until the SUB's buffers are full ...
STOP_INTERVAL = 0.001  # ... and is back at this interval (SIGHUP reload) when it is stopped


def stop_case(procs: Procs, root: Path, rep: int, how: str) -> dict[str, Any]:
    """Fill the daemon's queue to a SUB that never reads, make the SUB go away, time SIGTERM -> exit."""
    workdir = root / f"stop-{how}-{rep}"
    sections: dict[str, dict[str, Any]] = {
        "heartbeat": {"interval_sec": FILL_INTERVAL}, "zmq": {"sndhwm": 10}, "telemetry": {"fsync": "off"},
    }
    daemon, cfg_path, cfg = start_daemon(procs, workdir, sections)
    port = int(cfg.zmq.pub_endpoint.rsplit(":", 1)[1])
    sub = procs.start(child_argv("stuck-sub", cfg.zmq.pub_endpoint), stdout=subprocess.PIPE)
    try:
        assert sub.stdout is not None
        sub.stdout.readline()
        # full: the daemon's TCP send queue to the SUB has stopped growing (the kernel takes no more, so
        # libzmq's pipe is at SNDHWM and the PUB drops)
        t0 = time.monotonic()
        last, stable_since, full = -1, t0, False
        while time.monotonic() - t0 < 15:
            time.sleep(0.05)
            q = tcp_send_queue(port)
            if q != last:
                last, stable_since = q, time.monotonic()
            elif q > 0 and time.monotonic() - stable_since > 0.3:
                full = True
                break
        fill_sec = time.monotonic() - t0
        text = cfg_path.read_text()
        cfg_path.write_text(text.replace(f"interval_sec = {FILL_INTERVAL!r}", f"interval_sec = {STOP_INTERVAL!r}"))
        daemon.send_signal(signal.SIGHUP)
        if how == "killed":
            sub.kill()
            sub.wait()
        else:
            sub.send_signal(signal.SIGSTOP)
        time.sleep(0.3)
        sec, clean = stop_process(daemon, timeout=20)
        stopping, stopped, reloaded = TelemetryTail(workdir / "var" / "telemetry.jsonl").stop_events()
        in_daemon = stopped - stopping if stopping is not None and stopped is not None else float("nan")
        return {"sec": sec, "clean": clean, "code": daemon.returncode, "sendq": last, "full": full,
                "fill_sec": fill_sec, "in_daemon": in_daemon, "reloaded": reloaded}
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


# ---------------------------------------------------------------------------------------------
# report


def fmt(v: float) -> str:
    return "n/a" if v != v else f"{v:.3f}"


def row(name: str, s: dict[str, float], cpu: dict[str, float] | None = None) -> str:
    line = (f"  {name:<34} {s['n']:>7} {fmt(s['p50']):>7} {fmt(s['p90']):>7} {fmt(s['p99']):>7} "
            f"{fmt(s['p999']):>7} {fmt(s['max']):>8}")
    if cpu is not None:
        line += f"   {cpu['ours']:.2f} + {cpu['others']:.2f}"
    return line


def machine_info(root: Path) -> list[str]:
    fs = "?"
    try:
        best = ""
        for line in Path("/proc/mounts").read_text().splitlines():
            _dev, mnt, kind, *_ = line.split()
            if str(root).startswith(mnt) and len(mnt) > len(best):
                best, fs = mnt, f"{kind} at {mnt}"
    except OSError:
        pass
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"  cpus: {os.cpu_count()} ({cpu})",
        f"  python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}",
        f"  pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, uvloop {version('uvloop')}, "
        f"orjson {version('orjson')}",
        f"  temp dir {root} on {fs}",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heartbeats", type=int, default=10_000, help="RTT samples per case (default 10,000)")
    ap.add_argument("--interval", type=float, default=0.001, help="[heartbeat] interval_sec (default 0.001)")
    ap.add_argument("--load-rate", type=int, default=100_000, help="debug.load events/s (default 100,000)")
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    roles: dict[str, Callable[..., None]] = {"raw-echo": role_raw_echo, "stuck-sub": role_stuck_sub,
                                              "raw-peer": role_raw_peer}
    if args.role is not None:
        roles[args.role](*args.rest)
        return 0

    if args.heartbeats < 1 or args.interval <= 0 or args.load_rate < 1:
        ap.error("--heartbeats, --interval and --load-rate must be > 0")
    n = args.heartbeats
    root = Path(tempfile.mkdtemp(prefix="swimmy-hb-bench-"))
    procs = Procs()
    t_all = time.monotonic()
    info = machine_info(root)
    load_start = os.getloadavg()[0]
    whole = CpuMeter([], reaped_children=True)
    try:
        raw: dict[str, dict[str, Any]] = {}
        for placement in ("cross", "same", "free"):
            note(f"raw pyzmq floor, back-to-back, placement {placement}")
            raw[placement] = raw_floor(procs, n, args.interval, placement)
        note(f"raw pyzmq, paced {args.interval * 1000:g} ms")
        raw["paced"] = raw_floor(procs, max(1, n // 2), args.interval, "free", paced=True)
        note("swimmy daemon + peer")
        sw = swimmy_rtt(procs, root, n, args.interval, args.load_rate)
        stops: dict[str, list[dict[str, Any]]] = {"killed": [], "frozen": []}
        for rep in range(STOP_REPS):
            for how in ("killed", "frozen"):
                note(f"stop with the peer {how} ({rep + 1}/{STOP_REPS})")
                stops[how].append(stop_case(procs, root, rep, how))
    finally:
        procs.cleanup()  # kills whatever still runs (on an error too), then the temp dir goes
        shutil.rmtree(root, ignore_errors=True)
    total = time.monotonic() - t_all
    machine = whole.read()

    p = print
    p()
    p("swimmy heartbeat benchmark (SPEC §3): daemon -> peer -> daemon round trip on loopback")
    p("=" * 104)
    p("machine")
    for line in info:
        p(line)
    p(f"  loadavg {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end; CPU over the run: the bench's processes "
      f"{machine['ours']:.2f} cores, other work {machine['others']:.2f} (all CPUs busy {machine['machine']:.2f} by "
      f"/proc/stat, steal {machine['steal']:.2f})")
    p(f"  heartbeats per case {n:,}; [heartbeat] interval_sec = {args.interval:g}; "
      f"[telemetry] fsync = \"off\", queue_size 1,000,000, no rotation during the run")
    p()
    p("round trip, ms                          samples     p50     p90     p99   p99.9      max   cores: bench + other")
    p(row("raw pyzmq, back-to-back, 2 CPUs", raw["cross"]["rtt"], raw["cross"]["cpu"]) + "  <- the floor")
    p(row("raw pyzmq, back-to-back, 1 CPU", raw["same"]["rtt"], raw["same"]["cpu"]))
    p(row("raw pyzmq, back-to-back, unpinned", raw["free"]["rtt"], raw["free"]["cpu"]))
    p(row(f"raw pyzmq, paced {args.interval * 1000:g} ms, unpinned", raw["paced"]["rtt"], raw["paced"]["cpu"]))
    p(row("swimmy daemon + swimmy peer, idle", sw["idle"]["rtt"], sw["idle"]["cpu"]))
    p(row("swimmy daemon + pyzmq peer, idle", sw["rawpeer"]["rtt"], sw["rawpeer"]["cpu"]))
    p(row(f"swimmy + swimmy peer, {args.load_rate // 1000:,}k ev/s", sw["loaded"]["rtt"], sw["loaded"]["cpu"]))
    p("  cores: CPU used during the case by the bench's own processes + by everything else on the machine.")
    p("  2 CPUs / 1 CPU: the bench and the echo process pinned to two different CPUs / to the same one. The floor")
    p("  is the 2-CPU one: the placement an idle machine gives the daemon and its peer. Unpinned, the raw pair")
    p("  lands on one CPU whenever other work keeps the other one busy, and hands off twice as fast there.")
    p()
    floor = raw["cross"]["rtt"]["p50"]
    idle, rawpeer, loaded = sw["idle"], sw["rawpeer"], sw["loaded"]
    p(f"  swimmy idle p50 / floor p50:   {idle['rtt']['p50'] / floor:.2f}x   (/ 1-CPU floor: "
      f"{idle['rtt']['p50'] / raw['same']['rtt']['p50']:.2f}x, / unpinned: "
      f"{idle['rtt']['p50'] / raw['free']['rtt']['p50']:.2f}x, / paced: "
      f"{idle['rtt']['p50'] / raw['paced']['rtt']['p50']:.2f}x; daemon + pyzmq peer / floor: "
      f"{rawpeer['rtt']['p50'] / floor:.2f}x)")
    p(f"  swimmy loaded p50 / floor p50: {loaded['rtt']['p50'] / floor:.2f}x")
    p(f"  raw: {n:,} round trips back-to-back in {raw['cross']['sec']:.2f} s (2 CPUs), paced: "
      f"{raw['paced']['rtt']['n']:,} in {raw['paced']['sec']:.2f} s"
      + ("" if raw["cross"]["pinned"] else "; NOTE: fewer than 2 CPUs, nothing was pinned"))
    for name, case in (("idle", idle), ("daemon + pyzmq peer", rawpeer), ("loaded", loaded)):
        p(f"  swimmy {name}: {case['rtt']['n']:,} acked heartbeats over {case['span_sec']:.2f} s; "
          f"{case['sent']:,} sent in that span (one every {case['every_ms']:.2f} ms for interval "
          f"{args.interval * 1000:g} ms); acks too late to match (> 256 heartbeats): {case['unmatched']}")
    p()
    p("telemetry load (debug.load via the control channel)")
    req = sw["load_requested"]
    p(f"  requested {req['rate']:,} events/s for up to {req['seconds']} s (the bench stops once it has its samples)")
    p(f"  debug.load events in the file: {sw['load_events']:,}; rate by their own timestamps "
      f"{sw['load_rate_by_ts']:,.0f}/s; lines reaching the file {sw['load_rate_written']:,.0f}/s (wall clock)")
    p(f"  writer behind by {sw['writer_lag_sec'] * 1000:.0f} ms when sampling ended; telemetry.dropped: "
      f"{sw['dropped_total']:,} events; telemetry file {sw['file_bytes'] / 1e6:,.0f} MB")
    if "load_reply" in sw:
        p(f"  debug.load finished before the samples were in: {sw['load_reply']}")
    if "loaded_stop_sec" in sw:
        p(f"  stopping that daemon mid-load (its queue drained): {sw['loaded_stop_sec']:.2f} s"
          f"{'' if sw['loaded_stop_clean'] else ' (did not exit in time: killed)'}")
    p()
    p(f"stop with the peer gone (SIGTERM -> process exit, median of {STOP_REPS}); [zmq] sndhwm = 10, linger_ms default")
    p(f"  the daemon published every {FILL_INTERVAL * 1000:g} ms until its TCP send queue to a SUB that never reads")
    p(f"  stopped growing, then was reloaded (SIGHUP) to {STOP_INTERVAL * 1000:g} ms; then the SUB went away, 0.3 s, "
      "SIGTERM")
    stop_med: dict[str, float] = {}
    for how, label in (("killed", "SUB killed (SIGKILL: kernel resets the connection)"),
                       ("frozen", "SUB frozen (SIGSTOP: connection open, every buffer full)")):
        runs = stops[how]
        stop_med[how] = statistics.median(r["sec"] for r in runs)
        p(f"  {label}")
        p(f"    median {stop_med[how]:.3f} s; runs " + ", ".join(f"{r['sec']:.3f}" for r in runs)
          + " s; daemon.stopping -> daemon.stopped " + ", ".join(fmt(r["in_daemon"]) for r in runs) + " s")
        p("    send queue before: " + ", ".join(
            f"{r['sendq'] / 1e6:.2f} MB ({'full' if r['full'] else 'still growing'} after {r['fill_sec']:.1f} s)"
            for r in runs)
          + ("" if all(r["reloaded"] for r in runs) else "; the SIGHUP reload did not happen in every run")
          + ("" if all(r["clean"] and r["code"] == 0 for r in runs)
             else f"; exit codes {[r['code'] for r in runs]}, exited by itself {[r['clean'] for r in runs]}"))
    p()
    checks: list[tuple[str, str, str, bool]] = [
        ("idle p99", f"<= {TARGETS['idle_p99_ms']:g} ms", f"{idle['rtt']['p99']:.3f} ms",
         idle["rtt"]["p99"] <= TARGETS["idle_p99_ms"]),
        ("loaded p99", f"<= {TARGETS['load_p99_ms']:g} ms", f"{loaded['rtt']['p99']:.3f} ms",
         loaded["rtt"]["p99"] <= TARGETS["load_p99_ms"]),
        ("idle p50 / floor p50", f"<= {TARGETS['p50_vs_floor']:g}x", f"{idle['rtt']['p50'] / floor:.2f}x",
         idle["rtt"]["p50"] / floor <= TARGETS["p50_vs_floor"]),
        ("stop, SUB killed (median)", f"< {TARGETS['stop_sec']:g} s", f"{stop_med['killed']:.3f} s",
         stop_med["killed"] < TARGETS["stop_sec"]),
        ("stop, SUB frozen (median)", f"< {TARGETS['stop_sec']:g} s", f"{stop_med['frozen']:.3f} s",
         stop_med["frozen"] < TARGETS["stop_sec"]),
    ]
    if loaded["rtt"]["n"] < n or idle["rtt"]["n"] < n:
        p(f"  note: fewer samples than asked (idle {idle['rtt']['n']}, loaded {loaded['rtt']['n']} of {n})")
    if machine["others"] > 0.2:
        p(f"  note: other work on this {os.cpu_count()}-CPU machine used {machine['others']:.2f} cores on average "
          "during the run: the tails (p99, max) include waiting for a CPU")
    p("targets")
    for name, target, got, ok in checks:
        p(f"  {name:<28} {target:>9}   {got:>10}   {'PASS' if ok else 'FAIL'}")
    p(f"\n  whole run {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
