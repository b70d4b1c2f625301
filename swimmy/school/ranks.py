"""Rank decisions (SPEC §5): which rank a strategy's measured figures earn. Pure.

A strategy climbs incubator -> B -> A -> S on its IS backtest, its OOS Sharpe and
(only when `wfv.affects_rank`) its walk-forward decision; below B it goes to the
graveyard. Nothing here reads the store or the clock: the caller passes the figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from swimmy.config import RankCriteria, RanksConfig

if TYPE_CHECKING:  # the store imports sqlite3, which decision code must not load
    from swimmy.store import StrategyRow

RANKS: Final = ("incubator", "B", "A", "S", "graveyard")

Metrics = Mapping[str, float | int | None]

# Retirement order (SPEC §5 population bound): the weakest live rank goes first.
# Graveyard rows are already retired and incubator rows still wait for their IS result,
# so neither is a retirement candidate; they sort at the ends for a total order.
_RETIRE_ORDER: Final = {"graveyard": -1, "B": 0, "A": 1, "S": 2, "incubator": 3}


@dataclass(frozen=True)
class RankDecision:
    """The rank a strategy's figures earn, why, and whether it waits for an OOS Sharpe."""

    rank: str
    reason: str
    wants_oos: bool = False


def shortfall(criteria: RankCriteria, metrics: Metrics) -> str | None:
    """The first threshold `metrics` misses (`"sharpe 0.10 < 0.15"`), or None when all are met.

    A null (or NaN) figure never meets a threshold. `max_drawdown` must stay strictly
    below its limit; `psr` is checked only when the criteria ask for one (psr > 0).
    """
    checks: list[tuple[str, float, bool]] = [
        ("trades", criteria.min_trades, False),
        ("sharpe", criteria.sharpe, False),
        ("profit_factor", criteria.profit_factor, False),
        ("max_drawdown", criteria.max_drawdown, True),
    ]
    if criteria.win_rate > 0:  # SPEC §5: a win_rate of 0 is no criterion (trend followers win 35-45%)
        checks.append(("win_rate", criteria.win_rate, False))
    if criteria.psr > 0:
        checks.append(("psr", criteria.psr, False))
    if criteria.dsr > 0:
        checks.append(("dsr", criteria.dsr, False))
    for key, threshold, upper_bound in checks:
        value = metrics.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"{key} null"
        if upper_bound and not value < threshold:
            return f"{key} {_pair(value, threshold, '>=')}"
        if not upper_bound and not value >= threshold:
            return f"{key} {_pair(value, threshold, '<')}"
    return None


def meets(criteria: RankCriteria, metrics: Metrics) -> bool:
    """True when `metrics` (BACKTEST_RESULT keys) meet every threshold of `criteria`."""
    return shortfall(criteria, metrics) is None


def decide_rank(
    metrics: Metrics,
    *,
    oos_decision: str | None,
    wfv_decision: str | None,
    ranks: RanksConfig,
    wfv_affects_rank: bool,
) -> RankDecision:
    """The rank earned by a finished IS backtest's `metrics` (with `dsr`) plus the holdout and WFV verdicts so far.

    Below B: graveyard. B met: B. A's criteria met (the DSR gate among them): B with `wants_oos` until
    the holdout's verdict, then A on a `pass` (B on a `fail`). Once the holdout is passed, the DSR
    verdict is kept: more trials elsewhere never demote the strategy (SPEC §5). S: A plus the S
    criteria and, when `wfv_affects_rank`, a `validated` walk-forward; an `overfit` one demotes A or S
    to B. An errored IS backtest is not ranked here: it has no figures.
    """
    if oos_decision == "pass":  # the DSR verdict is kept once the holdout is passed: no rank's dsr demotes it
        ranks = replace(ranks, B=replace(ranks.B, dsr=0.0), A=replace(ranks.A, dsr=0.0), S=replace(ranks.S, dsr=0.0))
    below_b = shortfall(ranks.B, metrics)
    if below_b is not None:
        return RankDecision("graveyard", f"below B: {below_b}")
    below_a = shortfall(ranks.A, metrics)
    if below_a is not None:
        return RankDecision("B", f"meets B; below A: {below_a}")
    if oos_decision is None:
        return RankDecision("B", "meets A on IS; holdout pending", wants_oos=True)
    if oos_decision != "pass":
        return RankDecision("B", "holdout failed")
    if wfv_affects_rank and wfv_decision == "overfit":
        return RankDecision("B", "walk-forward overfit: demoted to B")
    below_s = shortfall(ranks.S, metrics)
    if below_s is not None:
        return RankDecision("A", f"meets A (holdout passed); below S: {below_s}")
    if wfv_affects_rank and wfv_decision != "validated":
        return RankDecision("A", f"S criteria met, walk-forward {wfv_decision or 'pending'}: stays A")
    return RankDecision("S", "S: holdout passed and walk-forward validated" if wfv_affects_rank else "S")


def worst_first_key(row: StrategyRow) -> tuple[int, int, float, str]:
    """Sort key putting the weakest strategy first when the population must shrink.

    B before A before S; within a rank an unknown IS Sharpe first (nothing vouches for it),
    then the lower IS Sharpe; the name breaks ties so the order is total and stable.
    Incubator rows sort after S and graveyard rows first; `breeding.to_retire` skips both.
    """
    order = _RETIRE_ORDER.get(row.rank, _RETIRE_ORDER["incubator"])
    if row.is_sharpe is None:
        return (order, 0, 0.0, row.name)
    return (order, 1, row.is_sharpe, row.name)


def _pair(value: float, threshold: float, op: str) -> str:
    """`value op threshold` with enough digits that the two never print alike."""
    if isinstance(value, int) and float(threshold).is_integer():
        return f"{value} {op} {int(threshold)}"
    left, right = f"{value:.2f}", f"{threshold:.2f}"
    if left == right and value != threshold:
        left, right = f"{value:.6g}", f"{threshold:.6g}"
    return f"{left} {op} {right}"
