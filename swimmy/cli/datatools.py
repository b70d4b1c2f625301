"""`swimmy data check` and `swimmy data import`: the operator's market-data tools (CLI only).

`data check` reads every configured universe the way the daemon does and reports, per
universe, its file, bars and range, then one line per kind of problem
(swimmy/backtest/datacheck.py). Exit 0 when every universe is clean, 1 otherwise.

`data import` reads a file in one of the formats of swimmy/backtest/formats.py,
converts broker time to UTC, optionally resamples, checks the bars, and writes the
canonical file (swimmy/backtest/canonical.py) into the universe's data directory. A
running daemon picks the new file up at its next cycle (a new `data_hash`) and emits
`data.imported` from the file's sidecar.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from rich.console import Console

from swimmy.backtest.canonical import canonical_path, write_canonical
from swimmy.backtest.data import data_path, load_bars, universe_dir, universe_name
from swimmy.backtest.datacheck import check_bars, iso
from swimmy.backtest.strategies import TIMEFRAME_SEC
from swimmy.cli.progress import NO_STEPS, Steps, progress
from swimmy.config import Config
from swimmy.errors import DataError, UsageError


def run_check(cfg: Config, out: TextIO, console: Console | None = None) -> int:
    """Report every configured universe; 0 when all are clean, 1 when any has a problem or cannot be read."""
    bad = 0
    universes = cfg.school.universes()
    with progress("data check", len(universes), console=console, transient=True) as steps:  # a bar on a terminal only
        for symbol, timeframe in universes:
            universe = universe_name(symbol, timeframe)
            steps.update(f"data check: {universe}")
            bad += _check_one(cfg, symbol, timeframe, out, steps)
            steps.advance()
    if bad:
        out.write(f"{bad} of {len(cfg.school.universes())} universes have problems (docs/data.md, \"data check\")\n")
    return 1 if bad else 0


def _check_one(cfg: Config, symbol: str, timeframe: str, out: TextIO, steps: Steps) -> int:
    """Check one universe's file and print its lines (above the bar on a terminal); 1 when it has a problem."""
    universe = universe_name(symbol, timeframe)
    path = data_path(universe_dir(cfg, symbol), symbol, timeframe)
    try:
        bars = load_bars(universe_dir(cfg, symbol), symbol, timeframe)
    except DataError as exc:
        steps.echo(f"{universe}  {path}  UNUSABLE\n  problem: {exc}", out)
        return 1
    findings = check_bars(bars, timeframe)
    ts = bars.timestamps
    verdict = "ok" if not findings else f"{len(findings)} problem{'s' if len(findings) > 1 else ''}"
    lines = [f"{universe}  {path}  {len(bars):,} bars  {iso(int(ts[0]))} .. {iso(int(ts[-1]))}  {verdict}"]
    lines += [f"  problem ({f.kind}): {f.message}" for f in findings]
    steps.echo("\n".join(lines), out)
    return int(bool(findings))


def run_import(cfg: Config, source: Path, *, symbol: str, timeframe: str, tz: str | None, fmt: str | None,
               resample_to: str | None, out: TextIO, console: Console | None = None) -> int:
    """Convert `source` into the canonical file of (symbol, timeframe or resample_to); 0 on success.

    On a terminal, a bar on stderr shows the phases (read, check, resample, write and hash) as they happen.
    """
    if not source.is_file():
        raise UsageError(f"{source}: no such file")
    target = resample_to or timeframe
    if not cfg.school.trades(symbol, target):
        print(f"swimmy: note: {symbol} {target} is not in this config's school.symbols/timeframes; the file is "
              "written, but the school trades it only once the config lists it", file=sys.stderr)
    started = time.perf_counter()
    phases = 4 if resample_to is not None and resample_to != timeframe else 3
    with progress(f"import {source.name}", phases, console=console, transient=True) as steps:
        path, sidecar = convert(source, universe_dir(cfg, symbol), symbol=symbol, timeframe=timeframe, tz=tz,
                                fmt=fmt, resample_to=resample_to, steps=steps)
    elapsed = time.perf_counter() - started
    out.write(f"universe: {universe_name(symbol, target)}\npath: {path}\nformat: {sidecar['format']}\n"
              f"bars: {sidecar['bars']:,}\nrange: {iso(sidecar['first_ts'])} .. {iso(sidecar['last_ts'])}\n"
              f"data_hash: {sidecar['data_hash']}\nseconds: {elapsed:.2f}\n")
    return 0


def convert(source: Path, directory: Path, *, symbol: str, timeframe: str, tz: str | None = None,
            fmt: str | None = None, resample_to: str | None = None,
            steps: Steps = NO_STEPS) -> tuple[Path, dict[str, Any]]:
    """Read, check, resample and write one universe: (its canonical path, its sidecar). DataError on bad data.

    `read_source` checks every row (prices, OHLC order, strictly ascending UTC times), so nothing here checks
    them again; what it adds is the timeframe: the file's own step must be `timeframe`'s. `steps` hears of
    each phase as it starts and ends.
    """
    from swimmy.backtest.formats import infer_step, read_source, resample

    target = resample_to or timeframe
    steps.update(f"read {source.name} ({_size(source)})")
    parsed = read_source(source, format=fmt, tz=tz)
    steps.advance(f"check {len(parsed.ts):,} {parsed.format} bars are {timeframe}")
    step = infer_step(parsed.ts)
    if step != TIMEFRAME_SEC[timeframe] and len(parsed.ts) > 1:
        raise DataError(f"{source}: bars are usually {step} s apart, but --timeframe {timeframe} is "
                        f"{TIMEFRAME_SEC[timeframe]} s: pass the file's own timeframe (and --resample-to)")
    if resample_to is not None and resample_to != timeframe:
        if TIMEFRAME_SEC[resample_to] < TIMEFRAME_SEC[timeframe] or TIMEFRAME_SEC[resample_to] % step:
            raise UsageError(f"--resample-to {resample_to}: can only make coarser bars from {timeframe}, "
                             "a whole number of them per bar")
        steps.advance(f"resample {len(parsed.ts):,} {timeframe} bars to {resample_to}")
        parsed = resample(parsed, TIMEFRAME_SEC[resample_to])
    path = canonical_path(directory, symbol, target)
    steps.advance(f"write and hash {path.name} ({len(parsed.ts):,} bars)")
    sidecar = write_canonical(path, parsed.ts, parsed.open, parsed.high, parsed.low, parsed.close,
                              np.asarray(parsed.volume, dtype=np.float64),
                              meta={"symbol": symbol, "timeframe": target, "source": str(source.resolve()),
                                    "format": parsed.format, "tz": tz or "the format's default",
                                    "source_timeframe": timeframe,
                                    "imported_at": datetime.now(UTC).isoformat(timespec="seconds")})
    steps.advance(f"imported {path.name}")
    return path, sidecar


def _size(path: Path) -> str:
    size = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
