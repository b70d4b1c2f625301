"""`swimmy strategies export`: stored strategies as the TOML that `swimmy strategies import` reads back.

One table per strategy, named by the strategy's name, holding its rules (family, params, symbol, timeframe,
sl_pips, tp_pips) and nothing else: the import parser refuses unknown keys (StrategySpec.from_wire), so the
rank and the IS/OOS/WFV figures go into a comment above each table, and a header comment says what wrote the
file and when. The store is opened read-only; a running daemon is never disturbed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from swimmy import __version__
from swimmy.backtest.data import universe_name
from swimmy.backtest.strategies import spec_of
from swimmy.config import Config
from swimmy.errors import StoreError
from swimmy.files import atomic_write
from swimmy.rfc3339 import format_rfc3339
from swimmy.store import Store, StrategyRow

Trials = dict[str, tuple[int, float | None, float | None]]  # universe -> (N trials, N_eff, mean correlation)


def run_export(cfg: Config, rank: str | None, out: Path | None) -> int:
    """Write the strategies (of `rank`, when given) to `out` (atomically) or to stdout; the exit code."""
    db = cfg.school.db_path
    rows: list[StrategyRow] = []
    trials: Trials = {}
    if db.exists():
        try:
            with Store.open_readonly(db) as store:
                rows = store.list_strategies(rank=rank)
                for universe in sorted({universe_name(r.symbol, r.timeframe) for r in rows}):
                    trials[universe] = store.trial_totals(universe)
        except StoreError as exc:
            print(f"swimmy: {exc}", file=sys.stderr)
            return 1
        if not rows:
            print(f"(no strategies{f' of rank {rank}' if rank else ''} in {db}: nothing to export)", file=sys.stderr)
    else:
        print(f"(no strategy store at {db} yet: nothing to export)", file=sys.stderr)
    text = render_export(rows, trials, rank=rank, db=db, now=datetime.now(UTC))
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        atomic_write(out, text.encode("utf-8"), mode=0o644)
    except OSError as exc:
        print(f"swimmy: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"exported: {len(rows)}\npath: {out}")
    return 0


def render_export(rows: Sequence[StrategyRow], trials: Trials, *, rank: str | None, db: Path, now: datetime) -> str:
    """The export file: the header comment, then per strategy its figures as comments and its rules as a table."""
    count = f"{len(rows)} strateg{'y' if len(rows) == 1 else 'ies'}{f' of rank {rank}' if rank else ''}"
    stamp = format_rfc3339(now.timestamp())
    source = _one_line(str(db))
    parts = [
        f"# Written by `swimmy strategies export` (swimmy {__version__}) at {stamp}: {count} from {source}.\n"
        "# Read it back with `swimmy strategies import FILE --config CONFIG`. A table's name is only a label (import\n"
        "# derives the name again from the rules); the comment above each table is for people and is not imported.\n"
    ]
    for row in rows:
        spec = spec_of(row)
        table = {"family": spec.family, "symbol": spec.symbol, "timeframe": spec.timeframe,
                 "sl_pips": float(spec.sl_pips), "tp_pips": float(spec.tp_pips), "params": dict(spec.params)}
        comments = "".join(f"# {_one_line(line)}\n" for line in figures(row, trials))
        parts.append("\n" + comments + tomli_w.dumps({row.name: table}))
    return "".join(parts)


def figures(row: StrategyRow, trials: Trials) -> list[str]:
    """What the school knows of a strategy, as comment lines: rank and lineage, IS, then OOS and WFV."""
    lineage = f"rank {row.rank}, generation {row.generation}"
    if row.parent:
        lineage += f", parent {row.parent}"
    lines = [lineage]
    n_trials, n_eff, _ = trials.get(universe_name(row.symbol, row.timeframe), (0, None, None))
    is_parts = [_fig("bars", row.is_bars, ","), _fig("trades", row.is_trades, ","), _fig("sharpe", row.is_sharpe),
                _fig("dsr", row.is_dsr, ".3f"), _fig("psr", row.is_psr, ".3f"),
                _fig("profit_factor", row.is_profit_factor), _fig("win_rate", row.is_win_rate),
                _fig("max_drawdown", row.is_max_drawdown), _fig("pnl_pips", row.is_pnl_pips, ".1f")]
    if any(is_parts):
        if n_trials:
            is_parts.append(f"trials {n_trials:,}" + (f" (N_eff {n_eff:.1f})" if n_eff is not None else ""))
        lines.append("IS " + ", ".join(p for p in is_parts if p))
    else:
        lines.append("IS not backtested yet")
    later = [_fig("sharpe", row.oos_sharpe), _fig("psr", row.oos_psr, ".3f"), _fig("trades", row.oos_trades, ","),
             row.oos_decision or ""]
    if any(later):
        lines.append("OOS " + ", ".join(p for p in later if p))
    if row.wfv_decision:
        lines.append(f"WFV {row.wfv_decision}")
    return lines


def _fig(label: str, value: float | int | None, fmt: str = ".2f") -> str:
    return "" if value is None else f"{label} {value:{fmt}}"


def _one_line(text: str) -> str:
    return " ".join(text.split())  # a comment ends at a line break: none may reach the file
