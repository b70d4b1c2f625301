"""The population as operators see it: `strategies import` (TOML) and `strategies list` (a table).

An import file holds one table per strategy; the table's name is only a label,
the strategy's name is derived from its rules (SPEC §5), and two strategies with
identical rules never coexist. Imported strategies are generation 0.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from swimmy.backtest.strategies import StrategySpec, validate
from swimmy.errors import BacktestError, UsageError
from swimmy.store import Store, StrategyRow

EXAMPLE = """[my-sma]
family = "sma_cross"
params = { fast = 10, slow = 30 }
symbol = "EURUSD"
timeframe = "H1"
sl_pips = 0
tp_pips = 0
"""


def parse_import_file(path: Path) -> list[StrategySpec]:
    """Every strategy of an import file; UsageError naming the file, table and problem otherwise."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    if not doc:
        raise UsageError(f"{path}: no strategy tables; each strategy is a table, for example:\n{EXAMPLE}")
    specs = []
    for label, table in doc.items():
        if not isinstance(table, dict):
            raise UsageError(f"{path}: [{label}] must be a table, for example:\n{EXAMPLE}")
        wire = {"sl_pips": 0.0, "tp_pips": 0.0, **table}
        try:
            spec = StrategySpec.from_wire(wire)
            validate(spec)
        except BacktestError as exc:
            raise UsageError(f"{path}: [{label}]: {exc}") from None
        specs.append(spec)
    return specs


def row_for(spec: StrategySpec, now: float, *, generation: int = 0, parent: str | None = None) -> StrategyRow:
    """A new incubator row for a strategy."""
    return StrategyRow(
        name=spec.name(), rules_hash=spec.rules_hash(), family=spec.family, params=dict(spec.params),
        symbol=spec.symbol, timeframe=spec.timeframe, sl_pips=spec.sl_pips, tp_pips=spec.tp_pips,
        generation=generation, parent=parent, created_at=now, updated_at=now,
    )


def import_specs(store: Store, specs: Iterable[StrategySpec], now: float) -> dict[str, list[str]]:
    """Add the strategies; {"added": names, "duplicates": names of ones whose rules already exist}."""
    added: list[str] = []
    duplicates: list[str] = []
    for spec in specs:
        (added if store.add_strategy(row_for(spec, now)) else duplicates).append(spec.name())
    return {"added": added, "duplicates": duplicates}


_COLUMNS = (("name", 36), ("rank", 9), ("gen", 3), ("trades", 6), ("sharpe", 7), ("dsr", 5), ("pf", 5),
            ("win", 5), ("maxdd", 5), ("psr", 5), ("oos", 6), ("holdout", 7), ("wfv", 9))


def render_table(rows: list[StrategyRow]) -> str:
    """The population as a fixed-width table, best IS Sharpe first; '-' for a figure not known yet."""
    head = " ".join(f"{name:<{width}}" if name == "name" else f"{name:>{width}}" for name, width in _COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells: list[Any] = [r.name, r.rank, r.generation, r.is_trades, r.is_sharpe, r.is_dsr, r.is_profit_factor,
                            r.is_win_rate, r.is_max_drawdown, r.is_psr, r.oos_sharpe, r.oos_decision, r.wfv_decision]
        out = []
        for (name, width), value in zip(_COLUMNS, cells, strict=True):
            text = "-" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
            out.append(f"{text:<{width}}" if name == "name" else f"{text:>{width}}")
        lines.append(" ".join(out).rstrip())
    lines.append(f"({len(rows)} strateg{'y' if len(rows) == 1 else 'ies'})")
    return "\n".join(lines)
