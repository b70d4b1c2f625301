"""The rows the store takes and hands out, and the values their fields may hold.

Pure data: no SQLite here. `finite` and `check` are the store's two rules for values on the way in (a
non-finite metric is stored as NULL; a rank or status outside its list is refused).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from swimmy.errors import StoreError

RANKS: Final = ("incubator", "B", "A", "S", "graveyard")
OOS_STATUSES: Final = ("sent", "retry", "error", "done")
WFV_STATUSES: Final = ("pending", "done", "timeout", "error")

# Keys of a BACKTEST_RESULT's `metrics` object, stored in `strategies.is_<key>`.
IS_METRIC_KEYS: Final = (
    "trades",
    "sharpe",
    "profit_factor",
    "win_rate",
    "max_drawdown",
    "sortino",
    "psr",
    "pnl_pips",
    "skew",
    "kurtosis",
    "sharpe_per_bar",
)


@dataclass(frozen=True)
class StrategyRow:
    """One strategy: its rules, its rank and what its backtests measured (None = not known)."""

    name: str
    rules_hash: str
    family: str
    params: dict[str, Any]
    symbol: str
    timeframe: str
    sl_pips: float = 0.0
    tp_pips: float = 0.0
    generation: int = 0
    parent: str | None = None
    rank: str = "incubator"
    is_trades: int | None = None
    is_sharpe: float | None = None
    is_profit_factor: float | None = None
    is_win_rate: float | None = None
    is_max_drawdown: float | None = None
    is_sortino: float | None = None
    is_psr: float | None = None
    is_pnl_pips: float | None = None
    is_skew: float | None = None
    is_kurtosis: float | None = None
    is_sharpe_per_bar: float | None = None
    oos_sharpe: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    wfv_decision: str | None = None
    is_dsr: float | None = None
    is_bars: int | None = None
    oos_psr: float | None = None
    oos_trades: int | None = None
    oos_decision: str | None = None
    oos_data_hash: str | None = None  # the data whose holdout the verdict's look was counted on (schema v5)

    @property
    def is_metrics(self) -> dict[str, float | int | None]:
        """The IS metrics keyed as in a BACKTEST_RESULT (`sharpe`, `trades`, ...), plus `dsr`."""
        out = {key: getattr(self, f"is_{key}") for key in IS_METRIC_KEYS}
        out["dsr"] = self.is_dsr
        return out


@dataclass(frozen=True)
class TrialRow:
    """One trial of the ledger: a distinct rule set's IS figures and its returns sketch (float32 sums, sumsqs)."""

    universe: str
    rules_hash: str
    family: str
    generation: int
    sharpe_per_bar: float | None
    skew: float | None
    kurtosis: float | None
    bars: int
    recorded_at: float
    sketch: bytes | None = None  # float32 block sums then block sums of squares (swimmy/school/ledger.py)


@dataclass(frozen=True)
class OosRow:
    """The OOS queue entry of one strategy: its latest request and how it went."""

    strategy: str
    request_id: str
    requested_at: float
    status: str
    attempts: int = 0
    last_error: str | None = None
    backoff_sec: float | None = None


@dataclass(frozen=True)
class WfvRow:
    """One walk-forward run: its two parts, and the decision once both are in."""

    wfv_id: str
    strategy: str
    started_at: float
    trigger: str
    split_ratio: float
    is_request_id: str | None = None
    oos_request_id: str | None = None
    is_sharpe: float | None = None
    oos_sharpe: float | None = None
    is_status: str | None = None
    oos_status: str | None = None
    status: str = "pending"
    decision: str | None = None
    required_oos: float | None = None
    degradation: float | None = None
    finished_at: float | None = None
    kind: str = "folds"  # "single_split": a run of the old single split (schema < 4), kept readable
    summary_json: str | None = None  # the walk-forward's figures (wf_sharpe, wf_psr, wfe, folds, ...)


def finite(value: float | int | None) -> float | int | None:
    """A metric as stored: NaN and infinities are not numbers a reader can use, so they are NULL."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check(value: str, allowed: tuple[str, ...], what: str) -> None:
    """Refuse a rank or status outside `allowed`, naming what it was."""
    if value not in allowed:
        raise StoreError(f"unknown {what} {value!r}: expected one of {', '.join(allowed)}")
