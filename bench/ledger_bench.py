"""The trials ledger at scale (issue 11): disk per universe at 10^7 trials and the cost of an N_eff update.

Targets: at 10^7 trials a universe's ledger stays <= 500 MB on disk, and an update of N_eff takes <= 1 s.
The ledger keeps per-trial rows for the newest 10^6 trials and aggregates beyond them, so its size at
10^7 trials is its size at 10^6 rows plus constant-size aggregates: this bench writes 10^6 + 2 x 10^5
trials through the real Ledger and Store (batches of 256, as the school flushes them), prunes to 10^6
rows, measures the file, then times single N_eff updates (one flush of 256 results) and the audit's
random draw of 50 trials from the recent window. Prints each figure with its target and the ratio.

    python bench/ledger_bench.py [--rows 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from swimmy.school.ledger import Aggregate, Ledger, sketch_blob
from swimmy.store import Store, TrialRow

UNIVERSE = "EURUSD_H1"
BATCH = 256
TARGET_MB = 500.0
TARGET_UPDATE_SEC = 1.0


def batch(rng: np.random.Generator, start: int, n: int) -> list[TrialRow]:
    sums = rng.normal(0, 0.004, size=(n, 32))
    rows = []
    for i in range(n):
        blob = sketch_blob({"sums": sums[i].tolist(), "sumsqs": (np.abs(sums[i]) * 0.01).tolist()})
        rows.append(TrialRow(UNIVERSE, f"{start + i:016x}{'0' * 48}", "sma_cross", 3, 0.01, -0.1, 4.0, 22_500,
                             float(start + i), blob))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="per-trial rows kept (the window)")
    parser.add_argument("--quick", action="store_true", help="10^5 rows: a fast look")
    args = parser.parse_args()
    keep = 100_000 if args.quick else args.rows
    total = keep + keep // 5
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "school.db"
        store = Store.open(db)
        ledger = Ledger(store, keep_rows=keep)
        started = time.perf_counter()
        for start in range(0, total, BATCH):
            ledger.record(batch(rng, start, min(BATCH, total - start)), float(start))
        write_sec = time.perf_counter() - started
        store.prune_trials(UNIVERSE, keep)
        store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store._connection().execute("VACUUM")
        files = {p.name: p.stat().st_size for p in Path(tmp).iterdir() if p.name.startswith("school.db")}
        size_mb = files["school.db"] / 1e6  # the WAL is bounded apart (journal_size_limit, 64 MiB)
        n, n_eff = ledger.counts(UNIVERSE)
        updates = []
        for k in range(20):
            rows = batch(rng, total + k * BATCH, BATCH)
            t = time.perf_counter()
            ledger.record(rows, 0.0)
            updates.append(time.perf_counter() - t)
        t = time.perf_counter()
        drawn = store.sample_trials(UNIVERSE, 50, seed=3)
        draw_sec = time.perf_counter() - t
        store.close()
    per_row = size_mb * 1e6 / keep
    print(f"ledger bench: {total:,} trials written in {write_sec:.1f} s ({total / write_sec:,.0f}/s), "
          f"{keep:,} rows kept; N = {n:,}, N_eff = {n_eff:,.0f}")
    print(f"{'figure':42} {'measured':>12} {'target':>10} {'ratio':>7}")
    at_1e6 = per_row * 1_000_000 / 1e6
    aggregate_bytes = len(Aggregate().to_bytes())
    print(f"{'disk per universe at 10^7 trials (MB)':42} {at_1e6:12.1f} {TARGET_MB:10.0f} {at_1e6 / TARGET_MB:7.2f}"
          f"   ({per_row:.0f} B per kept row; rows beyond 10^6 are pruned; aggregate {aggregate_bytes} B)")
    p99 = sorted(updates)[int(0.99 * (len(updates) - 1))]
    print(f"{'N_eff update, one flush of 256 (s, p99)':42} {p99:12.4f} {TARGET_UPDATE_SEC:10.1f} "
          f"{p99 / TARGET_UPDATE_SEC:7.4f}   (median {statistics.median(updates):.4f})")
    print(f"{'audit draw of 50 from the window (s)':42} {draw_sec:12.4f} {'':>10} {'':>7}   ({len(drawn)} drawn)")
    print(f"machine: {os.cpu_count()} cores; SQLite WAL, synchronous=NORMAL; files {files}")


if __name__ == "__main__":
    main()
