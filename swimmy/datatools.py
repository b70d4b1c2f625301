"""`swimmy data check` and `swimmy data import`: the operator's market-data tools (CLI only).

`data check` reads every configured universe the way the daemon does and reports, per
universe, its file, bars and range, then one line per kind of problem
(swimmy/backtest/datacheck.py). Exit 0 when every universe is clean, 1 otherwise.

`data import` (coming) reads a file in one of the formats of swimmy/backtest/formats.py,
converts broker time to UTC, optionally resamples, checks the bars, and writes the
canonical file (swimmy/backtest/canonical.py) into the universe's data directory. A
running daemon picks the new file up at its next cycle (a new `data_hash`) and emits
`data.imported` from the file's sidecar.
"""

from __future__ import annotations

from typing import TextIO

from swimmy.backtest.data import data_path, load_bars, universe_dir, universe_name
from swimmy.backtest.datacheck import check_bars, iso
from swimmy.config import Config
from swimmy.errors import DataError


def run_check(cfg: Config, out: TextIO) -> int:
    """Report every configured universe; 0 when all are clean, 1 when any has a problem or cannot be read."""
    bad = 0
    for symbol, timeframe in cfg.school.universes():
        universe = universe_name(symbol, timeframe)
        path = data_path(universe_dir(cfg, symbol), symbol, timeframe)
        try:
            bars = load_bars(universe_dir(cfg, symbol), symbol, timeframe)
        except DataError as exc:
            bad += 1
            out.write(f"{universe}  {path}  UNUSABLE\n  problem: {exc}\n")
            continue
        findings = check_bars(bars, timeframe)
        ts = bars.timestamps
        verdict = "ok" if not findings else f"{len(findings)} problem{'s' if len(findings) > 1 else ''}"
        out.write(f"{universe}  {path}  {len(bars):,} bars  {iso(int(ts[0]))} .. {iso(int(ts[-1]))}  {verdict}\n")
        for f in findings:
            out.write(f"  problem ({f.kind}): {f.message}\n")
        bad += bool(findings)
    if bad:
        out.write(f"{bad} of {len(cfg.school.universes())} universes have problems (docs/data.md, \"data check\")\n")
    return 1 if bad else 0
