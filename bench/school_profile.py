"""The daemon's own cost per IS trial of the school, in one process, without sockets (a helper of fleet_bench.py).

Run:  .venv/bin/python bench/school_profile.py [--trials N] [--tree PATH]

Not run by `make bench` (the name does not end in _bench.py): a tool for finding costs. The real School, Store
(a SQLite file in a temp dir) and BacktestClient, as the daemon runs them, on an asyncio loop; one fake worker
(credit 4) whose every BACKTEST is answered at once with a canned IS result (metrics and a returns sketch)
through `handle_result`, the way the dispatcher hands a BACKTEST_RESULT over. What is left is the school's
work per trial: breed, write the child, build and send the request, match the result, record the trial,
deflate, rank, write. ZeroMQ, the event loop's I/O and the workers are not in it (bench/fleet_profile.py
daemon-school has them). Printed: wall and CPU time per trial (the best of --repeat runs, each on a fresh
store). `--tree` measures another checkout's code (a `git worktree` of an older commit) with the same tool.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--trials", type=int, default=20_000)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
args = ap.parse_args()
sys.path.insert(0, str(args.tree / "tests"))
sys.path.insert(0, str(args.tree))

from schoolkit import WORKER, make_kit, work_message  # noqa: E402 - imports swimmy (one BLAS thread) before numpy

from swimmy.school.loop import DataWindow, School  # noqa: E402
from swimmy.wire.messages import result_body  # noqa: E402

HOUR = 3600
IS_BARS = 4680  # the shipped sample's IS range (fleet_bench.py)


async def run_once(trials: int, seed: int) -> tuple[float, float]:
    import numpy as np

    kit = make_kit(Path(tempfile.mkdtemp(prefix="swimmy-school-prof-")),
                   {"school": {"breed_per_cycle": 0, "population_max": 1_000_000}})
    kit.pipe.open = False
    kit.pipe.ready(credit=4)
    school = School(kit.cfg, kit.store, kit.client, kit.emit, kit.clock, rng=random.Random(seed),
                    workers_ready=lambda: True)
    ts = np.arange(1_700_000_000, 1_700_000_000 + 6000 * HOUR, HOUR, dtype=np.int64)
    school._windows[("EURUSD", "H1")] = DataWindow(int(ts[IS_BARS]), ts[:IS_BARS])
    rng = np.random.default_rng(seed)
    sketch = {"sums": [float(x) for x in rng.normal(0, 1e-3, 32)], "sumsqs": [1e-5] * 32, "counts": [146] * 32}
    school.cycle()
    sent = kit.pipe.sent
    done = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while done < trials:
        for req in sent[done:]:
            sharpe = float(rng.normal(-0.2, 0.5))  # mostly graveyard, some B, as from a fresh school
            metrics = {"trades": 60, "wins": 25, "losses": 35, "win_rate": 0.41, "pnl_pips": 12.0,
                       "profit_factor": 0.9, "sharpe": sharpe, "sortino": sharpe * 1.3, "max_drawdown": 0.12,
                       "psr": 0.4, "skew": 0.1, "kurtosis": 4.0, "sharpe_per_bar": sharpe / 79.0}
            body = result_body(request_id=req["request_id"], strategy_name=req["strategy"]["name"], status="ok",
                               metrics=metrics, bars=IS_BARS, start_ts=None, end_ts=req["end_ts"], elapsed_ms=0.3,
                               worker="fake", extra={"sketch": sketch})
            kit.client.handle_result(WORKER, work_message(body))
            done += 1
        await asyncio.sleep(0)  # the school's top-up and flush run as the daemon's loop runs them
        kit.clock.advance(0.001)
    school.flush_results()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    kit.store.close()
    return wall / done * 1e6, cpu / done * 1e6


def main() -> int:
    runs = [asyncio.run(run_once(args.trials, seed)) for seed in range(args.repeat)]
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"school, daemon side ({args.tree}): {args.trials} IS trials per run, best of {args.repeat}: "
          f"{wall:.0f} us wall, {cpu:.0f} us CPU a trial (runs: "
          + ", ".join(f"{w:.0f}/{c:.0f}" for w, c in runs) + " us wall/CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
