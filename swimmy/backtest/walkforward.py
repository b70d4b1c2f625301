"""Walk-forward validation, the numbers (SPEC §6): fold tiling, parameter neighbourhoods, folds, the verdict.

Pure: numpy and the engine's public functions, no I/O, no clock, no store. The pieces, in the order a
walk-forward uses them:

- `fold_windows` tiles the IS range's B bars into K folds (bar indices), `fold_ranges` turns them into
  Unix-second ranges for BACKTEST requests;
- `neighbourhood` is the grid of parameters a fold may choose from (documented there);
- `run_fold` (worker side) backtests every grid point on the fold's train window, keeps the best by train
  Sharpe (`best_index`) and backtests that choice on the test window;
- `summarize` stitches the folds' test returns in time order and judges them (`decide`);
- `fold_request_fields` / `parse_fold_request` and `fold_result_fields` / `parse_fold_result` are the
  `purpose: "wfv_fold"` extension of BACKTEST and BACKTEST_RESULT (SPEC §4); parsing never raises.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from swimmy.backtest.engine import Bars, Costs, simulate
from swimmy.backtest.metrics import compute_metrics, probabilistic_sharpe_ratio
from swimmy.backtest.strategies import CROSS_FAMILIES, FAMILIES, PARAM_SPACE, PERIOD_PARAMS, ParamRange, StrategySpec
from swimmy.errors import BacktestError, DataError

FloatArray = npt.NDArray[np.float64]
Mode = Literal["rolling", "anchored"]
Metrics = dict[str, float | int | None]

MODES: Final = ("rolling", "anchored")
# A backtest needs at least 2 bars (the engine's rule), so no window may be shorter.
MIN_WINDOW_BARS: Final = 2
# The neighbourhood (see `neighbourhood`): period params scaled by these factors, k and RSI levels shifted by a step.
PERIOD_FACTORS: Final = (0.75, 1.0, 1.25)
K_STEP: Final = 0.25
RSI_LEVEL_STEP: Final = 5
# 3 values for each of at most 3 params.
MAX_GRID_POINTS: Final = 27
# A wfv_fold request's grid may be longer than ours (another version), but never unbounded: it is worker time.
MAX_WIRE_GRID: Final = 256
# Returns travel as floats with this many significant digits (their rounding is ~1e-10 relative).
RETURN_DIGITS: Final = 10
DECISIONS: Final = ("validated", "weak", "overfit", "error")
# SPEC §6: a walk-forward efficiency below this (or none) is overfit whatever the thresholds.
OVERFIT_WFE: Final = 0.2
NO_COSTS: Final = Costs()  # frozen, so one shared default is safe


# --- the tiling ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    """One fold as bar indices of the IS range, ends exclusive: train [train_start, train_end), test likewise."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


@dataclass(frozen=True)
class FoldRange:
    """One fold as Unix seconds, ends exclusive, as a BACKTEST's start_ts / end_ts are."""

    index: int
    train_start_ts: int
    train_end_ts: int
    test_start_ts: int
    test_end_ts: int


def _exact(value: float) -> Fraction:
    """The decimal a float was written as (0.2 -> 1/5), so 900 x 0.2 / 1.8 is 100 and not 99.99999999999999."""
    return Fraction(repr(float(value)))


def fold_windows(n_bars: int, folds: int, split_ratio: float, mode: Mode) -> list[Fold]:
    """The K folds of a walk-forward over the IS range's B bars (SPEC §6), oldest first.

    With B = n_bars, K = folds and r = split_ratio (a fold's test share of its train + test bars):
    every test window has W = floor(B r / (1 - r + K r)) bars; fold k (0 .. K-1) tests the bars
    [B - (K - k) W, B - (K - k - 1) W), so the test windows are contiguous, never overlap and the last
    ends at B; it trains on the floor((1 - r) / r x W) bars just before its test window (`rolling`) or
    on every bar before it (`anchored`). The arithmetic is exact on the decimal r (no float rounding),
    and by construction the first rolling train window starts at bar >= 0.

    ValueError when an argument is out of range, a test window would be shorter than MIN_WINDOW_BARS
    (too few bars for K folds) or a train window would be (r too close to 1).
    """
    if isinstance(n_bars, bool) or not isinstance(n_bars, int) or n_bars < 0:
        raise ValueError(f"walk-forward: n_bars must be a whole number >= 0, got {n_bars!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ValueError(f"walk-forward: folds must be a whole number >= 1, got {folds!r}")
    if not isinstance(split_ratio, int | float) or not 0 < split_ratio < 1:
        raise ValueError(f"walk-forward: split_ratio must lie strictly between 0 and 1, got {split_ratio!r}")
    if mode not in MODES:
        raise ValueError(f"walk-forward: mode must be one of {', '.join(MODES)}, got {mode!r}")
    r = _exact(split_ratio)
    width = math.floor(n_bars * r / (1 - r + folds * r))
    if width < MIN_WINDOW_BARS:
        raise ValueError(
            f"walk-forward: {n_bars} bars give {folds} test windows of {width} bar(s) each at split_ratio "
            f"{split_ratio}; each needs at least {MIN_WINDOW_BARS}: use more bars or fewer folds"
        )
    train_bars = math.floor((1 - r) / r * width)
    if train_bars < MIN_WINDOW_BARS:
        raise ValueError(
            f"walk-forward: split_ratio {split_ratio} leaves {train_bars} train bar(s) before a test window of "
            f"{width}; a train window needs at least {MIN_WINDOW_BARS}: lower split_ratio"
        )
    out = []
    for k in range(folds):
        test_start = n_bars - (folds - k) * width
        train_start = test_start - train_bars if mode == "rolling" else 0
        out.append(Fold(k, train_start, test_start, test_start, test_start + width))
    return out


def fold_ranges(folds: Sequence[Fold], timestamps: Sequence[int] | npt.NDArray[np.int64]) -> list[FoldRange]:
    """The folds as Unix-second ranges over the IS range's bar timestamps (ascending, one per bar).

    A window's start is its first bar's timestamp; its (exclusive) end is the timestamp of the bar after
    it, or the last bar's timestamp + 1 for a window that ends with the range. ValueError when a fold
    reaches beyond the timestamps.
    """
    n = len(timestamps)
    out = []
    for f in folds:
        if not 0 <= f.train_start < f.train_end <= f.test_start < f.test_end <= n:
            raise ValueError(f"walk-forward: fold {f.index} {f} does not fit {n} bars")
        out.append(
            FoldRange(
                f.index,
                int(timestamps[f.train_start]),
                _end_ts(timestamps, f.train_end),
                int(timestamps[f.test_start]),
                _end_ts(timestamps, f.test_end),
            )
        )
    return out


def _end_ts(timestamps: Sequence[int] | npt.NDArray[np.int64], end: int) -> int:
    return int(timestamps[end]) if end < len(timestamps) else int(timestamps[-1]) + 1


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


# --- the verdict -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalkForwardSummary:
    """The walk-forward's figures (SPEC §6 `wfv.result`) and its decision; None where undefined.

    is_sharpe is the mean train Sharpe of the chosen params, oos_sharpe = wf_sharpe (the stitched test
    record's annualised Sharpe), degradation = (IS - OOS) / IS when IS > 0.1, else 0.
    """

    decision: str  # validated | weak | overfit | error
    folds: int
    bars: int  # bars in the stitched test record
    wf_sharpe: float | None
    wf_psr: float | None
    wfe: float | None
    profitable_folds: float | None
    is_sharpe: float | None
    oos_sharpe: float | None
    degradation: float | None
    required_oos: float
    skew: float | None = None
    kurtosis: float | None = None  # not excess
    error: str | None = None


def decide(
    wf_sharpe: float | None,
    wf_psr: float | None,
    wfe: float | None,
    profitable_folds: float | None,
    *,
    required_oos: float,
    min_psr: float = 0.95,
    min_wfe: float = 0.5,
    min_profitable_folds: float = 0.6,
    failed: bool = False,
) -> str:
    """SPEC §6's verdict, in its order.

    `error` when a fold failed; `validated` when wf_psr >= min_psr, wf_sharpe > required_oos,
    wfe >= min_wfe and profitable_folds >= min_profitable_folds (an undefined figure meets nothing);
    `overfit` when wfe is None or < 0.2, or wf_sharpe is None or <= 0; else `weak`.
    """
    if failed:
        return "error"
    if (
        wf_psr is not None
        and wf_sharpe is not None
        and wfe is not None
        and profitable_folds is not None
        and wf_psr >= min_psr
        and wf_sharpe > required_oos
        and wfe >= min_wfe
        and profitable_folds >= min_profitable_folds
    ):
        return "validated"
    if wfe is None or wfe < OVERFIT_WFE or wf_sharpe is None or wf_sharpe <= 0:
        return "overfit"
    return "weak"


def degradation(is_sharpe: float | None, oos_sharpe: float | None) -> float | None:
    """(IS - OOS) / IS when IS > 0.1, else 0 (SPEC §6); None when either is undefined."""
    if is_sharpe is None or oos_sharpe is None:
        return None
    return (is_sharpe - oos_sharpe) / is_sharpe if is_sharpe > 0.1 else 0.0


def stitch(folds: Sequence[FoldResult]) -> FloatArray:
    """The folds' test returns concatenated in time order (by test window start)."""
    ordered = sorted(folds, key=lambda f: f.fold.test_start_ts)
    if not ordered:
        return np.zeros(0)
    return np.concatenate([np.asarray(f.test_returns, dtype=np.float64) for f in ordered])


def moments(r: FloatArray) -> tuple[float, float, float, int] | None:
    """(per-period Sharpe with ddof=1, n-weighted skewness, non-excess kurtosis, n) of r; None when undefined.

    Undefined: fewer than 2 returns or zero variance (all equal), as the engine's metrics say.
    """
    n = len(r)
    if n < 2 or not np.all(np.isfinite(r)) or float(r.max()) == float(r.min()):
        return None
    mean = float(r.mean())
    std = float(r.std(ddof=1))
    dev = r - mean
    m2 = float(np.mean(dev * dev))
    if not (std > 0 and m2 > 0):
        return None
    skew = float(np.mean(dev**3)) / m2**1.5
    kurtosis = float(np.mean(dev**4)) / m2**2
    return mean / std, skew, kurtosis, n


def summarize(
    folds: Sequence[FoldResult],
    *,
    periods_per_year: float,
    required_oos: float = 0.0,
    min_psr: float = 0.95,
    min_wfe: float = 0.5,
    min_profitable_folds: float = 0.6,
) -> WalkForwardSummary:
    """Stitch the folds' test windows and judge them (SPEC §6).

    wf_sharpe = annualised Sharpe (ddof=1, x sqrt(periods_per_year)) of the stitched test returns;
    wf_psr = PSR against 0 of them (per-period Sharpe, skewness and NON-excess kurtosis);
    is_sharpe = the mean train Sharpe of the chosen params over the folds that have one (None when none);
    wfe = wf_sharpe / is_sharpe, None when is_sharpe <= 0 or either is undefined;
    profitable_folds = the fraction of folds whose test returns sum to > 0; decision by `decide`.
    `required_oos` is min(cap, base + step x generation), computed by the caller. A failed fold, no fold
    or overlapping test windows make the decision `error` with the figures undefined.
    """
    ordered = sorted(folds, key=lambda f: f.fold.test_start_ts)
    problem = _fold_problem(ordered)
    if problem is not None:
        return WalkForwardSummary(
            "error", len(ordered), 0, None, None, None, None, None, None, None, required_oos, error=problem
        )
    r = stitch(ordered)
    stats = moments(r)
    wf_sharpe = wf_psr = skew = kurtosis = None
    if stats is not None:
        sr, skew, kurtosis, n = stats
        wf_sharpe = sr * math.sqrt(periods_per_year)
        try:
            wf_psr = probabilistic_sharpe_ratio(sr, n, skew, kurtosis)
        except ValueError:
            wf_psr = None
    train = [f.train_sharpe for f in ordered if f.train_sharpe is not None]
    is_sharpe = sum(train) / len(train) if train else None
    wfe = wf_sharpe / is_sharpe if wf_sharpe is not None and is_sharpe is not None and is_sharpe > 0 else None
    profitable = sum(1 for f in ordered if float(np.sum(f.test_returns)) > 0) / len(ordered)
    decision = decide(
        wf_sharpe,
        wf_psr,
        wfe,
        profitable,
        required_oos=required_oos,
        min_psr=min_psr,
        min_wfe=min_wfe,
        min_profitable_folds=min_profitable_folds,
    )
    return WalkForwardSummary(
        decision,
        len(ordered),
        len(r),
        wf_sharpe,
        wf_psr,
        wfe,
        profitable,
        is_sharpe,
        wf_sharpe,
        degradation(is_sharpe, wf_sharpe),
        required_oos,
        skew,
        kurtosis,
    )


def _fold_problem(ordered: Sequence[FoldResult]) -> str | None:
    if not ordered:
        return "no folds"
    failed = [f for f in ordered if f.status != "ok"]
    if failed:
        return failed[0].error or f"fold {failed[0].fold.index} failed"
    for a, b in itertools.pairwise(ordered):
        if b.fold.test_start_ts < a.fold.test_end_ts:
            return f"the test windows of folds {a.fold.index} and {b.fold.index} overlap"
    return None


def summary_fields(summary: WalkForwardSummary, folds: Sequence[FoldResult]) -> dict[str, Any]:
    """The walk-forward keys of a `wfv.result` event (SPEC §6), JSON-able; the caller adds wfv_id, strategy, ..."""
    return {
        "decision": summary.decision,
        "required_oos": summary.required_oos,
        "degradation": summary.degradation,
        "is_sharpe": summary.is_sharpe,
        "oos_sharpe": summary.oos_sharpe,
        "wf_sharpe": summary.wf_sharpe,
        "wf_psr": summary.wf_psr,
        "wfe": summary.wfe,
        "profitable_folds": summary.profitable_folds,
        "bars": summary.bars,
        **({"error": summary.error} if summary.error else {}),
        "folds": [
            {
                **_range_fields(f.fold),
                "status": f.status,
                "params": f.params,
                "is_sharpe": f.train_sharpe,
                "oos_sharpe": f.test_sharpe,
            }
            for f in sorted(folds, key=lambda f: f.fold.test_start_ts)
        ],
    }


# --- the wire: BACKTEST purpose "wfv_fold" ---------------------------------------------------------------------------

_RANGE_KEYS: Final = ("train_start_ts", "train_end_ts", "test_start_ts", "test_end_ts")


def _range_fields(fold: FoldRange) -> dict[str, int]:
    return {
        "index": fold.index,
        "train_start_ts": fold.train_start_ts,
        "train_end_ts": fold.train_end_ts,
        "test_start_ts": fold.test_start_ts,
        "test_end_ts": fold.test_end_ts,
    }


def fold_request_fields(fold: FoldRange, grid: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The keys a `wfv_fold` BACKTEST adds (SPEC §4): `fold` {index, train/test start/end ts} and `grid`.

    The request's own start_ts / end_ts should span train_start_ts .. test_end_ts.
    """
    return {"fold": _range_fields(fold), "grid": [dict(sorted(point.items())) for point in grid]}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _parse_range(obj: object) -> FoldRange | str:
    if not isinstance(obj, dict):
        return f"fold: expected an object, got {type(obj).__name__}"
    for key in ("index", *_RANGE_KEYS):
        if not _is_int(obj.get(key)):
            return f"fold.{key}: expected a whole number, got {obj.get(key)!r:.40}"
    fold = FoldRange(obj["index"], *(obj[key] for key in _RANGE_KEYS))
    if fold.index < 0:
        return f"fold.index: expected >= 0, got {fold.index}"
    if not fold.train_start_ts < fold.train_end_ts <= fold.test_start_ts < fold.test_end_ts:
        return (
            f"fold: need train_start_ts < train_end_ts <= test_start_ts < test_end_ts, got "
            f"{fold.train_start_ts}, {fold.train_end_ts}, {fold.test_start_ts}, {fold.test_end_ts}"
        )
    return fold


def _parse_params(obj: object, where: str) -> dict[str, float] | str:
    if not isinstance(obj, dict) or not obj:
        return f"{where}: expected a non-empty object of params"
    for key, value in obj.items():
        if not isinstance(key, str) or not _is_number(value):
            return f"{where}.{key}: expected a finite number, got {value!r:.40}"
    return dict(obj)


def parse_fold_request(body: Mapping[str, Any]) -> tuple[FoldRange, list[dict[str, float]]] | str:
    """A `wfv_fold` BACKTEST's fold and grid, or a message saying what is wrong (never raises)."""
    if not isinstance(body, Mapping):
        return f"expected an object, got {type(body).__name__}"
    fold = _parse_range(body.get("fold"))
    if isinstance(fold, str):
        return fold
    grid = body.get("grid")
    if not isinstance(grid, list) or not grid:
        return "grid: expected a non-empty list of params objects"
    if len(grid) > MAX_WIRE_GRID:
        return f"grid: {len(grid)} points, at most {MAX_WIRE_GRID}"
    points = []
    for i, obj in enumerate(grid):
        point = _parse_params(obj, f"grid[{i}]")
        if isinstance(point, str):
            return point
        points.append(point)
    return fold, points


def _round_sig(value: float) -> float:
    return float(f"{value:.{RETURN_DIGITS}g}")


def fold_result_fields(result: FoldResult) -> dict[str, Any]:
    """The `fold` key a `wfv_fold` BACKTEST_RESULT adds: ranges, status, chosen params, Sharpes, test returns.

    The test window's per-bar returns are sent in full (RETURN_DIGITS significant digits); the result's
    `metrics` should be the test window's (`result.test_metrics`).
    """
    out: dict[str, Any] = {
        **_range_fields(result.fold),
        "status": result.status,
        "params": dict(result.params) if result.params is not None else None,
        "train_sharpe": result.train_sharpe,
        "test_sharpe": result.test_sharpe,
        "test_trades": result.test_trades,
        "test_pnl_pips": result.test_pnl_pips,
        "candidates": result.candidates,
        "test_returns": [_round_sig(x) for x in np.asarray(result.test_returns, dtype=np.float64).tolist()],
    }
    if result.error is not None:
        out["error"] = result.error
    return {"fold": out}


def _optional_number(obj: Mapping[str, Any], key: str) -> float | str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not _is_number(value):
        return f"fold.{key}: expected a finite number or null, got {value!r:.40}"
    return float(value)


def parse_fold_result(body: Mapping[str, Any]) -> FoldResult | str:
    """A `wfv_fold` BACKTEST_RESULT's fold, or a message saying what is wrong (never raises).

    `test_metrics` comes from the result's `metrics` when it is an object.
    """
    if not isinstance(body, Mapping):
        return f"expected an object, got {type(body).__name__}"
    obj = body.get("fold")
    fold = _parse_range(obj)
    if isinstance(fold, str):
        return fold
    assert isinstance(obj, dict)
    status = obj.get("status")
    if status not in ("ok", "error"):
        return f"fold.status: expected ok or error, got {status!r:.40}"
    error = obj.get("error")
    if error is not None and not isinstance(error, str):
        return f"fold.error: expected a string, got {type(error).__name__}"
    params: dict[str, float] | None = None
    if obj.get("params") is not None:
        parsed = _parse_params(obj["params"], "fold.params")
        if isinstance(parsed, str):
            return parsed
        params = parsed
    train_sharpe = _optional_number(obj, "train_sharpe")
    if isinstance(train_sharpe, str):
        return train_sharpe
    test_sharpe = _optional_number(obj, "test_sharpe")
    if isinstance(test_sharpe, str):
        return test_sharpe
    returns = obj.get("test_returns", [])
    if not isinstance(returns, list) or not all(_is_number(x) for x in returns):
        return "fold.test_returns: expected a list of finite numbers"
    trades = obj.get("test_trades", 0)
    if not _is_int(trades) or trades < 0:
        return f"fold.test_trades: expected a whole number >= 0, got {trades!r:.40}"
    pnl = obj.get("test_pnl_pips", 0.0)
    if not _is_number(pnl):
        return f"fold.test_pnl_pips: expected a finite number, got {pnl!r:.40}"
    candidates = obj.get("candidates", 0)
    if not _is_int(candidates) or candidates < 0:
        return f"fold.candidates: expected a whole number >= 0, got {candidates!r:.40}"
    if status == "ok" and params is None:
        return "fold.params: an ok fold must name the params it chose"
    metrics = body.get("metrics")
    return FoldResult(
        fold,
        status,
        params=params,
        train_sharpe=train_sharpe,
        test_sharpe=test_sharpe,
        test_returns=np.array(returns, dtype=np.float64),
        test_trades=trades,
        test_pnl_pips=float(pnl),
        error=error if error is not None else (None if status == "ok" else "fold failed"),
        candidates=candidates,
        test_metrics=dict(metrics) if isinstance(metrics, dict) else {},
    )
