"""`swimmy backtest NAME`: one stored strategy, backtested in this process on the config's data."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from swimmy.backtest.data import load_bars, universe_dir
from swimmy.backtest.engine import Costs, run_backtest
from swimmy.backtest.strategies import spec_of
from swimmy.config import Config, instrument_costs
from swimmy.errors import StoreError, UsageError
from swimmy.rfc3339 import NoTimeZone, parse_rfc3339
from swimmy.store import Store

LONG_RANGE_BARS = 50_000  # beyond this the phases are shown as they happen


def parse_date(text: str, flag: str) -> int:
    """YYYY-MM-DD (midnight UTC) or an RFC 3339 time with a zone -> Unix seconds."""
    try:
        if len(text) == 10:
            return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
        return int(parse_rfc3339(text).timestamp())
    except NoTimeZone:
        raise UsageError(f"{flag}: {text!r} has no time zone; add Z or +00:00") from None
    except ValueError:
        raise UsageError(f"{flag}: expected YYYY-MM-DD or an RFC 3339 time, got {text!r}") from None


def _progress(out: TextIO, step: int, steps: int, what: str) -> None:
    width = 24
    filled = width * step // steps
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {what:<40}", end="" if step < steps else "\n", file=out,
          flush=True)


def run_offline(cfg: Config, name: str, date_from: str | None, date_to: str | None,
                out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Print the metrics of one stored strategy over [from, to); exit code."""
    start_ts = parse_date(date_from, "--from") if date_from else None
    end_ts = parse_date(date_to, "--to") if date_to else None
    try:
        with Store.open_readonly(cfg.school.db_path) as store:
            row = store.get_strategy(name)
    except StoreError as exc:
        raise UsageError(f"cannot read the strategy store: {exc}") from None
    if row is None:
        raise UsageError(f"unknown strategy {name!r} (see `swimmy strategies list`)")
    spec = spec_of(row)
    bars = load_bars(universe_dir(cfg, spec.symbol), spec.symbol, spec.timeframe)
    show = len(bars) > LONG_RANGE_BARS and err.isatty()
    if show:
        _progress(err, 1, 2, f"loaded {len(bars):,} bars; backtesting")
    started = time.perf_counter()
    result = run_backtest(spec, bars, start_ts=start_ts, end_ts=end_ts,
                          costs=Costs(**instrument_costs(cfg, spec.symbol)))
    elapsed_ms = (time.perf_counter() - started) * 1000
    if show:
        _progress(err, 2, 2, f"done in {elapsed_ms:.0f} ms")
    span = ""
    if result.start_ts is not None and result.end_ts is not None:
        span = (f"{datetime.fromtimestamp(result.start_ts, UTC):%Y-%m-%d %H:%M} .. "
                f"{datetime.fromtimestamp(result.end_ts, UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{name}  ({spec.family} {dict(spec.params)}, sl {spec.sl_pips:g} tp {spec.tp_pips:g} pips)", file=out)
    print(f"bars: {result.bars:,}  {span}  ({elapsed_ms:.1f} ms)", file=out)
    for key, value in result.metrics.items():
        text = "null" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        print(f"  {key:<14} {text}", file=out)
    return 0
