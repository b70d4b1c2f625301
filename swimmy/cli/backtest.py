"""`swimmy backtest NAME` / `--rank R`: stored strategies, backtested in this process on the config's data.

On a terminal a progress bar on stderr shows the phases (one strategy) or N of M (a rank); results go to stdout.
Without `--to`, a strategy with no OOS verdict yet is backtested up to its universe's holdout only (SPEC §5:
nothing shown draws the holdout before the verdict counts the look); `--to` chooses the end explicitly.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from rich.console import Console

from swimmy.backtest.data import load_bars, universe_dir
from swimmy.backtest.engine import Bars, Costs, run_backtest
from swimmy.backtest.strategies import spec_of
from swimmy.cli.progress import progress
from swimmy.config import Config, instrument_costs
from swimmy.errors import BacktestError, DataError, StoreError, UsageError
from swimmy.rfc3339 import NoTimeZone, parse_rfc3339
from swimmy.store import Store, StrategyRow
from swimmy.view.report import holdout_view

HOLDOUT_NOTE = "stops at the holdout ({when}): no OOS verdict yet; --to DATE looks past it"


def _end(cfg: Config, store: Store, row: StrategyRow, bars: Bars, end_ts: int | None) -> tuple[int | None, str | None]:
    """The range's end: `--to` when given; else the holdout's start for a strategy without a verdict (and why)."""
    if end_ts is not None:
        return end_ts, None
    oos_start, shown = holdout_view(cfg, store, row, bars)
    if shown or oos_start is None:
        return None, None
    return oos_start, HOLDOUT_NOTE.format(when=f"{datetime.fromtimestamp(oos_start, UTC):%Y-%m-%d %H:%M} UTC")


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


def _range(date_from: str | None, date_to: str | None) -> tuple[int | None, int | None]:
    return (parse_date(date_from, "--from") if date_from else None,
            parse_date(date_to, "--to") if date_to else None)


def run_offline(cfg: Config, name: str, date_from: str | None, date_to: str | None,
                out: TextIO | None = None, console: Console | None = None) -> int:
    """Print the metrics of one stored strategy over [from, to); exit code."""
    out = out or sys.stdout
    start_ts, end_ts = _range(date_from, date_to)
    try:
        with Store.open_readonly(cfg.school.db_path) as store:
            row = store.get_strategy(name)
            if row is None:
                raise UsageError(f"unknown strategy {name!r} (see `swimmy strategies list`)")
            spec = spec_of(row)
            bars = load_bars(universe_dir(cfg, spec.symbol), spec.symbol, spec.timeframe)
            end_ts, note = _end(cfg, store, row, bars, end_ts)
    except StoreError as exc:
        raise UsageError(f"cannot read the strategy store: {exc}") from None
    with progress(f"backtesting {name}", 2, console=console, transient=True) as steps:
        steps.advance(f"backtesting {name} on {len(bars):,} bars")
        started = time.perf_counter()
        result = run_backtest(spec, bars, start_ts=start_ts, end_ts=end_ts,
                              costs=Costs(**instrument_costs(cfg, spec.symbol)))
        elapsed_ms = (time.perf_counter() - started) * 1000
        steps.advance(f"done in {elapsed_ms:.0f} ms")
    span = ""
    if result.start_ts is not None and result.end_ts is not None:
        span = (f"{datetime.fromtimestamp(result.start_ts, UTC):%Y-%m-%d %H:%M} .. "
                f"{datetime.fromtimestamp(result.end_ts, UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{name}  ({spec.family} {dict(spec.params)}, sl {spec.sl_pips:g} tp {spec.tp_pips:g} pips)", file=out)
    print(f"bars: {result.bars:,}  {span}  ({elapsed_ms:.1f} ms)" + (f"; {note}" if note else ""), file=out)
    for key, value in result.metrics.items():
        text = "null" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        print(f"  {key:<14} {text}", file=out)
    return 0


# The columns of `backtest --rank`: (header, width); from `trades` on, the header is the metric's key.
_RANK_COLUMNS: tuple[tuple[str, int], ...] = (
    ("name", 38), ("family", 18), ("bars", 7), ("trades", 6), ("sharpe", 7), ("profit_factor", 13),
    ("win_rate", 8), ("max_drawdown", 12), ("psr", 5), ("pnl_pips", 9))


def _cells(cells: list[str]) -> str:
    return " ".join(f"{text:<{width}}" if header in ("name", "family") else f"{text:>{width}}"
                    for (header, width), text in zip(_RANK_COLUMNS, cells, strict=True)).rstrip()


def _figure(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.2f}"


def run_offline_rank(cfg: Config, rank: str, date_from: str | None, date_to: str | None,
                     out: TextIO | None = None, console: Console | None = None) -> int:
    """Backtest every stored strategy of `rank` over [from, to), one line each; 1 when one could not be run."""
    out = out or sys.stdout
    start_ts, end_ts = _range(date_from, date_to)
    db = cfg.school.db_path
    if not db.exists():
        print(f"(no strategy store at {db} yet)", file=sys.stderr)
        return _rank_table(cfg, None, [], rank, (start_ts, end_ts), (date_from, date_to), out, console)
    try:
        with Store.open_readonly(db) as store:
            rows = store.list_strategies(rank=rank)
            return _rank_table(cfg, store, rows, rank, (start_ts, end_ts), (date_from, date_to), out, console)
    except StoreError as exc:
        raise UsageError(f"cannot read the strategy store: {exc}") from None


def _rank_table(cfg: Config, store: Store | None, rows: list[StrategyRow], rank: str,
                span_ts: tuple[int | None, int | None], span_text: tuple[str | None, str | None], out: TextIO,
                console: Console | None) -> int:
    start_ts, end_ts = span_ts
    date_from, date_to = span_text
    stopped = 0
    print(_cells([header for header, _ in _RANK_COLUMNS]), file=out)
    print("-" * len(_cells([header for header, _ in _RANK_COLUMNS])), file=out, flush=True)
    failed = 0
    started = time.perf_counter()
    with progress(f"rank {rank}", len(rows), console=console) as steps:
        for row in rows:
            steps.update(f"rank {rank}: {row.name}")
            spec = spec_of(row)
            try:
                bars = load_bars(universe_dir(cfg, spec.symbol), spec.symbol, spec.timeframe)
                end, note = _end(cfg, store, row, bars, end_ts) if store is not None else (end_ts, None)
                stopped += note is not None
                result = run_backtest(spec, bars, start_ts=start_ts, end_ts=end,
                                      costs=Costs(**instrument_costs(cfg, spec.symbol)))
            except (DataError, BacktestError) as exc:
                failed += 1
                steps.echo(f"{row.name:<38} {row.family:<18} cannot backtest: {exc}", out)
            else:
                m = result.metrics
                steps.echo(_cells([row.name, row.family, f"{result.bars:,}", *(
                    _figure(m.get(key)) for key, _ in _RANK_COLUMNS[3:])]), out)
            steps.advance()
        steps.update(f"rank {rank}: done")
    elapsed = time.perf_counter() - started
    span = f" from {date_from or 'the first bar'} to {date_to or 'the last bar'}"
    print(f"({len(rows)} strateg{'y' if len(rows) == 1 else 'ies'} of rank {rank}{span}, {elapsed:.1f} s"
          + (f"; {failed} could not be backtested)" if failed else ")"), file=out)
    if stopped:
        print(f"({stopped} without an OOS verdict stop at their universe's holdout; --to DATE looks past it)",
              file=out)
    return 1 if failed else 0
