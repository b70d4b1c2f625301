"""Bring-your-own-data at M1 scale (issue 13): the import against pandas, and opening a universe in a worker.

Generates 8 years of M1 bars (about 3 million, seeded) as a MetaTrader 4 history CSV, then measures:

- import: `swimmy data import`'s work (read the MT4 file, check it, write the canonical .npy) against
  `pandas.read_csv(path, header=None)` of the same file, the baseline; target ratio (pandas / ours) >= 1;
- open: in a fresh process, `load_bars` of the canonical file (what a worker does on its first request):
  target <= 50 ms, and the process's private memory (RssAnon) growth <= 10 MB: the bars are the page
  cache's, shared by every worker, not a copy.

The backtest over the same bars is `bench/engine_bench.py`.

    python bench/data_bench.py [--bars 3000000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_OPEN_MS = 50.0
TARGET_RSS_MB = 10.0
TARGET_IMPORT_RATIO = 1.0

OPEN_PROBE = r"""
import sys, time
from pathlib import Path
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
import numpy  # the worker has numpy loaded before its first request
from swimmy.backtest.data import load_bars
before = anon()
started = time.perf_counter()
bars = load_bars(Path(sys.argv[1]), "BENCH", "M1")
elapsed = time.perf_counter() - started
total = float(bars.close.sum() + bars.open.sum() + bars.high.sum() + bars.low.sum())  # touch every page
print(elapsed * 1000, (anon() - before) / 2**20, len(bars))
"""


def write_mt4(path: Path, n: int) -> None:
    """n M1 bars, weekdays only, as MT4 writes its history CSV: `YYYY.MM.DD,HH:MM,o,h,l,c,v`, no header."""
    rng = np.random.default_rng(13)
    start = np.datetime64("2015-01-05T00:00", "m").astype(np.int64) * 60
    minutes = np.arange(int(n * 7 / 5) + 7 * 1440, dtype=np.int64)
    ts = start + 60 * minutes
    weekday = ((ts // 86_400) + 3) % 7  # 0 = Monday
    ts = ts[weekday < 5][:n]
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + np.abs(rng.normal(0, 5e-5, n))
    low = np.minimum(open_, close) - np.abs(rng.normal(0, 5e-5, n))
    volume = rng.integers(1, 500, n)
    stamp = np.datetime_as_string(ts.astype("datetime64[s]"), unit="m")
    date = np.char.replace(np.char.partition(stamp, "T")[:, 0], "-", ".")
    clock = np.char.partition(stamp, "T")[:, 2]
    columns = [date, clock, *(np.char.mod("%.5f", x) for x in (open_, high, low, close)), volume.astype(str)]
    with path.open("w") as f:
        step = 500_000
        for i in range(0, n, step):
            rows = [",".join(r) for r in zip(*(c[i:i + step] for c in columns), strict=True)]
            f.write("\n".join(rows) + "\n")


def ratio_line(name: str, value: float, target: float, unit: str, *, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return f"{name:<44} {value:10.2f} {unit:<4} target {'>=' if higher_is_better else '<='} {target:g}  " \
           f"{'PASS' if ok else 'FAIL'}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=3_000_000)
    args = parser.parse_args()
    import pandas as pd

    from swimmy.backtest.formats import read_source
    from swimmy.cli.datatools import convert

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "EURUSD1.csv"
        started = time.perf_counter()
        write_mt4(src, args.bars)
        print(f"generated {args.bars:,} M1 bars as MT4 CSV ({src.stat().st_size / 2**20:.0f} MiB) "
              f"in {time.perf_counter() - started:.1f} s")
        pandas_sec = ours_sec = read_sec = float("inf")
        for _ in range(3):  # best of three: the page cache is warm for both after the first
            started = time.perf_counter()
            pd.read_csv(src, header=None)
            pandas_sec = min(pandas_sec, time.perf_counter() - started)
            started = time.perf_counter()
            read_source(src, format="mt4", tz="UTC")
            read_sec = min(read_sec, time.perf_counter() - started)
            started = time.perf_counter()
            convert(src, Path(tmp), symbol="BENCH", timeframe="M1", tz="UTC", fmt="mt4")  # what `data import` does
            ours_sec = min(ours_sec, time.perf_counter() - started)
        print(f"import: ours {ours_sec:.2f} s (read and check every row, write), "
              f"pandas.read_csv {pandas_sec:.2f} s (read only)")
        print(ratio_line("import speed (pandas / ours)", pandas_sec / ours_sec, TARGET_IMPORT_RATIO, "x",
                         higher_is_better=True))
        print(f"  (reading and checking alone: {read_sec:.2f} s, {pandas_sec / read_sec:.2f} x pandas; the rest is "
              "writing the canonical file and its hash)")
        probes = []
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", OPEN_PROBE, tmp], capture_output=True, text=True,
                                 check=True).stdout.split()
            probes.append((float(out[0]), float(out[1]), int(out[2])))
        open_ms = min(p[0] for p in probes)
        rss_mb = max(p[1] for p in probes)
        print(f"open: {probes[0][2]:,} bars in a fresh process, best of 3")
        print(ratio_line("open a universe (load_bars)", open_ms, TARGET_OPEN_MS, "ms", higher_is_better=False))
        print(ratio_line("private memory growth (RssAnon)", rss_mb, TARGET_RSS_MB, "MB", higher_is_better=False))


if __name__ == "__main__":
    main()
