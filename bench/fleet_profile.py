"""Where the fleet's time goes: the daemon and a worker, each measured alone (a helper of fleet_bench.py).

Run:  .venv/bin/python bench/fleet_profile.py [daemon-manual] [daemon-school] [worker] [micro] [--pyspy DIR]
      [--seconds S]

Not run by `make bench` (the name does not end in _bench.py): a tool for finding costs, each printed per
request in microseconds of CPU (CPU time, which other processes on a shared machine change far less
than wall time; every figure is the best of a few repetitions where that applies).

  daemon-manual  the real daemon (embedded = 0) with 2 fake workers in this process (DEALERs that send READY
                 and answer every BACKTEST at once with a canned BACKTEST_RESULT taken from a real run): a
                 queue of manual requests drained as fast as the daemon can hand them out; the daemon's CPU per
                 result is its whole cost per request (dispatch, parse, broker, telemetry event and write).
  daemon-school  the same fake workers answering the school's own IS requests (breed on, population_max
                 10^6): the daemon's CPU per trial (feed, breed, submit, broker, flush to SQLite, ledger).
  worker         one real `swimmy worker` fed by a fake broker (a ROUTER in this process keeping its credit
                 full): the worker's CPU per request split by thread (event loop, backtest thread, ZMQ I/O)
                 against run_backtest alone in this process.
  micro          in-process costs of the pieces: serve_request vs run_backtest, the asyncio -> thread ->
                 a zmq.asyncio vs a plain send/recv (the worker's loop is plain zmq), orjson, Path.resolve.
  --pyspy DIR    also sample the daemon / the worker with py-spy (raw collapsed stacks into DIR, and the
                 top frames printed as a share of samples; pip install py-spy into the venv first).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import zmq
from benchkit import note

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fleet_bench as fb

from swimmy.backtest.data import data_hash, load_bars
from swimmy.backtest.engine import run_backtest
from swimmy.backtest.worker import serve_request
from swimmy.config import load_config
from swimmy.wire.messages import (
    WORK_VERSION,
    backtest_body,
    encode_work,
    parse,
    parse_backtest_request,
)

UNIVERSE = f"{fb.SYMBOL}_{fb.TIMEFRAME}"


def canned_result(end_ts: int) -> dict[str, Any]:
    """A real IS result body (metrics, sketch) to answer with; request_id and names are replaced per answer."""
    root = Path(tempfile.mkdtemp(prefix="swimmy-fleet-prof-"))
    cfg = load_config(fb.write_toml(root / "c.toml", {"school": {"data_dir": str(fb.DATA)}}))
    shutil.rmtree(root, ignore_errors=True)
    spec = fb.strategy_set(1, fb.SEED)[0]
    h = data_hash(fb.DATA, fb.SYMBOL, fb.TIMEFRAME)
    msg = parse([encode_work(backtest_body(request_id="x", purpose="is", strategy=fb.wire(spec), start_ts=None,
                                           end_ts=end_ts, data_hash=h, costs={"spread_pips": 0.8,
                                                                                "slippage_pips": 0.2,
                                                                                "pip": 0.0001}))],
                1 << 20, version=WORK_VERSION)
    req = parse_backtest_request(msg)  # type: ignore[arg-type]
    return serve_request(req, cfg, "fake")  # type: ignore[arg-type]


class FakeFleet:
    """K fake workers (DEALERs in this process): READY, BUSY while holding, an instant canned answer."""

    def __init__(self, endpoint: str, k: int, template: dict[str, Any], credit: int = 2) -> None:
        self.ctx = zmq.Context()
        self.socks = []
        self.names = [f"fake{i + 1}" for i in range(k)]
        self.held: list[list[str]] = [[] for _ in range(k)]
        self.template = template
        self.credit = credit
        self.answered = 0
        h = data_hash(fb.DATA, fb.SYMBOL, fb.TIMEFRAME)
        self.ready = [orjson.dumps({"v": 2, "type": "READY", "worker": n, "credit": credit, "data": {UNIVERSE: h}})
                      for n in self.names]
        for _ in range(k):
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            self.socks.append(s)
        self.poller = zmq.Poller()
        for s in self.socks:
            self.poller.register(s, zmq.POLLIN)
        self._beat_at = 0.0
        for i, s in enumerate(self.socks):
            s.send(self.ready[i])

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self._beat_at < 0.4:
            return
        self._beat_at = now
        for i, s in enumerate(self.socks):
            if self.held[i]:
                s.send(orjson.dumps({"v": 2, "type": "BUSY", "worker": self.names[i], "request_id": self.held[i][0],
                                     "progress": 0.5}))
            else:
                s.send(self.ready[i])

    def run(self, seconds: float, answer: bool, stop_after: int | None = None) -> None:
        """Serve for `seconds` (or until `stop_after` answers): take requests; answer them at once when `answer`,
        else hold them (beating)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and (stop_after is None or self.answered < stop_after):
            self._beat()
            for s, _ in self.poller.poll(timeout=min(100, int(left * 1000) + 1)):
                i = self.socks.index(s)
                while True:
                    try:
                        raw = s.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    req = orjson.loads(raw)
                    if req.get("type") == "BACKTEST":
                        self.held[i].append(req["request_id"])
            if answer:
                for i, s in enumerate(self.socks):
                    while self.held[i]:
                        rid = self.held[i].pop(0)
                        body = {**self.template, "request_id": rid, "worker": self.names[i]}
                        s.send(encode_work({k: v for k, v in body.items() if k != "v"}))
                        self.answered += 1

    def close(self) -> None:
        for s in self.socks:
            s.close(0)
        self.ctx.term()


def pyspy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        note("py-spy is not installed in the venv: .venv/bin/pip install py-spy")
        return None
    return subprocess.Popen([str(exe), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "400", "--threads",
                             "--format", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


IDLE_LEAVES = ("Runner.run (asyncio/runners.py", "_worker (concurrent/futures/thread.py",
               "Condition.wait (threading.py", "_Runner._work (swimmy/backtest/worker.py")  # waiting: see below


def summarize_stacks(path: Path, thread_us: dict[str, float], top: int = 30) -> None:
    """Per thread: the share of its busy samples per function (inclusive and self), in microseconds per request.

    py-spy's own idle detection does not work in this VM, so a sample whose innermost frame is a wait (the event
    loop in epoll, an idle pool thread, a blocked queue get) counts as idle; `thread_us` is each thread's CPU per
    request (from /proc), which the busy samples share out.
    """
    if not path.exists():
        print(f"  (no py-spy output at {path})")
        return
    per_thread: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in path.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        frames = stack.split(";")
        per_thread[frames[0]].append((frames[1:], int(n_text)))
    for thread, samples in per_thread.items():
        tid = thread.split("(")[-1].split(")")[0]
        us_total = thread_us.get(tid)
        busy = [(f, n) for f, n in samples if f and not f[-1].startswith(IDLE_LEAVES)]
        total = sum(n for _, n in busy)
        if not total or not us_total:
            continue
        incl: collections.Counter[str] = collections.Counter()
        self_c: collections.Counter[str] = collections.Counter()
        for frames, n in busy:
            self_c[frames[-1]] += n
            seen = set()
            for frame in frames:
                name = frame.split(":")[0] + ")" if ":" in frame else frame
                if name not in seen:
                    seen.add(name)
                    incl[name] += n
        idle = sum(n for _, n in samples) - total
        print(f"  py-spy {thread}: {total} busy samples ({idle} idle), {us_total:.0f} us CPU per request")
        print("    -- inclusive")
        for name, v in incl.most_common(top):
            print(f"    {v / total:6.1%} {v / total * us_total:7.1f} us  {name[:110]}")
        print("    -- self")
        for name, v in self_c.most_common(top // 2):
            print(f"    {v / total:6.1%} {v / total * us_total:7.1f} us  {name[:110]}")


def daemon_manual(args: argparse.Namespace, end_ts: int, template: dict[str, Any]) -> None:
    root = Path(tempfile.mkdtemp(prefix="swimmy-fleet-prof-manual-"))
    d = fb.Daemon(root, fb.daemon_sections(root, 0))
    fleet = ctl = None
    try:
        d.wait_for(lambda: (root / "var" / "telemetry.jsonl").exists(), 30, "the daemon")
        time.sleep(1.0)
        fleet = FakeFleet(d.cfg.zmq.backtest_endpoint, 2, template)
        d.wait_workers(2)
        ctl = fb.Control(d.cfg.control.endpoint)
        specs = fb.strategy_set(1000, fb.SEED)
        m = 9500  # the broker holds at most 10,000
        bodies = [{"strategy": fb.wire(specs[i % len(specs)]), "start_ts": None, "end_ts": end_ts} for i in range(m)]
        # Hold while the queue fills (the fleet beats BUSY), then answer as fast as the daemon hands out.
        import threading

        holder = threading.Thread(target=fleet.run, args=(m / 2000 + 2, False))
        holder.start()
        ctl.submit_many(bodies)
        holder.join()
        pid = d.proc.pid
        c0, t0, th0 = fb.cpu_sec(pid), time.monotonic(), thread_cpu(pid)
        spy = pyspy(pid, 2, Path(args.pyspy) / "daemon-manual.raw") if args.pyspy else None
        a0 = fleet.answered
        fleet.run(60, True, stop_after=m - 50)
        cpu, wall, n = fb.cpu_sec(pid) - c0, time.monotonic() - t0, fleet.answered - a0
        by_tid = print_threads(th0, thread_cpu(pid), n)
        print(f"daemon-manual: {n} results in {wall:.2f}s = {n / wall:.0f}/s with instant fake workers; daemon CPU "
              f"{cpu / wall:.2f} cores = {cpu / n * 1e6:.0f} us per result (manual: a backtest.completed event each)")
        if spy is not None:
            spy.wait()
            summarize_stacks(Path(args.pyspy) / "daemon-manual.raw", by_tid)
    finally:
        if ctl is not None:
            ctl.close()
        if fleet is not None:
            fleet.close()
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def daemon_school(args: argparse.Namespace, template: dict[str, Any]) -> None:
    root = Path(tempfile.mkdtemp(prefix="swimmy-fleet-prof-school-"))
    d = fb.Daemon(root, fb.daemon_sections(root, 0, school={"breed": True, "breed_per_cycle": 0,
                                                            "population_max": 1_000_000,
                                                            "progress_interval_sec": 1}))
    fleet = None
    try:
        d.wait_for(lambda: (root / "var" / "telemetry.jsonl").exists(), 30, "the daemon")
        time.sleep(1.0)
        fleet = FakeFleet(d.cfg.zmq.backtest_endpoint, 2, template)
        fleet.run(4.0, True)  # warm-up
        d.tail.poll()
        pid = d.proc.pid
        c0, t0, a0, th0 = fb.cpu_sec(pid), time.monotonic(), fleet.answered, thread_cpu(pid)
        spy = pyspy(pid, args.seconds * 0.8, Path(args.pyspy) / "daemon-school.raw") if args.pyspy else None
        fleet.run(args.seconds, True)
        cpu, wall, n = fb.cpu_sec(pid) - c0, time.monotonic() - t0, fleet.answered - a0
        by_tid = print_threads(th0, thread_cpu(pid), n)
        d.tail.poll()
        progress = d.tail.of("school.progress")
        trials = progress[-1]["data"]["trials"] if progress else None
        print(f"daemon-school: {n} IS results in {wall:.2f}s = {n / wall:.0f}/s with instant fake workers "
              f"(school.progress trials {trials}); daemon CPU {cpu / wall:.2f} cores = {cpu / n * 1e6:.0f} us per "
              "result")
        if spy is not None:
            spy.wait()
            summarize_stacks(Path(args.pyspy) / "daemon-school.raw", by_tid, top=45)
    finally:
        if fleet is not None:
            fleet.close()
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def thread_cpu(pid: int) -> dict[str, float]:
    out: dict[str, float] = collections.defaultdict(float)
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tid = int(task.name)
        label = f"event loop (main)/{tid}" if tid == pid else f"{name}/{tid}"
        out[label] += (int(fields[11]) + int(fields[12])) / tick
    return out


def print_threads(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Print each thread's CPU per result; return it keyed by thread id (for the py-spy summary)."""
    per = {name: (after[name] - before.get(name, 0.0)) / n * 1e6 for name in after}
    print("  CPU per result by thread: " + ", ".join(f"{name} {v:.0f} us" for name, v in
                                                   sorted(per.items(), key=lambda x: -x[1]) if v >= 0.5))
    return {name.rsplit("/", 1)[-1]: v for name, v in per.items()}


def worker(args: argparse.Namespace, end_ts: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="swimmy-fleet-prof-worker-"))
    secs = fb.daemon_sections(root, 0)
    (root / "var").mkdir()
    config = fb.write_toml(root / "w.toml", secs)
    specs = fb.strategy_set(1000, fb.SEED)
    h = data_hash(fb.DATA, fb.SYMBOL, fb.TIMEFRAME)
    costs = {"spread_pips": 0.8, "slippage_pips": 0.2, "pip": 0.0001}
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(secs["zmq"]["backtest_endpoint"])
    proc = subprocess.Popen([sys.executable, "-m", "swimmy", "worker", "--config", str(config), "--id", "prof"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    k = 0
    held = 0
    kinds: collections.Counter[str] = collections.Counter()

    def send(identity: bytes) -> None:
        nonlocal k, held
        s = specs[k % len(specs)]
        k += 1
        router.send_multipart([identity, encode_work(backtest_body(
            request_id=str(uuid.uuid4()), purpose="is", strategy=fb.wire(s), start_ts=None, end_ts=end_ts,
            data_hash=h, costs=costs))])
        held += 1

    try:
        done = 0
        phase_end = time.monotonic() + 3.0  # warm-up
        marks: dict[str, Any] = {}
        spy = None
        while True:
            if not router.poll(20_000):
                raise RuntimeError("the worker said nothing for 20 s")
            identity, raw = router.recv_multipart()
            msg = orjson.loads(raw)
            kinds[msg["type"]] += 1
            if msg["type"] == "READY":
                while held < msg["credit"]:
                    send(identity)
            elif msg["type"] == "BACKTEST_RESULT":
                held -= 1
                done += 1
                send(identity)
            if time.monotonic() >= phase_end:
                if not marks:
                    marks = {"t": time.monotonic(), "n": done, "threads": thread_cpu(proc.pid),
                             "kinds": collections.Counter(kinds)}
                    phase_end = time.monotonic() + args.seconds
                    if args.pyspy:
                        spy = pyspy(proc.pid, args.seconds * 0.8, Path(args.pyspy) / "worker.raw")
                else:
                    break
        wall = time.monotonic() - marks["t"]
        n = done - marks["n"]
        after = thread_cpu(proc.pid)
        per = {name: (after[name] - marks["threads"].get(name, 0.0)) / n * 1e6 for name in after}
        total = sum(per.values())
        msgs = {kind: kinds[kind] - marks["kinds"].get(kind, 0) for kind in kinds}
        print(f"worker: {n} requests in {wall:.2f}s = {n / wall:.0f}/s (credit full); worker CPU {total:.0f} us per "
              f"request: " + ", ".join(f"{name} {v:.0f}" for name, v in sorted(per.items(), key=lambda x: -x[1])
                                       if v >= 1) + f"; messages from it {msgs}")
        if spy is not None:
            spy.wait()
            summarize_stacks(Path(args.pyspy) / "worker.raw", {name.rsplit("/", 1)[-1]: v for name, v in per.items()})
    finally:
        proc.terminate()
        proc.wait(10)
        router.close(0)
        ctx.term()
        shutil.rmtree(root, ignore_errors=True)


def best_of(fn: Any, count: int, reps: int = 5) -> float:
    """Microseconds of CPU per item: the best of `reps` runs of fn() doing `count` items."""
    fn()
    best = float("inf")
    for _ in range(reps):
        c = time.process_time()
        fn()
        best = min(best, time.process_time() - c)
    return best / count * 1e6


def micro(end_ts: int) -> None:
    import uvloop

    root = Path(tempfile.mkdtemp(prefix="swimmy-fleet-prof-micro-"))
    cfg = load_config(fb.write_toml(root / "c.toml", {"school": {"data_dir": str(fb.DATA)}}))
    bars = load_bars(fb.DATA, fb.SYMBOL, fb.TIMEFRAME)
    specs = fb.strategy_set(300, fb.SEED)
    costs = fb.bench_costs(cfg)
    h = data_hash(fb.DATA, fb.SYMBOL, fb.TIMEFRAME)
    payloads = [encode_work(backtest_body(request_id=str(uuid.uuid4()), purpose="is", strategy=fb.wire(s),
                                          start_ts=None, end_ts=end_ts, data_hash=h,
                                          costs={"spread_pips": 0.8, "slippage_pips": 0.2, "pip": 0.0001}))
                for s in specs]
    reqs = [parse_backtest_request(parse([p], 1 << 20, version=WORK_VERSION)) for p in payloads]  # type: ignore[arg-type]

    def plain() -> None:
        for s in specs:
            run_backtest(s, bars, start_ts=None, end_ts=end_ts, costs=costs)

    def served() -> None:
        for r in reqs:
            encode_work(serve_request(r, cfg, "w"))  # type: ignore[arg-type]

    def decode() -> None:
        for p in payloads:
            parse_backtest_request(parse([p], 1 << 20, version=WORK_VERSION))  # type: ignore[arg-type]

    result = serve_request(reqs[0], cfg, "w")  # type: ignore[arg-type]
    encoded = encode_work(result)

    def enc_result() -> None:
        for _ in range(1000):
            encode_work(result)

    def dec_result() -> None:
        for _ in range(1000):
            orjson.loads(encoded)

    def resolve() -> None:
        for _ in range(1000):
            data_hash(fb.DATA, fb.SYMBOL, fb.TIMEFRAME)

    async def zmq_async(n: int) -> None:
        import zmq.asyncio

        ctx = zmq.asyncio.Context()
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("inproc://x")
        b.connect("inproc://x")
        for _ in range(n):
            await a.send(encoded)
            await b.recv_multipart()
        a.close(0)
        b.close(0)
        ctx.term()

    def zmq_sync(n: int) -> None:
        ctx = zmq.Context()
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("inproc://y")
        b.connect("inproc://y")
        for _ in range(n):
            a.send(encoded)
            b.recv_multipart()
        a.close(0)
        b.close(0)
        ctx.term()

    base = best_of(plain, len(specs), 3)
    full = best_of(served, len(specs), 3)
    print(f"micro (CPU, best of several): run_backtest {base:.0f} us; serve_request + encode {full:.0f} us "
          f"(+{full - base:.0f} us a request)")
    print(f"  data_hash() per call (Path.resolve + stat; serve_request calls it and load_bars, one resolve each) "
          f"{best_of(resolve, 1000):.1f} us")
    print(f"  BACKTEST parse (orjson + checks) {best_of(decode, len(payloads)):.1f} us; BACKTEST_RESULT "
          f"({len(encoded)} bytes) encode {best_of(enc_result, 1000):.1f} us, "
          f"decode {best_of(dec_result, 1000):.1f} us")
    n = 5000
    print(f"  one message send+recv: zmq.asyncio {best_of(lambda: uvloop.run(zmq_async(n)), n, 3):.1f} us, "
          f"plain zmq {best_of(lambda: zmq_sync(n), n, 3):.1f} us")
    shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="*", default=["daemon-manual", "daemon-school", "worker", "micro"])
    ap.add_argument("--pyspy", help="a directory for py-spy's raw stacks (py-spy must be in the venv)")
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    if args.pyspy:
        Path(args.pyspy).mkdir(parents=True, exist_ok=True)
    bars = load_bars(fb.DATA, fb.SYMBOL, fb.TIMEFRAME)
    end_ts = int(bars.timestamps[-1]) - fb.IS_HOLDOUT_DAYS * fb.DAY_SEC
    template = canned_result(end_ts)
    print(f"machine: {fb.CORES} cores, load average {os.getloadavg()[0]:.2f} at the start")
    for what in args.what:
        if what == "daemon-manual":
            daemon_manual(args, end_ts, template)
        elif what == "daemon-school":
            daemon_school(args, template)
        elif what == "worker":
            worker(args, end_ts)
        elif what == "micro":
            micro(end_ts)
        else:
            ap.error(f"unknown: {what}")
    print(f"machine: load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
