"""One backtest over 3 million M1 bars in <= 100 ms, every family, with and without SL/TP (issue 13).

Generates seeded M1 bars (numpy default_rng(13): a geometric random walk from 1.10, sigma 1 pip a bar, open =
the previous close, half-normal wicks of 0.5 pip, prices to 5 decimals, weekdays only; read-only arrays, as a
worker's memory-mapped bars are) and times
`run_backtest(spec, bars, costs=Costs(0.8, 0.2))` in this process, single-threaded, as a worker runs it with
its bars cached: one warm-up call, then the best of 3. Each family at its usual parameters, without stops and
with SL 20 / TP 40 pips; the same at 100,000 bars. Target: <= 100 ms a backtest, whatever the bar count (at 3M
bars it is issue 13's; at 100k it shows the fixed costs, in ns a bar).

Also, as information: what numba costs a fresh process (the engine's loops are compiled by numba and cached
beside swimmy/backtest/kernels*.py): `import numba` (time and RSS), and `engine.warm_up()` (every kernel a
worker needs) with an empty cache (the compile, once per machine and source version) and with a warm one
(what each new worker pays).

    python bench/engine_bench.py [--bars 3000000] [--small-bars 100000] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from swimmy.backtest.engine import Bars, Costs, run_backtest
from swimmy.backtest.strategies import StrategySpec

TARGET_MS = 100.0
TARGET_BARS = 3_000_000
RUNS = 3
COSTS = Costs(0.8, 0.2)
SL_PIPS, TP_PIPS = 20.0, 40.0
FAMILIES: list[tuple[str, dict[str, float]]] = [
    ("sma_cross", {"fast": 10, "slow": 30}),
    ("ema_cross", {"fast": 10, "slow": 30}),
    ("rsi_reversion", {"period": 14, "lower": 30, "upper": 70}),
    ("bollinger_breakout", {"period": 20, "k": 2}),
    ("donchian_breakout", {"period": 20}),
]

# A fresh process: numba's import, then engine.warm_up (every family with and without stops: every kernel).
FIRST_CALL_PROBE = r"""
import json, time
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
from swimmy.backtest.engine import warm_up
before = rss_mb()
started = time.perf_counter()
import numba
import_ms = (time.perf_counter() - started) * 1000
after = rss_mb()
started = time.perf_counter()
warm_up()
print(json.dumps({"import_ms": import_ms, "import_rss_mb": after - before,
                  "first_ms": (time.perf_counter() - started) * 1000, "rss_mb": rss_mb()}))
"""


def make_bars(n: int) -> Bars:
    """n seeded M1 bars on weekdays (see the module docstring)."""
    rng = np.random.default_rng(13)
    close = np.round(1.10 * np.exp(np.cumsum(rng.normal(0.0, 1e-4 / 1.10, n))), 5)
    open_ = np.concatenate(([1.10], close[:-1]))
    high = np.round(np.maximum(open_, close) + np.abs(rng.normal(0.0, 5e-5, n)), 5)
    low = np.round(np.minimum(open_, close) - np.abs(rng.normal(0.0, 5e-5, n)), 5)
    minutes = np.arange(n * 7 // 5 + 7 * 1440, dtype=np.int64)
    ts = 1_262_563_200 + 60 * minutes  # 2010-01-04 00:00Z, a Monday
    ts = ts[(ts // 86_400 + 3) % 7 < 5][:n]
    columns = (ts, open_, high, low, close)
    for a in columns:
        a.flags.writeable = False  # as a worker holds them: memory-mapped, read-only
    return Bars(*columns, "synthetic M1")


def best_ms(spec: StrategySpec, bars: Bars) -> tuple[float, int]:
    """One warm-up backtest, then the best of RUNS: (ms, trades)."""
    trades = run_backtest(spec, bars, costs=COSTS).metrics["trades"]
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        run_backtest(spec, bars, costs=COSTS)
        best = min(best, time.perf_counter() - started)
    return best * 1000, int(trades or 0)


def first_call(cache_dir: str) -> dict[str, float]:
    """FIRST_CALL_PROBE in a fresh interpreter with numba's cache in cache_dir."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", FIRST_CALL_PROBE], env=env, check=True, capture_output=True,
                         text=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=TARGET_BARS)
    parser.add_argument("--small-bars", type=int, default=100_000)
    parser.add_argument("--no-compile", action="store_true", help="skip the fresh-process compile/import probe")
    args = parser.parse_args()
    print(f"engine bench: {os.cpu_count()} cores, numpy {np.__version__}, single-threaded; costs 0.8 + 0.2 pips; "
          f"best of {RUNS} after a warm-up")
    failed = []
    for n in (args.bars, args.small_bars):
        started = time.perf_counter()
        bars = make_bars(n)
        print(f"\n{n:,} M1 bars (generated in {time.perf_counter() - started:.1f} s)")
        print(f"  {'backtest':<44} {'ms':>8} {'target':>7} {'ratio':>6} {'ns/bar':>7} {'trades':>8}")
        for family, params in FAMILIES:
            for sl, tp in ((0.0, 0.0), (SL_PIPS, TP_PIPS)):
                spec = StrategySpec(family, params, "EURUSD", "M1", sl, tp)
                ms, trades = best_ms(spec, bars)
                name = f"{family} {'/'.join(f'{v:g}' for v in params.values())}" + (
                    f" SL {sl:g}/TP {tp:g}" if sl or tp else "")
                ok = ms <= TARGET_MS
                if not ok:
                    failed.append(f"{name} at {n:,} bars")
                print(f"  {name:<44} {ms:8.1f} {TARGET_MS:7.0f} {ms / TARGET_MS:6.2f} {ms * 1e6 / n:7.1f} "
                      f"{trades:8,}  {'PASS' if ok else 'FAIL'}")
    if not args.no_compile:
        with tempfile.TemporaryDirectory() as cache:
            cold = first_call(cache)
            warm = first_call(cache)
        print("\nnumba in a fresh process (no target):")
        print(f"  import numba                          {cold['import_ms']:8.0f} ms, "
              f"+{cold['import_rss_mb']:.0f} MB RSS (VmRSS {warm['rss_mb']:.0f} MB after warm_up)")
        print(f"  engine.warm_up, empty cache (compile) {cold['first_ms']:8.0f} ms  (every family, stops or not)")
        print(f"  engine.warm_up, warm cache (a worker) {warm['first_ms']:8.0f} ms")
    total = 2 * len(FAMILIES)
    print(f"\n{2 * total - len(failed)}/{2 * total} PASS" + (f"; FAIL: {', '.join(failed)}" if failed else ""))


if __name__ == "__main__":
    main()
