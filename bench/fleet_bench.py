"""The worker fleet's efficiency and failure stalls: daemon -> N workers -> results (SPEC §4, work protocol v2).

Run:  .venv/bin/python bench/fleet_bench.py [--quick] [--only full,remote,school,kill,remote-kill] [--keep]

Everything runs the real daemon (`python -m swimmy run`) and real worker processes on loopback, on the
shipped sample (data/eurusd-h1-2017/EURUSD_H1.csv). Each ratio is measured against a baseline taken in
the same run, next to it in time, in this process:

  in-process   `run_backtest(spec, bars, end_ts=IS end, costs=...)` back to back over the strategy set
               (1,000 specs from breeding.random_spec, the five families in turn, random SL/TP: the mix a
               freshly bred school sends); IS end = the newest 90 days are left out (the brief's IS range).
               The rate is per CPU second of this process (best pass after a warm-up): on an idle machine that
               is the wall-clock rate, and unlike the wall clock it does not drop when another process takes
               the core for a moment (this machine is shared). ~1.3-1.5 ms a backtest here.
  full path    workers.embedded = N (N = 1, 2, 4), school.breed = false (nothing else competes), debug on.
               Steady state, without the control channel in the measured window: first 2 x N slow
               "sleeper" requests (debug sleep_sec) take every worker's credit; then M requests go in over
               the control channel (`backtest.submit`, one DEALER, 24 commands in flight) and queue in the
               daemon; when the sleepers end, the queue drains at the fleet's pace. Rate = completions
               (`backtest.completed`, info for manual requests) per second between max(last submit, 10th
               percentile completion) and the 90th percentile completion: a full queue, no start-up, no
               tail. Ratio = rate / (N x in-process rate); 3 rounds (2 with --quick) per N, each with its own
               baseline just before it, the median round reported. Target >= 0.8 at N = 2. On 2 cores N = 4 can't
               exceed 0.5: its row shows the overhead (and "vs cores" = rate / (min(N, cores) x in-process)).
  remote       the same with workers.embedded = 0 and N separate `swimmy worker --id rK` processes, zmq.curve =
               "always" on every endpoint (keys from `swimmy keys generate`), the bench's control client too.
  school       the school feeding itself: school.breed = true, breed_per_cycle = 0, population_max 10^6,
               progress_interval_sec 1, 2 embedded workers. After a warm-up, IS trials/s from the cumulative
               `trials` of `school.progress` over a fixed window. Compared with the full path's N = 2 capacity
               measured above, adjusted for the strategy mix (the school's evaluated strategies are read back
               from its database and timed in-process next to the fixed set): target >= 0.8x. Also shown:
               the school's own efficiency (trials/s / (2 x in-process rate of its own strategies)).
  kill         stall of kill -9 on an embedded worker holding a request (4 embedded slots, so restarts with a
               growing backoff don't hold the loop up): one sleeper request (sleep_sec 0.3) goes to the
               worker the broker picks (the first of the worker table; reconstructed from worker.ready /
               worker.lost and confirmed afterwards by the backtest.requeued event naming it; a wrong guess
               is a "miss", not counted), 0.1 s later SIGKILL; stall = backtest.completed of that request -
               the kill; detection = backtest.requeued - the kill. Target p99 stall <= worker_timeout_sec + 1.
  remote-kill  the same with 3 `swimmy worker` processes started by hand (no supervisor: only the liveness
               timeout sees the death; backtest.worker_timeout_sec = 2 here to keep the run short; the target
               moves with it). The victim is started again once the daemon has declared it lost.

Alongside each figure: CPU cores used by the daemon, the workers and everything else on the machine (other
processes make every ratio worse: a row is marked * when they took more than 0.25 cores in its window), the
CPU per result of the daemon and of the workers, and from those a model of the ratio on an idle machine.
`bench/fleet_profile.py` (not run by make bench) takes the daemon and a worker apart, each alone.
Progress goes to stderr, the report to stdout. Exit 0 either way: it is a report, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zmq
import zmq.auth
from benchkit import free_port, note

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from swimmy.backtest.data import load_bars  # noqa: E402
from swimmy.backtest.engine import Costs, run_backtest  # noqa: E402
from swimmy.backtest.strategies import StrategySpec, pip_size  # noqa: E402
from swimmy.config import load_config  # noqa: E402

DATA = REPO / "data" / "eurusd-h1-2017"
SYMBOL, TIMEFRAME = "EURUSD", "H1"
DAY_SEC = 86_400
IS_HOLDOUT_DAYS = 90
CORES = os.cpu_count() or 1
TARGET_EFFICIENCY = 0.8
TARGET_SCHOOL = 0.8
STALL_SLEEP_SEC = 0.3  # the killed worker's request: a backtest that takes this long
KILL_AFTER_SEC = 0.1  # after the submit: the worker has it by then
REMOTE_WORKER_TIMEOUT_SEC = 2.0
CONTROL_WINDOW = 24  # control commands in flight (the server takes 32)
SPECS = 1000
SEED = 7
QUEUE_DEPTH: list[int] = []  # --queue-depth: workers.queue_depth for every daemon and worker (default: the config's)


# ---------------------------------------------------------------------------------------------
# configs, processes, telemetry


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def write_toml(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in values.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def daemon_sections(root: Path, embedded: int, **overlay: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every endpoint on a free loopback port, state under root/var, the shipped sample, debug on."""
    sections: dict[str, dict[str, Any]] = {
        "telemetry": {"path": str(root / "var" / "telemetry.jsonl"), "max_bytes": 1 << 30, "log_level": "info"},
        "heartbeat": {"interval_sec": 1},
        "zmq": {"pub_endpoint": f"tcp://127.0.0.1:{free_port()}", "pull_endpoint": f"tcp://127.0.0.1:{free_port()}",
                "backtest_endpoint": f"tcp://127.0.0.1:{free_port()}"},
        "control": {"endpoint": f"tcp://127.0.0.1:{free_port()}"},
        "workers": {"embedded": embedded, **({"queue_depth": QUEUE_DEPTH[0]} if QUEUE_DEPTH else {})},
        "school": {"db_path": str(root / "var" / "school.db"), "data_dir": str(DATA), "breed": False},
        "snapshots": {"dir": str(root / "var" / "snapshots")},
        "metrics": {"listen": ""},
        "debug": {"enabled": True},
    }
    for section, values in overlay.items():
        sections.setdefault(section, {}).update(values)
    return sections


class Tail:
    """The telemetry file read incrementally; only lines of the wanted event types are parsed."""

    def __init__(self, path: Path, kinds: Iterable[str]) -> None:
        self.path = path
        self.pos = 0
        self.rest = b""
        self.marks = tuple(f'"event_type":"{k}"'.encode() for k in kinds)
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(chunk)
        data = self.rest + chunk
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        new = []
        for line in data[:cut].splitlines():
            if any(m in line for m in self.marks):
                event = orjson.loads(line)
                event["t"] = ts_of(event)
                new.append(event)
        self.events.extend(new)
        return new

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event_type"] == kind
                and all(e["data"].get(k) == v for k, v in match.items())]


def ts_of(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


KINDS = ("worker.started", "worker.ready", "worker.lost", "worker.exited", "backtest.completed",
         "backtest.requeued", "backtest.timeout", "backtest.quarantined", "school.progress")


class Daemon:
    """A `swimmy run` in its own process group (its embedded workers die with it)."""

    def __init__(self, root: Path, sections: dict[str, dict[str, Any]]) -> None:
        self.root = root
        (root / "var").mkdir(parents=True, exist_ok=True)
        self.config = write_toml(root / "swimmy.toml", sections)
        self.cfg = load_config(self.config)
        self._err = open(root / "daemon.stderr", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "swimmy", "run", "--config", str(self.config)],
                                     cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._err, start_new_session=True)
        self.tail = Tail(Path(self.cfg.telemetry.path), KINDS)
        self.hand: dict[str, subprocess.Popen[bytes]] = {}  # workers started by hand, by id

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str, tick: float = 0.02) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.tail.poll()
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                tail = (self.root / "daemon.stderr").read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"the daemon exited ({self.proc.returncode}) waiting for {what}: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(tick)

    def table(self) -> list[str]:
        """The broker's worker table in its order (READY joins at the end, worker.lost leaves)."""
        order: list[str] = []
        for e in self.tail.events:
            if e["event_type"] == "worker.ready":
                order.append(e["data"]["worker"])
            elif e["event_type"] == "worker.lost" and e["data"]["worker"] in order:
                order.remove(e["data"]["worker"])
        return order

    def lost(self, worker: str) -> bool:
        return worker not in self.table()

    def wait_workers(self, n: int, timeout: float = 60) -> None:
        self.wait_for(lambda: len(self.table()) >= n, timeout, f"{n} workers to send READY", tick=0.05)

    def embedded_pid(self, worker: str) -> int:
        return int(self.tail.of("worker.started", worker=worker)[-1]["data"]["pid"])

    def start_hand_worker(self, config: Path, worker: str) -> None:
        self.hand[worker] = subprocess.Popen(
            [sys.executable, "-m", "swimmy", "worker", "--config", str(config), "--id", worker],
            cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.root / f"worker-{worker}.stderr", "ab"), start_new_session=True)  # noqa: SIM115

    def pids(self) -> dict[str, list[int]]:
        embedded = sorted({int(e["data"]["pid"]) for e in self.tail.of("worker.started")})
        return {"daemon": [self.proc.pid], "workers": embedded + [p.pid for p in self.hand.values()],
                "bench": [os.getpid()]}

    def stop(self) -> int | None:
        for p in self.hand.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own group: whatever it left behind
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        for p in self.hand.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        self._err.close()
        return code


class Control:
    """The control channel, pipelined: one DEALER, up to CONTROL_WINDOW commands in flight."""

    def __init__(self, endpoint: str, curve: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            public, secret, server = curve
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
            self.sock.curve_serverkey = server
        self.sock.connect(endpoint)
        self.n = 0

    def submit_many(self, bodies: list[dict[str, Any]], timeout: float = 30.0) -> list[str]:
        """backtest.submit each body; the request_ids in order (RuntimeError on a refusal)."""
        out: list[str | None] = [None] * len(bodies)
        pending: dict[str, int] = {}
        nxt = 0
        while nxt < len(bodies) or pending:
            while nxt < len(bodies) and len(pending) < CONTROL_WINDOW:
                self.n += 1
                cid = f"fb-{self.n}"
                self.sock.send(orjson.dumps({"v": 1, "type": "COMMAND", "id": cid, "command": "backtest.submit",
                                             "args": bodies[nxt]}))
                pending[cid] = nxt
                nxt += 1
            if not self.sock.poll(int(timeout * 1000)):
                raise RuntimeError(f"no control reply within {timeout:g}s ({len(pending)} pending)")
            while True:
                try:
                    reply = orjson.loads(self.sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                i = pending.pop(reply.get("id"), None)
                if i is None:
                    continue
                if not reply.get("ok"):
                    raise RuntimeError(f"backtest.submit refused: {reply.get('error')}")
                out[i] = str(reply["result"]["request_id"])
        return [r for r in out if r is not None]

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


# ---------------------------------------------------------------------------------------------
# CPU accounting


def cpu_sec(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_sec() -> float:
    """CPU seconds the whole machine has been busy (all cores)."""
    try:
        parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return float("nan")
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuSamples:
    """(wall time, CPU seconds per group, machine busy seconds) sampled while a scenario runs."""

    rows: list[tuple[float, dict[str, float], float]] = field(default_factory=list)

    def sample(self, pids: dict[str, list[int]]) -> None:
        self.rows.append((time.time(), {g: sum(cpu_sec(p) for p in ps) for g, ps in pids.items()}, busy_sec()))

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """Cores used per group between the samples nearest t0 and t1, and `other` (the rest of the machine)."""
        if len(self.rows) < 2:
            return {}
        a = min(self.rows, key=lambda r: abs(r[0] - t0))
        b = min(self.rows, key=lambda r: abs(r[0] - t1))
        span = b[0] - a[0]
        if span <= 0:
            return {}
        out = {g: (b[1][g] - a[1].get(g, 0.0)) / span for g in b[1]}
        out["other"] = max(0.0, (b[2] - a[2]) / span - sum(out.values()))
        return out


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()) + f" (cores, of {CORES})" if cpu else "n/a"


def cpu_view(cpu: dict[str, float], rate: float, n: int, base_cpu: float) -> dict[str, float]:
    """CPU per result (daemon, workers) and what the fleet would do on an otherwise idle machine.

    The projection is a model, not a measurement: throughput <= cores / (daemon + worker CPU per result),
    <= N / worker CPU per result (a worker is one busy thread), <= 1 / daemon CPU per result (one loop).
    """
    if not cpu or not rate or rate != rate:
        return {}
    d = cpu.get("daemon", 0.0) / rate
    w = cpu.get("workers", 0.0) / rate
    if d <= 0 or w <= 0:
        return {}
    projected = min(CORES / (d + w), n / w, 1 / d)
    return {"daemon_us": d * 1e6, "worker_ms": w * 1e3, "in_process_ms": 1e3 / base_cpu,
            "fleet_cpu_eff": (1 / base_cpu) / (d + w), "projected": projected,
            "projected_ratio": projected / (n * base_cpu)}


def view_text(v: dict[str, float]) -> str:
    if not v:
        return "n/a"
    return (f"daemon {v['daemon_us']:.0f} us + workers {v['worker_ms']:.3f} ms per result (in-process "
            f"{v['in_process_ms']:.3f} ms CPU a backtest): {v['fleet_cpu_eff']:.0%} of the fleet's CPU is backtests; "
            f"on an idle machine (model) {v['projected']:.0f}/s = ratio {v['projected_ratio']:.2f}")


# ---------------------------------------------------------------------------------------------
# the strategy set and the in-process baseline


def strategy_set(count: int, seed: int) -> list[StrategySpec]:
    from swimmy.school.breeding import PARAM_SPACE, random_spec

    rng = random.Random(seed)
    families = sorted(PARAM_SPACE)
    return [random_spec(rng, families[i % len(families)], SYMBOL, TIMEFRAME) for i in range(count)]


def bench_costs(cfg: Any) -> Costs:
    return Costs(cfg.backtest.spread_pips, cfg.backtest.slippage_pips, pip_size(SYMBOL))


def in_process_rate(specs: list[StrategySpec], bars: Any, end_ts: int | None, costs: Costs, passes: int = 2
                    ) -> tuple[float, float]:
    """Backtests per second back to back in this process, the best of `passes` after a warm-up: (per CPU second,
    per wall second). On an idle machine the two are the same; on a shared one the wall figure drops whenever
    another process takes the core, the CPU figure hardly moves, so the CPU figure is the baseline."""
    for spec in specs[:50]:
        run_backtest(spec, bars, start_ts=None, end_ts=end_ts, costs=costs)
    best_cpu = best_wall = 0.0
    for _ in range(passes):
        t, c = time.perf_counter(), time.process_time()
        for spec in specs:
            run_backtest(spec, bars, start_ts=None, end_ts=end_ts, costs=costs)
        best_wall = max(best_wall, len(specs) / (time.perf_counter() - t))
        best_cpu = max(best_cpu, len(specs) / (time.process_time() - c))
    return best_cpu, best_wall


def school_is_end(cfg: Any, bars: Any) -> int:
    """Where the school's IS range ends (its holdout split), or the newest 90 days out if that API is elsewhere."""
    try:
        from swimmy.school.loop import holdout_start

        value = holdout_start(bars.timestamps, cfg.oos.window_fraction, cfg.oos.holdout_min_days)
        if value is not None:
            return int(value)
    except (ImportError, AttributeError, TypeError):
        pass
    return int(bars.timestamps[-1]) - IS_HOLDOUT_DAYS * DAY_SEC


# ---------------------------------------------------------------------------------------------
# scenarios


@dataclass
class Env:
    args: argparse.Namespace
    bars: Any
    specs: list[StrategySpec]
    end_ts: int
    costs: Costs
    keys: Path | None = None
    submit_rate: float = 2000.0  # control submits/s, learnt from the last scenario (sizes the sleepers)


def wire(spec: StrategySpec) -> dict[str, Any]:
    return dict(spec.to_wire(spec.name()))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def make_keys(root: Path) -> Path:
    keys = root / "keys"
    done = subprocess.run([sys.executable, "-m", "swimmy", "keys", "generate", "--out", str(keys)],
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"swimmy keys generate failed: {done.stderr.strip()[-300:]}")
    return keys


def remote_configs(root: Path, keys: Path, embedded: int, **overlay: dict[str, Any]
                   ) -> tuple[dict[str, dict[str, Any]], Path, tuple[bytes, bytes, bytes]]:
    """The daemon's sections (CURVE always, server keys) and a worker config (client keys, same endpoints)."""
    sections = daemon_sections(root, embedded, **overlay)
    sections["zmq"].update({"curve": "always", "curve_secret_key_file": str(keys / "server.key_secret"),
                            "curve_public_key_file": str(keys / "server.key"),
                            "curve_authorized_keys_dir": str(keys / "authorized")})
    worker = {s: dict(v) for s, v in sections.items()}
    worker["zmq"] = {k: v for k, v in sections["zmq"].items() if "curve" not in k}
    worker["zmq"].update({"curve": "always", "curve_secret_key_file": str(keys / "client.key_secret"),
                          "curve_public_key_file": str(keys / "client.key"),
                          "curve_server_public_key_file": str(keys / "server.key")})
    worker["telemetry"] = {**sections["telemetry"], "path": str(root / "var" / "worker-telemetry.jsonl")}
    worker_config = write_toml(root / "worker.toml", worker)
    public, secret = zmq.auth.load_certificate(keys / "server.key_secret")
    assert secret is not None
    return sections, worker_config, (public, secret, public)


def drain(env: Env, n: int, remote: bool) -> dict[str, Any]:
    """Full path at N workers: rounds of a queue of M requests drained by the fleet, each next to its baseline."""
    root = Path(tempfile.mkdtemp(prefix=f"swimmy-fleet-{'remote' if remote else 'emb'}{n}-"))
    out: dict[str, Any] = {"n": n, "remote": remote, "dir": str(root), "rounds": []}
    kind = "remote" if remote else "embedded"
    curve = None
    worker_config = None
    if remote:
        assert env.keys is not None
        sections, worker_config, curve = remote_configs(root, env.keys, 0)
    else:
        sections = daemon_sections(root, n)
    d = Daemon(root, sections)
    ctl = Control(d.cfg.control.endpoint, curve)
    try:
        if worker_config is not None:
            for k in range(1, n + 1):
                d.start_hand_worker(worker_config, f"r{k}")
        d.wait_workers(n)
        time.sleep(0.3)
        warm = [wire(s) for s in env.specs[:4 * n]]  # every worker loads its data and warms up first
        warm_ids = set(ctl.submit_many([{"strategy": w, "start_ts": None, "end_ts": env.end_ts} for w in warm]))
        d.wait_for(lambda: warm_ids <= {e["data"]["request_id"] for e in d.tail.of("backtest.completed")}, 60,
                   "the warm-up requests")
        for r in range(env.args.rounds):
            out["rounds"].append(drain_round(env, d, ctl, n))
            rr = out["rounds"][-1]
            note(f"{kind} N={n} round {r + 1}: {rr['m']} queued in {rr['submit_sec']:.1f}s, drained at "
                 f"{rr['rate']:.0f}/s (in-process {rr['base']:.0f}/s): {rr['ratio']:.2f}; cpu {cpu_text(rr['cpu'])}"
                 + ("" if rr["complete"] else "; cut short (a busy machine): no more rounds"))
            if not rr["complete"]:
                break  # the rest of its queue is still in the daemon: a next round would start behind it
        median = sorted(out["rounds"], key=lambda x: x["ratio"])[len(out["rounds"]) // 2]
        out.update(median)
        out["ratios"] = [x["ratio"] for x in out["rounds"]]
    except Exception as exc:
        out["failed"] = repr(exc)
        note(f"{kind} N={n} FAILED: {exc!r}")
    finally:
        ctl.close()
        out["exit_code"] = d.stop()
        if not env.args.keep and "failed" not in out:
            shutil.rmtree(root, ignore_errors=True)
    return out


def drain_round(env: Env, d: Daemon, ctl: Control, n: int) -> dict[str, Any]:
    """One round: the in-process baseline now, then sleepers take every credit, M requests queue, the fleet drains."""
    base, base_wall = in_process_rate(env.specs[: SPECS // 2], env.bars, env.end_ts, env.costs, passes=1)
    credit = d.cfg.workers.queue_depth
    # Sized on what this machine gives now (the wall rate: a shared machine may be busy), so a round stays short.
    expected = min(n, CORES) * min(base, 1.5 * base_wall) * 0.85
    m = int(min(9000, max(600, expected * env.args.drain_sec)))
    hold = m / env.submit_rate * 1.15 + 0.4
    bodies = [{"strategy": wire(env.specs[i % len(env.specs)]), "start_ts": None, "end_ts": env.end_ts}
              for i in range(m)]
    sleepers = [{"strategy": wire(env.specs[0]), "start_ts": None, "end_ts": env.end_ts,
                 "debug": {"sleep_sec": round(hold / credit, 3)}} for _ in range(n * credit)]
    ctl.submit_many(sleepers)
    time.sleep(0.1)
    cpu = CpuSamples()
    pids = d.pids()
    cpu.sample(pids)
    t0 = time.time()
    rids = ctl.submit_many(bodies)
    t1 = time.time()
    env.submit_rate = max(200.0, m / (t1 - t0))
    wanted = set(rids)
    done: dict[str, dict[str, Any]] = {}
    seen = [len(d.tail.events)]

    give_up = time.time() + max(12.0, 4 * env.args.drain_sec + hold)  # a busy machine: measure what came by then

    def finished() -> bool:
        for e in d.tail.events[seen[0]:]:
            if e["event_type"] == "backtest.completed" and e["data"]["request_id"] in wanted:
                done[e["data"]["request_id"]] = e
        seen[0] = len(d.tail.events)
        cpu.sample(pids)
        return len(done) >= len(wanted) or (time.time() > give_up and len(done) >= 100)

    d.wait_for(finished, 60 + m / 100, "every result", tick=0.2)
    complete = len(done) >= len(wanted)
    times = sorted(e["t"] for e in done.values())
    w0 = max(t1, percentile(times, 10))
    w1 = percentile(times, 90) if complete else times[-1]  # cut short: the queue is still full up to the last
    inside = sum(1 for t in times if w0 < t <= w1)
    rate = inside / (w1 - w0) if w1 > w0 else float("nan")
    ok = [e for e in done.values() if e["data"]["status"] == "ok"]
    out: dict[str, Any] = {
        "base": base, "base_wall": base_wall,
        "m": m, "submit_sec": t1 - t0, "submit_rate": m / (t1 - t0), "hold_sec": hold,
        "first_done": times[0] - t1, "last_done": times[-1] - t1, "window": (w0 - t1, w1 - t1),
        "in_window": inside, "rate": rate, "ratio": rate / (n * base), "vs_cores": rate / (min(n, CORES) * base),
        "errors": len(done) - len(ok),
        "elapsed_ms": statistics.median(float(e["data"]["elapsed_ms"]) for e in ok) if ok else float("nan"),
        "by_worker": dict(sorted(_count(str(e["data"]["worker"]) for e in done.values()).items())),
        "cpu": cpu.between(w0, w1), "queued_at_start": times[0] > t1, "complete": complete,
    }
    out["view"] = cpu_view(out["cpu"], rate, n, base)
    return out


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def school(env: Env, n: int = 2) -> dict[str, Any]:
    """IS trials/s through the school feeding itself, over a fixed window after a warm-up."""
    root = Path(tempfile.mkdtemp(prefix="swimmy-fleet-school-"))
    out: dict[str, Any] = {"n": n, "dir": str(root)}
    d = Daemon(root, daemon_sections(root, n, school={"breed": True, "breed_per_cycle": 0,
                                                      "population_max": 1_000_000, "progress_interval_sec": 1}))
    try:
        d.wait_workers(n)
        first = d.wait_for(lambda: [e for e in d.tail.of("school.progress") if e["data"]["trials"] > 0], 60,
                           "the first school.progress with trials")[0]
        start_at = first["t"] + env.args.warmup_sec
        end_at = start_at + env.args.school_sec
        cpu = CpuSamples()

        def through() -> bool:
            cpu.sample(d.pids())
            return bool(d.tail.of("school.progress")) and d.tail.of("school.progress")[-1]["t"] >= end_at

        d.wait_for(through, env.args.warmup_sec + env.args.school_sec + 30, "the school window", tick=0.2)
        progress = [e for e in d.tail.of("school.progress") if e["t"] >= start_at]
        a, b = progress[0], progress[-1]
        trials = b["data"]["trials"] - a["data"]["trials"]
        rate = trials / (b["t"] - a["t"])
        out.update({"rate": rate, "trials": trials, "window": b["t"] - a["t"], "cpu": cpu.between(a["t"], b["t"]),
                    "total_trials": b["data"]["trials"],
                    "reported_per_sec": statistics.median(e["data"].get("trials_per_sec") or 0.0
                                                          for e in progress[1:]) if len(progress) > 1 else None})
        note(f"school N={n}: {trials} trials in {b['t'] - a['t']:.1f}s = {rate:.0f}/s; cpu {cpu_text(out['cpu'])}")
    except Exception as exc:
        out["failed"] = repr(exc)
        note(f"school FAILED: {exc!r}")
    finally:
        out["exit_code"] = d.stop()
    if "failed" not in out:
        try:
            specs = evaluated_strategies(Path(d.cfg.school.db_path), SPECS)
            end_ts = school_is_end(d.cfg, env.bars)
            out["mix"] = _count(s.family for s in specs)
            out["base_school"], out["base_school_wall"] = in_process_rate(specs, env.bars, end_ts, env.costs)
            out["base_fixed"], out["base_fixed_wall"] = in_process_rate(env.specs, env.bars, env.end_ts, env.costs)
            out["is_end"] = end_ts
            out["view"] = cpu_view(out["cpu"], out["rate"], n, out["base_school"])
        except Exception as exc:
            out["failed"] = f"reading the school's strategies back: {exc!r}"
    if not env.args.keep and "failed" not in out:
        shutil.rmtree(root, ignore_errors=True)
    return out


def evaluated_strategies(db: Path, count: int) -> list[StrategySpec]:
    """A random sample of the strategies the school backtested (IS figures stored)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT family, params_json, symbol, timeframe, sl_pips, tp_pips FROM strategies "
                            "WHERE is_trades IS NOT NULL").fetchall()
    finally:
        conn.close()
    rng = random.Random(SEED)
    rng.shuffle(rows)
    return [StrategySpec(f, orjson.loads(p), s, t, float(sl), float(tp)) for f, p, s, t, sl, tp in rows[:count]]


def kills(env: Env, remote: bool) -> dict[str, Any]:
    """kill -9 of the worker holding a request: the time until that request is answered elsewhere."""
    root = Path(tempfile.mkdtemp(prefix=f"swimmy-fleet-{'rkill' if remote else 'kill'}-"))
    out: dict[str, Any] = {"remote": remote, "dir": str(root), "stalls": [], "detect": [], "lost_after": [],
                           "misses": 0}
    wanted = env.args.kills
    worker_config = None
    if remote:
        sections = daemon_sections(root, 0, backtest={"worker_timeout_sec": REMOTE_WORKER_TIMEOUT_SEC})
        worker_config = root / "worker.toml"
        write_toml(worker_config, sections)
        slots = 3
    else:
        sections = daemon_sections(root, 4)
        slots = 4
    d = Daemon(root, sections)
    out["worker_timeout_sec"] = d.cfg.backtest.worker_timeout_sec
    out["slots"] = slots
    ctl = Control(d.cfg.control.endpoint)
    try:
        if worker_config is not None:
            for k in range(1, slots + 1):
                d.start_hand_worker(worker_config, f"h{k}")
        d.wait_workers(slots)
        body = {"strategy": wire(env.specs[1]), "start_ts": None, "end_ts": env.end_ts,
                "debug": {"sleep_sec": STALL_SLEEP_SEC}}
        attempts = 0
        while len(out["stalls"]) < wanted and attempts < wanted * 2:
            attempts += 1
            d.wait_workers(2, timeout=90)
            victim = d.table()[0]
            pid = d.hand[victim].pid if remote else d.embedded_pid(victim)
            (rid,) = ctl.submit_many([body])
            time.sleep(KILL_AFTER_SEC)
            os.kill(pid, signal.SIGKILL)
            killed = time.time()
            if remote:
                d.hand[victim].wait(timeout=10)
            done = d.wait_for(functools.partial(d.tail.of, "backtest.completed", request_id=rid),
                              30 + d.cfg.backtest.worker_timeout_sec, "the answer", tick=0.01)[0]
            requeued = d.tail.of("backtest.requeued", request_id=rid)
            if not requeued or requeued[0]["data"]["worker"] != victim:
                out["misses"] += 1  # the broker gave it to another worker: this kill proves nothing
            else:
                out["stalls"].append(done["t"] - killed)
                out["detect"].append(requeued[0]["t"] - killed)
            if remote:
                # Started again only once declared dead: a READY under the same id would end the old one at once.
                d.wait_for(functools.partial(d.lost, victim), 30, "the victim to be declared lost")
                assert worker_config is not None
                d.start_hand_worker(worker_config, victim)
        note(f"{'remote' if remote else 'embedded'} kills: {len(out['stalls'])} measured ({out['misses']} misses), "
             f"stall p50 {percentile(out['stalls'], 50):.2f}s p99 {percentile(out['stalls'], 99):.2f}s")
    except Exception as exc:
        out["failed"] = repr(exc)
        note(f"{'remote' if remote else 'embedded'} kills FAILED: {exc!r}")
    finally:
        ctl.close()
        out["exit_code"] = d.stop()
        if not env.args.keep and "failed" not in out:
            shutil.rmtree(root, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------
# report


def machine() -> list[str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return [f"  machine: {CORES} cores ({cpu or platform.machine()}), load average {load[0]:.2f} {load[1]:.2f} "
            f"{load[2]:.2f} at the end; python {platform.python_version()}, pyzmq {zmq.__version__}, "
            f"libzmq {zmq.zmq_version()}"]


Row = tuple[str, str, str, str, str, str, bool | None, float, str]
NOISY_CORES = 0.25  # other processes using more than this during a window: its ratio is understated


def report(env: Env, fulls: list[dict[str, Any]], sch: dict[str, Any] | None, stall: list[dict[str, Any]],
           took: float) -> None:
    p = print
    p("")
    p("=" * 112)
    p(f"swimmy fleet benchmark - {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}Z{' (--quick)' if env.args.quick else ''}")
    for line in machine():
        p(line)
    p(f"  data: {DATA.relative_to(REPO)}/EURUSD_H1.csv, {len(env.bars.timestamps)} bars; IS = before the newest "
      f"{IS_HOLDOUT_DAYS} days ({int((env.bars.timestamps < env.end_ts).sum())} bars); {len(env.specs)} random "
      "specs, the five families in turn")
    rows: list[Row] = []
    if fulls:
        p("")
        p(f"full path ({env.args.rounds} rounds per N, each: the in-process baseline, then a queue of M requests "
          "drained; window = after the last submit, 10th..90th percentile completion):")
        for f in fulls:
            kind = "remote CURVE" if f["remote"] else "embedded"
            if "failed" in f:
                p(f"  {kind} N={f['n']}: FAILED {f['failed']} (kept: {f['dir']})")
                rows.append((f"full path, {kind}", str(f["n"]), "-", "-", "-", _eff_target(f["n"]), False, 0.0, ""))
                continue
            p(f"  {kind} N={f['n']}: M={f['m']} queued in {f['submit_sec']:.2f}s ({f['submit_rate']:.0f} submits/s) "
              f"behind {f['hold_sec']:.1f}s of sleepers; window {f['window'][0]:.2f}..{f['window'][1]:.2f}s after "
              f"the last submit, {f['in_window']} results"
              f"{'' if f['queued_at_start'] else ' (the queue was not full at the start)'}")
            p(f"      ratio per round {', '.join(f'{x:.2f}' for x in f['ratios'])}; the median round:")
            p(f"      {f['rate']:.0f}/s vs in-process {f['base']:.0f}/s x {f['n']}: {f['ratio']:.2f} "
              f"(vs min(N, cores): {f['vs_cores']:.2f}); in-process per wall second {f['base_wall']:.0f}/s; worker "
              f"elapsed_ms median {f['elapsed_ms']:.3f} (in-process {1000 / f['base']:.3f}); errors {f['errors']}; "
              f"per worker {f['by_worker']}")
            p(f"      CPU in the window: {cpu_text(f['cpu'])}")
            p(f"      {view_text(f['view'])}")
            ok = f["ratio"] >= TARGET_EFFICIENCY if f["n"] == 2 else None
            rows.append((f"full path, {kind}", str(f["n"]), f"{f['rate']:.0f}/s", f"{f['n']} x {f['base']:.0f}/s",
                         f"{f['ratio']:.2f}", _eff_target(f["n"]), ok, f["cpu"].get("other", 0.0),
                         _model(f["view"])))
    emb2 = next((f for f in fulls if f["n"] == 2 and not f["remote"] and "failed" not in f), None)
    if sch is not None:
        p("")
        if "failed" in sch:
            p(f"school: FAILED {sch['failed']} (kept: {sch['dir']})")
            rows.append(("school IS trials/s vs full path N=2", "2", "-", "-", "-", f">= {TARGET_SCHOOL}", False, 0.0,
                         ""))
        else:
            mix = sch["base_school"] / sch["base_fixed"]
            p(f"school (breed on, 2 embedded workers): {sch['trials']} trials in {sch['window']:.1f}s after "
              f"{env.args.warmup_sec:g}s of warm-up = {sch['rate']:.0f}/s (school.progress trials_per_sec median "
              f"{sch['reported_per_sec']}); {sch['total_trials']} trials in all")
            p(f"  its strategies in-process: {sch['base_school']:.0f}/s vs the fixed set's {sch['base_fixed']:.0f}/s "
              f"(mix factor {mix:.2f}; families {sch['mix']}); IS end {sch['is_end']}")
            p(f"  CPU in the window: {cpu_text(sch['cpu'])}")
            p(f"  {view_text(sch['view'])}")
            if emb2 is not None:
                capacity = emb2["rate"] * mix
                ratio = sch["rate"] / capacity
                p(f"  full-path capacity at N=2 for this mix: {emb2['rate']:.0f}/s x {mix:.2f} = {capacity:.0f}/s; "
                  f"unadjusted ratio {sch['rate'] / emb2['rate']:.2f}")
                model = ""
                if sch["view"] and emb2["view"]:
                    model = f"model {sch['view']['projected'] / (emb2['view']['projected'] * mix):.2f}"
                rows.append(("school IS trials/s vs full path N=2", "2", f"{sch['rate']:.0f}/s",
                             f"{capacity:.0f}/s", f"{ratio:.2f}", f">= {TARGET_SCHOOL}", ratio >= TARGET_SCHOOL,
                             sch["cpu"].get("other", 0.0) + emb2["cpu"].get("other", 0.0), model))
            eff = sch["rate"] / (2 * sch["base_school"])
            rows.append(("school IS trials/s vs in-process (same mix)", "2", f"{sch['rate']:.0f}/s",
                         f"2 x {sch['base_school']:.0f}/s", f"{eff:.2f}", "report", None, sch["cpu"].get("other", 0.0),
                         _model(sch["view"])))
    for s in stall:
        kind = "remote (by hand)" if s["remote"] else "embedded"
        limit = s["worker_timeout_sec"] + 1.0
        p("")
        if "failed" in s:
            p(f"stall, {kind}: FAILED {s['failed']} (kept: {s['dir']}); {len(s['stalls'])} measured before")
        st, de = s["stalls"], s["detect"]
        if st:
            p(f"stall, {kind} kill -9 ({s['slots']} workers, worker_timeout_sec {s['worker_timeout_sec']:g}, request "
              f"of {STALL_SLEEP_SEC:g}s killed {KILL_AFTER_SEC:g}s in): {len(st)} kills ({s['misses']} misses)")
            p(f"  detection (kill -> backtest.requeued): p50 {percentile(de, 50):.3f}s p99 {percentile(de, 99):.3f}s "
              f"max {max(de):.3f}s")
            p(f"  stall (kill -> backtest.completed elsewhere): p50 {percentile(st, 50):.3f}s p99 "
              f"{percentile(st, 99):.3f}s max {max(st):.3f}s (of which re-running it: {STALL_SLEEP_SEC:g}s)")
        p99 = percentile(st, 99)
        rows.append((f"stall p99, {kind} kill -9", str(s["slots"]), f"{p99:.2f}s" if st else "-",
                     f"timeout {s['worker_timeout_sec']:g}s", f"{p99 / limit:.2f}" if st else "-",
                     f"<= {limit:g}s", (p99 <= limit and "failed" not in s) if st else False, 0.0, ""))
        if de:
            rows.append((f"  detection p99, {kind}", str(s["slots"]), f"{percentile(de, 99):.2f}s", "-", "-",
                         "report", None, 0.0, ""))
    p("")
    p(f"{'scenario':<44} {'N':>2} {'measured':>10} {'baseline':>14} {'ratio':>6} {'target':>8}  {'result':<6}  "
      "notes")
    noisy = False
    for name, n, got, base, ratio, target, ok, other, model in rows:
        result = "-" if ok is None else ("PASS" if ok else "FAIL")
        notes = [model] if model else []
        if other > NOISY_CORES:
            noisy = True
            result += "*"
            notes.append(f"other procs {other:.2f} cores")
        p(f"{name:<44} {n:>2} {got:>10} {base:>14} {ratio:>6} {target:>8}  {result:<6}  {'; '.join(notes)}")
    if noisy:
        p(f"* other processes on this machine used more than {NOISY_CORES:g} cores during that window: the ratio is "
          "understated; 'model' is the idle-machine projection from CPU per result (see above)")
    p("=" * 112)
    p(f"(whole run {took:.0f}s)")


def _model(view: dict[str, float]) -> str:
    return f"model {view['projected_ratio']:.2f}" if view else ""


def _eff_target(n: int) -> str:
    return f">= {TARGET_EFFICIENCY}" if n == 2 else "report"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter windows and fewer kills (about a minute)")
    ap.add_argument("--only", default="full,remote,school,kill,remote-kill",
                    help="comma-separated scenarios: full, remote, school, kill, remote-kill")
    ap.add_argument("--workers", default="1,2,4", help="the N of the full-path scenarios")
    ap.add_argument("--keep", action="store_true", help="keep every scenario's directory (telemetry, stderr)")
    ap.add_argument("--queue-depth", type=int, help="workers.queue_depth (the credit of each worker) everywhere")
    args = ap.parse_args()
    if args.queue_depth:
        QUEUE_DEPTH.append(args.queue_depth)
    args.drain_sec = 1.5 if args.quick else 2.5
    args.rounds = 2 if args.quick else 3
    args.warmup_sec = 3.0 if args.quick else 4.0
    args.school_sec = 5.0 if args.quick else 15.0
    args.kills = 5 if args.quick else 20
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    ns = [int(x) for x in args.workers.split(",") if x.strip()]
    t0 = time.monotonic()

    probe_dir = Path(tempfile.mkdtemp(prefix="swimmy-fleet-cfg-"))
    probe = load_config(write_toml(probe_dir / "defaults.toml", {}))  # the defaults the daemons run with
    shutil.rmtree(probe_dir, ignore_errors=True)
    bars = load_bars(DATA, SYMBOL, TIMEFRAME)
    end_ts = int(bars.timestamps[-1]) - IS_HOLDOUT_DAYS * DAY_SEC
    env = Env(args, bars, strategy_set(SPECS, SEED), end_ts, bench_costs(probe))
    fulls: list[dict[str, Any]] = []
    if "full" in only:
        fulls += [drain(env, n, remote=False) for n in ns]
    if "remote" in only:
        keys_root = Path(tempfile.mkdtemp(prefix="swimmy-fleet-keys-"))
        try:
            env.keys = make_keys(keys_root)
            fulls += [drain(env, n, remote=True) for n in ns]
        finally:
            shutil.rmtree(keys_root, ignore_errors=True)
    sch = school(env) if "school" in only else None
    stall = []
    if "kill" in only:
        stall.append(kills(env, remote=False))
    if "remote-kill" in only:
        stall.append(kills(env, remote=True))
    report(env, fulls, sch, stall, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
