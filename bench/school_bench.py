"""The school tick at 100,000 strategies (the school issue's numbers).

Run:  .venv/bin/python bench/school_bench.py [--strategies N] [--reps R]

A real SQLite store (WAL, in a temp dir) with N strategies of every rank and
realistic IS figures; then, medians over R repetitions:

  - OOS candidate selection: OosRequester.tick()'s query (A base met, no OOS Sharpe, best first)
  - WFV candidate selection: WfvScheduler.tick() with free slots (B/A/S without a verdict)
  - wfv_pending_stats(now) with max_pending runs pending
  - and, as the baseline that shows why the indexes matter, the same OOS selection as a
    full scan in Python over every row (what a store without the query would do)

Target: candidate selection and wfv_pending_stats <= 10 ms at 100,000 and not growing with the
population (the 10,000-row figures are printed beside them). Exit 0 always: it is a report.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from swimmy.backtest.client import BacktestClient
from swimmy.config import config_from_mapping
from swimmy.school.oos import OosRequester
from swimmy.school.wfv import WfvScheduler
from swimmy.store import Store, StrategyRow, WfvRow
from swimmy.testing import CapturingEmitter, FakeClock

RANK_WEIGHTS = {"graveyard": 0.5, "incubator": 0.05, "B": 0.35, "A": 0.08, "S": 0.02}


def populate(store: Store, n: int, rng: random.Random) -> None:
    ranks = list(RANK_WEIGHTS)
    weights = list(RANK_WEIGHTS.values())
    rows = []
    for i in range(n):
        rank = rng.choices(ranks, weights)[0]
        ranked = rank != "incubator"
        sharpe = rng.gauss(0.3, 0.5) if ranked else None
        rows.append(StrategyRow(
            name=f"sma_cross-EURUSD-H1-{i:08x}", rules_hash=f"{i:016x}", family="sma_cross",
            params={"fast": 10, "slow": 30}, symbol="EURUSD", timeframe="H1", rank=rank,
            is_trades=rng.randint(5, 200) if ranked else None, is_sharpe=sharpe,
            is_profit_factor=rng.uniform(0.7, 2.5) if ranked else None,
            is_win_rate=rng.uniform(0.3, 0.7) if ranked else None,
            is_max_drawdown=rng.uniform(0.01, 0.3) if ranked else None,
            oos_sharpe=rng.gauss(0.3, 0.5) if rank in ("A", "S") else None,
            wfv_decision=rng.choice([None, "validated", "weak"]) if rank in ("A", "S") else None,
            created_at=float(i), updated_at=float(i),
        ))
    store.add_strategies(rows)


def median_ms(fn: object, reps: int) -> tuple[float, float]:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def measure(n: int, reps: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "school.db")
        populate(store, n, random.Random(42))
        cfg = config_from_mapping({"wfv": {"interval_sec": 0, "max_pending": 1000, "max_per_run": 1}},
                                  base_dir=Path(tmp))
        clock = FakeClock()
        emit = CapturingEmitter()
        client = BacktestClient(lambda frames: True, emit, clock, timeout_sec=120)
        oos = OosRequester(cfg, store, client, emit, clock, oos_start=lambda s, t: 1, rerank=lambda n, w: None)
        wfv = WfvScheduler(cfg, store, client, emit, clock, is_timestamps=lambda s, t: list(range(0, 3600 * 500, 3600)),
                           rerank=lambda n, w: None)
        a = cfg.ranks.A
        for i in range(cfg.wfv.max_pending):
            wfv.pending[f"w{i}"] = WfvRow(f"w{i}", "x", clock.time() - i, "scheduled", 0.2)
        out = {
            "oos candidates (indexed query)": median_ms(lambda: store.oos_candidates(
                min_trades=a.min_trades, sharpe=a.sharpe, profit_factor=a.profit_factor, win_rate=a.win_rate,
                max_drawdown=a.max_drawdown, limit=200), reps),
            "wfv candidates (indexed query)": median_ms(lambda: store.wfv_candidates(
                cfg.wfv.max_per_run, exclude={f"sma_cross-EURUSD-H1-{i:08x}" for i in range(2)}), reps),
            "wfv_pending_stats (1,000 pending)": median_ms(lambda: wfv.pending_stats(clock.time()), reps),
            "oos candidates, full scan (baseline)": median_ms(lambda: [
                r for r in store.list_strategies() if r.rank in ("B", "A", "S") and r.oos_sharpe is None
                and (r.is_sharpe or 0) >= a.sharpe], max(1, reps // 5)),
        }
        del oos
        store.close()
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=25)
    args = ap.parse_args()
    print("swimmy school bench")
    print(f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    small = measure(args.strategies // 10, args.reps)
    big = measure(args.strategies, args.reps)
    print(f"\n  {'figure':<40} {args.strategies // 10:>10,} rows  {args.strategies:>10,} rows   (median / max ms)")
    for key in big:
        s, b = small[key], big[key]
        print(f"  {key:<40} {s[0]:8.3f} / {s[1]:6.2f}  {b[0]:8.3f} / {b[1]:6.2f}")
    print("\n  target                                   wanted      measured   result")
    targets = ("oos candidates (indexed query)", "wfv candidates (indexed query)", "wfv_pending_stats (1,000 pending)")
    for key in targets:
        value = big[key][0]
        print(f"  {key:<40} <= 10 ms  {value:9.3f} ms   {'PASS' if value <= 10 else '*** FAIL ***'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
