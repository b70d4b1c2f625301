"""The dashboard's first load with 2,000 strategies in the store (issue 15): its weight and its time to render.

Targets: the first load of `/` weighs <= 300 KB, and the page is rendered within 1 s on this machine.

Seeds a store with 2,000 strategies spread over the ranks (1,400 graveyard, 400 incubator, 150 B, 40 A, 10 S, with
IS figures and a DSR), starts `python -m swimmy run` on it (no workers, no breeding, the metrics listener on a free
loopback port), and loads `/` in Debian's chromium (headless, driven by Playwright) 5 times, each in a fresh
context (an empty cache). A load is rendered when the best-strategies table has its rows (`#top[data-rows]`) and
the population chart its canvas (`#population[data-points] canvas`). Measured per load:

- weight: every response of the load, body bytes (nothing is compressed) plus response headers, per URL; 1 KB =
  1,000 bytes;
- render: wall clock (perf_counter) from just before `page.goto` to the moment the bench sees both elements ready,
  and the page's own `performance.now()` at the first animation frame where both are there (time since the
  navigation started, without Playwright's round trips).

The weight is reported for the first load (every load fetches the same files); the time as the median and the max
of the 5 (the ratio is the median's). The population chart has one sample here (the daemon samples at start): a
day's full chart (480 points) would make /api/dashboard heavier, and that extra is estimated and printed too.

Without chromium or playwright the bench says so and exits 0. It exits 1 only when the setup is broken (the daemon
does not start, the page never renders); a missed target is printed as FAIL, and the exit is still 0: it is a
report, not a test.

    python bench/dashboard_bench.py [--loads 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from benchkit import free_port, note

from swimmy import __version__
from swimmy.backtest.strategies import PARAM_SPACE, StrategySpec, validate
from swimmy.errors import BacktestError
from swimmy.school.catalog import row_for
from swimmy.store import Store

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data" / "eurusd-h1-2017"
TARGET_KB = 300.0
TARGET_SEC = 1.0
RANK_COUNTS = {"graveyard": 1_400, "incubator": 400, "B": 150, "A": 40, "S": 10}  # 2,000 in all
TOP_ROWS = 30  # swimmy.view.dashboard.TOP: the table shows the best 30 of B, A and S
CHART_POINTS = 480  # swimmy.view.dashboard.MAX_POINTS: a full chart
START_TIMEOUT_SEC = 30.0
RENDER_TIMEOUT_MS = 15_000
VIEWPORT = {"width": 1280, "height": 900}
READY_JS = """() => {
  const top = document.querySelector('#top[data-rows]');
  const chart = document.querySelector('#population[data-points] canvas');
  return top && chart && Number(top.getAttribute('data-rows')) > 0 ? performance.now() : null;
}"""


def chromium_path() -> str | None:
    """SWIMMY_CHROMIUM if set, else `chromium` on PATH, else /usr/bin/chromium (as tests/browser/conftest.py)."""
    override = os.environ.get("SWIMMY_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def write_config(directory: Path, listen: str) -> Path:
    """The daemon's config: every endpoint on a free loopback port, no workers, no breeding, fsync off."""
    ep = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("pub", "pull", "backtest", "control")}
    path = directory / "swimmy.toml"
    path.write_text(f"""[telemetry]
path = "var/telemetry.jsonl"
fsync = "off"

[zmq]
pub_endpoint = "{ep['pub']}"
pull_endpoint = "{ep['pull']}"
backtest_endpoint = "{ep['backtest']}"

[control]
endpoint = "{ep['control']}"

[workers]
embedded = 0

[school]
db_path = "var/school.db"
data_dir = {orjson.dumps(str(DATA_DIR)).decode()}
breed = false

[snapshots]
dir = "var/snapshots"

[metrics]
listen = "{listen}"
token_env = "SWIMMY_DASHBOARD_BENCH_TOKEN"
""")
    return path


def specs(n: int, rng: np.random.Generator) -> list[StrategySpec]:
    """n distinct valid EURUSD H1 strategies, round-robin over the families, params drawn on PARAM_SPACE's grid."""
    found: dict[str, StrategySpec] = {}
    families = list(PARAM_SPACE)
    i = 0
    while len(found) < n:
        family = families[i % len(families)]
        i += 1
        params: dict[str, float] = {}
        for key, r in PARAM_SPACE[family].items():
            steps = round((r.high - r.low) / r.step)
            value = r.low + r.step * int(rng.integers(0, steps + 1))
            params[key] = int(value) if r.kind == "int" else float(value)
        sl, tp = (float(rng.choice([0, 20, 30, 40, 60])) for _ in range(2))
        spec = StrategySpec(family, params, "EURUSD", "H1", sl, tp)
        try:
            validate(spec)
        except BacktestError:  # e.g. a cross with fast >= slow
            continue
        found.setdefault(spec.name(), spec)
    return list(found.values())


# Per rank, IS figures inside its band of the default [ranks] gates (swimmy/config/sections.py), so the daemon's
# start-up re-ranking keeps every rank as seeded: (sharpe, profit factor, max drawdown, trades) ranges.
BANDS = {
    "graveyard": ((-1.0, 0.14), (0.6, 1.04), (0.1, 0.6), (5, 400)),
    "B": ((0.15, 0.44), (1.05, 1.19), (0.05, 0.24), (20, 400)),
    "A": ((0.45, 0.9), (1.2, 1.6), (0.155, 0.195), (30, 400)),  # max DD above S's 0.15: an A stays A
    "S": ((0.9, 1.5), (1.6, 2.0), (0.03, 0.14), (60, 400)),
}


def seed(db_path: Path) -> dict[str, int]:
    """The store with 2,000 strategies over the ranks (RANK_COUNTS); the counts by rank as the store has them.

    The incubator's have no IS figures yet (they wait for their backtest); graveyard, B, A and S have IS figures
    in their rank's band and a DSR; A and S have passed the holdout, S also a validated walk-forward.
    """
    rng = np.random.default_rng(15)
    all_specs = specs(sum(RANK_COUNTS.values()), rng)
    now = time.time()
    ranks = [rank for rank, n in RANK_COUNTS.items() for _ in range(n)]
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with Store.open(db_path) as store:
        added = store.add_strategies([row_for(s, now, generation=int(rng.integers(0, 12))) for s in all_specs])
        assert added == len(all_specs), f"only {added} of {len(all_specs)} strategies were added"
        results = []
        for spec, rank in zip(all_specs, ranks, strict=True):
            if rank == "incubator":
                continue
            (s_lo, s_hi), (pf_lo, pf_hi), (dd_lo, dd_hi), (t_lo, t_hi) = BANDS[rank]
            sharpe = float(rng.uniform(s_lo, s_hi))
            metrics = {"trades": int(rng.integers(t_lo, t_hi + 1)), "sharpe": sharpe,
                       "profit_factor": float(rng.uniform(pf_lo, pf_hi)), "win_rate": float(rng.uniform(0.35, 0.65)),
                       "max_drawdown": float(rng.uniform(dd_lo, dd_hi)), "sortino": sharpe * 1.3,
                       "psr": float(min(0.999, max(0.0, 0.5 + sharpe / 3))), "pnl_pips": sharpe * 300,
                       "skew": float(rng.normal(0, 0.5)), "kurtosis": float(3 + abs(rng.normal(0, 1))),
                       "sharpe_per_bar": sharpe / 79, "bars": 6_000,
                       "dsr": float(min(0.999, max(0.0, 0.3 + sharpe / 2)))}
            results.append((spec.name(), metrics, rank))
        store.record_is_results(results, now)  # one transaction, as the school writes them
        for name, metrics, rank in results:
            if rank in ("A", "S"):
                store.set_oos_verdict(name, sharpe=float(metrics["sharpe"]) * 0.8, psr=0.97,
                                      trades=int(metrics["trades"]) // 4, decision="pass", now=now)
            if rank == "S":
                store.set_wfv_decision(name, "validated", now)
        return store.count_by_rank()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def start_daemon(config: Path, log: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SWIMMY_DASHBOARD_BENCH_TOKEN"}
    return subprocess.Popen([sys.executable, "-m", "swimmy", "run", "--config", str(config)], cwd=config.parent,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # its own process group: the kill reaches anything it started


def wait_ready(proc: subprocess.Popen[bytes], base: str) -> bool:
    """True once GET / answers 200; False if the daemon exits or the time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_SEC
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError):
            if http_get(base + "/")[0] == 200:
                return True
        time.sleep(0.1)
    return False


def stop_daemon(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then SIGKILL to its process group after 10 s; its exit code (None if it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    return None if proc.returncode is None or proc.returncode < 0 else proc.returncode


def one_load(browser: Any, url: str) -> dict[str, Any]:
    """A load of `url` in a fresh context: times, rows, points and every response (url, status, body, headers)."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        finished: list[Any] = []
        page.on("requestfinished", lambda request: finished.append(request))
        started = time.perf_counter()
        page.goto(url, wait_until="commit", timeout=RENDER_TIMEOUT_MS)
        handle = page.wait_for_function(READY_JS, polling="raf", timeout=RENDER_TIMEOUT_MS)
        wall = time.perf_counter() - started
        in_page = float(handle.json_value()) / 1000
        rows = int(page.get_attribute("#top", "data-rows") or 0)
        points = int(page.get_attribute("#population", "data-points") or 0)
        page.wait_for_load_state("networkidle")  # after the measurement: every response of the load is in
        responses = []
        for request in finished:
            response = request.response()
            if response is None:
                continue
            body = len(response.body())
            headers = request.sizes().get("responseHeadersSize", 0)
            responses.append({"url": request.url, "status": response.status, "body": body,
                              "headers": max(0, headers)})
        return {"wall": wall, "in_page": in_page, "rows": rows, "points": points, "responses": responses}
    finally:
        context.close()


def full_chart_extra(api_body: bytes) -> int:
    """How many bytes more /api/dashboard would be with a full chart (CHART_POINTS samples) than it is now."""
    doc = orjson.loads(api_body)
    population = doc["population"]
    now = population["t"][-1] if population["t"] else int(time.time())
    counts = {r: (population[r][-1] if population[r] else 0) for r in population if r != "t"}
    full = {"t": [now - 30 * (CHART_POINTS - 1 - i) for i in range(CHART_POINTS)]}
    full.update({r: [c + (i % 7) * 37 for i in range(CHART_POINTS)] for r, c in counts.items()})  # 4-5 digit counts
    return len(orjson.dumps(full)) - len(orjson.dumps(population))


def ratio_line(name: str, measured: str, target: str, ratio: float) -> str:
    return f"{name} {measured} (target {target}): ratio {ratio:.2f}  {'PASS' if ratio <= 1 else 'FAIL'}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    path = chromium_path()
    if path is None:
        print("dashboard bench: SKIPPED: no chromium binary (run `make browser` as root, or set SWIMMY_CHROMIUM)")
        return 0
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        print(f"dashboard bench: SKIPPED: cannot import playwright ({exc})")
        return 0

    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        directory = Path(tmp)
        listen = f"127.0.0.1:{free_port()}"
        config = write_config(directory, listen)
        started = time.perf_counter()
        counts = seed(directory / "var" / "school.db")
        note(f"seeded {sum(counts.values()):,} strategies in {time.perf_counter() - started:.1f} s")
        base = f"http://{listen}"
        with open(directory / "daemon.log", "wb") as log:
            proc = start_daemon(config, log)
            try:
                started = time.perf_counter()
                if not wait_ready(proc, base):
                    print("dashboard bench: BROKEN SETUP: the daemon did not serve GET / within "
                          f"{START_TIMEOUT_SEC:g} s (exit code {proc.poll()}); its output:", file=sys.stderr)
                    log.flush()
                    tail = (directory / "daemon.log").read_bytes()[-4000:].decode(errors="replace")
                    print(tail, file=sys.stderr)
                    return 1
                note(f"daemon serving / after {time.perf_counter() - started:.1f} s")
                status, api_body = http_get(base + "/api/dashboard")
                api = orjson.loads(api_body) if status == 200 else {}
                in_store = api.get("figures", {}).get("strategies", {})
                with sync_playwright() as pw:
                    try:
                        browser = pw.chromium.launch(executable_path=path, headless=True, timeout=30_000)
                    except PlaywrightError as exc:
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        print(f"dashboard bench: SKIPPED: chromium at {path} did not launch ({first})")
                        return 0
                    try:
                        loads = []
                        for k in range(args.loads):
                            try:
                                loads.append(one_load(browser, base + "/"))
                            except PlaywrightError as exc:
                                print(f"dashboard bench: BROKEN SETUP: load {k + 1} did not render within "
                                      f"{RENDER_TIMEOUT_MS / 1000:g} s: {str(exc).splitlines()[0]}", file=sys.stderr)
                                return 1
                            note(f"load {k + 1}: {loads[-1]['wall']:.3f} s")
                        chromium_version = browser.version
                    finally:
                        browser.close()
            finally:
                code = stop_daemon(proc)
                note(f"daemon stopped (exit code {code})")

    report(loads, counts, in_store, full_chart_extra(api_body) if api else 0, chromium_version)
    return 0


def report(loads: list[dict[str, Any]], seeded: dict[str, int], in_store: dict[str, int], chart_extra: int,
           chromium_version: str) -> None:
    first = loads[0]
    total_body = sum(r["body"] for r in first["responses"])
    total = total_body + sum(r["headers"] for r in first["responses"])
    print(f"dashboard bench: {sum(seeded.values()):,} strategies in the store ("
          + ", ".join(f"{r} {n:,}" for r, n in seeded.items()) + ")")
    if in_store:
        print("  the daemon counts: " + ", ".join(f"{r} {n:,}" for r, n in in_store.items()))
    print(f"  table rows {first['rows']} (of the best {TOP_ROWS}), chart points {first['points']}")
    print(f"first load, per URL (body + response headers; {len(first['responses'])} responses):")
    for r in sorted(first["responses"], key=lambda r: -r["body"]):
        print(f"  {r['url']:<52} {r['status']:>3} {r['body'] / 1000:8.1f} KB + {r['headers']:>4} B headers")
    print(f"  total {total / 1000:.1f} KB ({total_body / 1000:.1f} KB of bodies); a full day's chart "
          f"({CHART_POINTS} points) would add about {chart_extra / 1000:.1f} KB to /api/dashboard")
    others = [sum(r["body"] + r["headers"] for r in load["responses"]) for load in loads[1:]]
    if others and any(abs(b - total) > 2_000 for b in others):
        print("  note: the other loads weighed " + ", ".join(f"{b / 1000:.1f}" for b in others) + " KB")
    walls = [load["wall"] for load in loads]
    in_page = [load["in_page"] for load in loads]
    print(f"render, {len(loads)} loads each in a fresh context: wall "
          + ", ".join(f"{w:.3f}" for w in walls) + " s; the page's performance.now() "
          + ", ".join(f"{t:.3f}" for t in in_page) + " s")
    print(ratio_line("first load:", f"{total / 1000:.1f} KB", f"<= {TARGET_KB:g} KB", total / 1000 / TARGET_KB))
    median, worst = statistics.median(walls), max(walls)
    print(ratio_line("render:", f"median {median:.2f} s, max {worst:.2f} s", f"<= {TARGET_SEC:g} s",
                     median / TARGET_SEC)
          + ("" if worst <= TARGET_SEC else f" (the slowest load, {worst:.2f} s, missed it)"))
    print(f"  in the page (performance.now() when both were drawn): median {statistics.median(in_page):.2f} s, "
          f"max {max(in_page):.2f} s")
    print(f"versions: swimmy {__version__}, Python {platform.python_version()}, playwright {version('playwright')}, "
          f"chromium {chromium_version}; {os.cpu_count()} CPUs, {platform.machine()}")


if __name__ == "__main__":
    sys.exit(main())
