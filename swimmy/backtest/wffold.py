"""Walk-forward validation, one fold (SPEC §6): the parameter grid it chooses from, the choice, the test.

Pure: numpy and the engine's public functions, no I/O. `neighbourhood` is the grid of parameters a fold may
choose from (documented there); `run_fold` (worker side) backtests every grid point on the fold's train window,
keeps the best by train Sharpe (`best_index`) and backtests that choice on the test window.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from swimmy.backtest.engine import Bars, Costs, simulate
from swimmy.backtest.metrics import compute_metrics
from swimmy.backtest.strategies import CROSS_FAMILIES, FAMILIES, PARAM_SPACE, PERIOD_PARAMS, ParamRange, StrategySpec
from swimmy.backtest.wftiling import FoldRange
from swimmy.errors import BacktestError, DataError

FloatArray = npt.NDArray[np.float64]
Metrics = dict[str, float | int | None]

# The neighbourhood (see `neighbourhood`): period params scaled by these factors, k and RSI levels shifted by a step.
PERIOD_FACTORS: Final = (0.75, 1.0, 1.25)
K_STEP: Final = 0.25
RSI_LEVEL_STEP: Final = 5
# 3 values for each of at most 3 params.
MAX_GRID_POINTS: Final = 27
NO_COSTS: Final = Costs()  # frozen, so one shared default is safe


# --- the neighbourhood -----------------------------------------------------------------------------------------------


def neighbourhood(family: str, params: Mapping[str, float]) -> list[dict[str, float]]:
    """The parameter grid a walk-forward fold chooses from: the current params first, then their neighbours.

    Per parameter, three values (the current one and two neighbours):

    | param | values |
    |---|---|
    | a period (`fast`, `slow`, `period`) | p x 0.75, p, p x 1.25, rounded half up to whole bars |
    | `k` (bollinger_breakout) | k - 0.25, k, k + 0.25 |
    | `lower`, `upper` (rsi_reversion) | level - 5, level, level + 5 |

    A neighbour outside the family's PARAM_SPACE range (swimmy.backtest.strategies) is clamped to the
    range's end; the grid is every combination of these values, without duplicates, keeping only the
    valid ones (fast < slow in the cross families, lower < upper in rsi_reversion). The current params
    are always the first point, as given, even when they lie outside PARAM_SPACE (a hand-written
    strategy). Size: sma_cross / ema_cross <= 9, rsi_reversion <= 27, bollinger_breakout <= 9,
    donchian_breakout <= 3 (at most MAX_GRID_POINTS). ValueError for an unknown family or params
    that don't match it.
    """
    if family not in FAMILIES or family not in PARAM_SPACE:
        raise ValueError(f"neighbourhood: unknown strategy family {family!r}; known: {', '.join(FAMILIES)}")
    names = FAMILIES[family]
    if sorted(params) != sorted(names):
        raise ValueError(f"neighbourhood: {family} takes {', '.join(names)}, got {', '.join(sorted(params)) or 'none'}")
    current = {name: params[name] for name in names}
    space = PARAM_SPACE[family]
    axes = [_axis(name, current[name], space[name]) for name in names]
    grid = [current]
    seen = {_key(current)}
    for values in itertools.product(*axes):
        point = dict(zip(names, values, strict=True))
        key = _key(point)
        if key in seen or not _valid(family, point):
            continue
        seen.add(key)
        grid.append(point)
    assert len(grid) <= MAX_GRID_POINTS
    return grid


def _axis(name: str, value: float, r: ParamRange) -> list[float]:
    """The current value and its two neighbours, ascending; a neighbour is clamped into the range."""
    if name in PERIOD_PARAMS:
        others = [float(math.floor(value * f + 0.5)) for f in PERIOD_FACTORS if f != 1.0]
    elif name == "k":
        others = [value - K_STEP, value + K_STEP]
    else:
        others = [value - RSI_LEVEL_STEP, value + RSI_LEVEL_STEP]
    clamped = [min(max(v, r.low), r.high) for v in others]
    as_kind = [int(v) if r.kind == "int" else round(v, 10) for v in clamped]
    return sorted({*as_kind, value})


def _key(point: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in point.items()))


def _valid(family: str, point: Mapping[str, float]) -> bool:
    if family in CROSS_FAMILIES:
        return 1 <= point["fast"] < point["slow"]
    if family == "rsi_reversion":
        return 0 <= point["lower"] < point["upper"] <= 100
    return True


# --- one fold --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FoldResult:
    """One fold's outcome: the params chosen on the train window and how they did on the test window.

    `train_sharpe` / `test_sharpe` are annualised (the engine's `sharpe`), None when undefined (no trade,
    zero variance). `test_returns` are the test window's per-bar returns (every bar, flat ones 0), what the
    walk-forward stitches. `status` is "ok" or "error" (then `error` says why and the rest is empty).
    """

    fold: FoldRange
    status: str
    params: dict[str, float] | None = None
    train_sharpe: float | None = None
    test_sharpe: float | None = None
    test_returns: FloatArray = field(default_factory=lambda: np.zeros(0))
    test_trades: int = 0
    test_pnl_pips: float = 0.0
    error: str | None = None
    candidates: int = 0  # grid points backtested on the train window
    test_metrics: Metrics = field(default_factory=dict)  # the engine's metrics of the test window


def best_index(sharpes: Sequence[float | None], current: int | None = None) -> int:
    """The grid point with the best train Sharpe: None loses; a tie goes to `current`, else to the first.

    When no point has a Sharpe, `current` (or the first point) is the choice. ValueError on an empty list.
    """
    if not sharpes:
        raise ValueError("best_index: no candidates")
    best: int | None = None
    for i, sharpe in enumerate(sharpes):
        if sharpe is None:
            continue
        top = None if best is None else sharpes[best]
        if top is None or sharpe > top or (sharpe == top and i == current):
            best = i
    if best is None:
        return current if current is not None and 0 <= current < len(sharpes) else 0
    return best


def _sharpe(metrics: Metrics) -> float | None:
    value = metrics.get("sharpe")
    return None if value is None else float(value)


def run_fold(
    spec: StrategySpec,
    bars: Bars,
    fold: FoldRange,
    grid: Sequence[Mapping[str, float]],
    costs: Costs = NO_COSTS,
    *,
    progress: Callable[[float], None] | None = None,
) -> FoldResult:
    """Choose `spec`'s params from `grid` by Sharpe on the fold's train window, then backtest them on its test window.

    Every grid point replaces `spec.params` (market, stops and costs stay) and is backtested on
    [train_start_ts, train_end_ts); the best annualised Sharpe wins (`best_index`: None loses, a tie goes
    to the point equal to `spec.params`, then to the first). The winner is backtested on
    [test_start_ts, test_end_ts). Indicators warm up on the bars before each window, and neither backtest
    sees a bar at or after its window's end, so the choice never sees the test window and the test
    result never sees what follows it. `progress(done_share)` is called after each backtest (a worker's
    BUSY beat). A request the engine can't serve (a bad grid point, too few bars) is an `error` result.
    """
    if not grid:
        return FoldResult(fold, "error", error=f"fold {fold.index}: empty parameter grid")
    steps = len(grid) + 1
    sharpes: list[float | None] = []
    point: Mapping[str, float] = {}
    try:
        for n, point in enumerate(grid):
            candidate = replace(spec, params=dict(point))
            sim = simulate(candidate, bars, start_ts=fold.train_start_ts, end_ts=fold.train_end_ts, costs=costs)
            sharpes.append(_sharpe(compute_metrics(sim.returns, sim.pnl_pips, spec.timeframe)))
            if progress is not None:
                progress((n + 1) / steps)
    except (BacktestError, DataError) as exc:
        return FoldResult(
            fold, "error", error=f"fold {fold.index} train window, params {dict(point)}: {exc}", candidates=len(sharpes)
        )
    current_key = _key(spec.params)
    current = next((i for i, point in enumerate(grid) if _key(point) == current_key), None)
    chosen = best_index(sharpes, current)
    params = dict(replace(spec, params=dict(grid[chosen])).params)
    try:
        sim = simulate(
            replace(spec, params=params), bars, start_ts=fold.test_start_ts, end_ts=fold.test_end_ts, costs=costs
        )
        metrics = compute_metrics(sim.returns, sim.pnl_pips, spec.timeframe)
    except (BacktestError, DataError) as exc:
        return FoldResult(
            fold,
            "error",
            params=params,
            train_sharpe=sharpes[chosen],
            error=f"fold {fold.index} test window: {exc}",
            candidates=len(sharpes),
        )
    if progress is not None:
        progress(1.0)
    pnl = metrics.get("pnl_pips")
    return FoldResult(
        fold,
        "ok",
        params=params,
        train_sharpe=sharpes[chosen],
        test_sharpe=_sharpe(metrics),
        test_returns=np.array(sim.returns, dtype=np.float64),
        test_trades=len(sim.pnl_pips),
        test_pnl_pips=float(pnl) if pnl is not None else 0.0,
        candidates=len(sharpes),
        test_metrics=metrics,
    )
