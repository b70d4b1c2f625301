"""The backtest engine (SPEC §4, docs/metrics.md): bars + strategy rules -> trades, per-bar returns, metrics.

The orchestration and the per-trade arithmetic are numpy; the passes over every bar (indicators, signals,
each trade's walk to its stop or target, the marked-to-market returns) are compiled loops in kernelsignals.py
and kerneltrades.py. They import numba (~0.2 s and ~80 MB of RSS), so they are imported inside the functions
that compute: processes that only need Bars (the daemon, the data tools) never load it. The indicators and
the families' signals live in indicators.py; the names tests and benches import from here still do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from swimmy.backtest.indicators import (
    TIE_TOLERANCE,
    bollinger,
    ema,
    entry_signals,
    family_signals,
    rolling_max,
    rsi,
    sma,
)
from swimmy.backtest.indicators import _cross_state as _cross_state  # re-exported: tests and bench import it here
from swimmy.backtest.metrics import PIPS_DECIMALS, compute_metrics, returns_sketch
from swimmy.backtest.strategies import StrategySpec, pip_size, validate
from swimmy.errors import BacktestError, DataError

__all__ = [
    "EXIT_REASONS",
    "TIE_TOLERANCE",
    "BacktestResult",
    "Bars",
    "Costs",
    "Simulation",
    "Trade",
    "bollinger",
    "ema",
    "entry_signals",
    "family_signals",
    "rolling_max",
    "rsi",
    "run_backtest",
    "simulate",
    "sma",
    "warm_up",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

EXIT_REASONS: tuple[str, ...] = ("signal", "sl", "tp", "end")
_SIGNAL, _SL, _TP, _END = range(4)
# Stop and target levels are rounded so that 1.1000 - 10 pips equals the quoted 1.0990 (FX quotes have <= 6 decimals).
_LEVEL_DECIMALS = 10


@dataclass(frozen=True, eq=False)
class Bars:
    """OHLC bars of one symbol and timeframe, oldest first; `source` names the file for messages."""

    timestamps: IntArray  # Unix seconds, strictly increasing
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or "bars"
        object.__setattr__(self, "timestamps", np.ascontiguousarray(self.timestamps, dtype=np.int64))
        for name in ("open", "high", "low", "close"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        arrays = (self.timestamps, self.open, self.high, self.low, self.close)
        if any(a.ndim != 1 or len(a) != len(self.timestamps) for a in arrays):
            raise DataError(f"{where}: timestamps, open, high, low and close must be 1-D arrays of one length")
        ts = self.timestamps
        if len(ts) > 1:
            bad = np.flatnonzero(ts[1:] <= ts[:-1])
            if len(bad):
                i = int(bad[0]) + 1
                raise DataError(
                    f"{where}: timestamps not strictly increasing at bar {i} ({int(ts[i - 1])} then {int(ts[i])})"
                )
        for name in ("open", "high", "low", "close"):
            values: FloatArray = getattr(self, name)
            bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
            if len(bad):
                i = int(bad[0])
                raise DataError(
                    f"{where}: {name} at bar {i} (ts {int(ts[i])}) is {float(values[i])}, not a positive price"
                )

    def __len__(self) -> int:
        """The number of bars."""
        return len(self.timestamps)


@dataclass(frozen=True)
class Costs:
    """Trading costs in pips, paid once per round trip; `pip` overrides the symbol's default pip size."""

    spread_pips: float = 0.0
    slippage_pips: float = 0.0
    pip: float | None = None


@dataclass(frozen=True)
class Trade:
    """One closed trade; pnl_pips is net of costs."""

    entry_ts: int
    exit_ts: int
    side: int  # +1 long, -1 short
    entry_price: float
    exit_price: float
    pnl_pips: float
    exit_reason: str  # "signal" | "sl" | "tp" | "end"


@dataclass(frozen=True)
class BacktestResult:
    """Metrics (the keys of BACKTEST_RESULT.metrics), the range actually used, and the trades when asked for."""

    metrics: dict[str, float | int | None]
    bars: int
    start_ts: int | None
    end_ts: int | None
    trades: list[Trade] = field(default_factory=list)
    sketch: dict[str, list[float]] | None = None  # the returns sketch (metrics.returns_sketch), when asked for


def run_backtest(
    spec: StrategySpec,
    bars: Bars,
    *,
    start_ts: int | None = None,
    end_ts: int | None = None,
    costs: Costs = Costs(),  # frozen, so one shared default is safe
    include_trades: bool = False,
    include_sketch: bool = False,
) -> BacktestResult:
    """Backtest `spec` on the bars in [start_ts, end_ts); BacktestError when the request can't be served."""
    sim = simulate(spec, bars, start_ts=start_ts, end_ts=end_ts, costs=costs)
    metrics = compute_metrics(sim.returns, sim.pnl_pips, spec.timeframe)
    ts = bars.timestamps[sim.first_bar :]
    trades = sim.trades(bars) if include_trades else []
    sketch = returns_sketch(sim.returns) if include_sketch else None
    return BacktestResult(metrics, len(sim.returns), int(ts[0]), int(ts[len(sim.returns) - 1]), trades, sketch)


def warm_up() -> None:
    """Load the compiled loops now (compile them, the first time after an install: about 8 s; else about 0.5 s).

    A worker should call this before its first READY: a backtest that compiles may stay silent for longer than
    `backtest.worker_timeout_sec`. It runs every family with and without stops on a few read-only bars, the
    types a worker's memory-mapped bars have, so every kernel a worker needs is loaded.
    """
    prices = 1.0 + 0.01 * np.sin(np.arange(64.0))
    columns = (np.arange(64, dtype=np.int64) * 60, prices, prices + 0.002, prices - 0.002, prices + 0.001)
    for a in columns:
        a.flags.writeable = False
    bars = Bars(*columns, "warm-up")
    for family, params in _WARM_UP_PARAMS.items():
        for stops in ((0.0, 0.0), (10.0, 10.0)):
            run_backtest(StrategySpec(family, params, "EURUSD", "H1", *stops), bars, include_sketch=True)


_WARM_UP_PARAMS: dict[str, dict[str, float]] = {
    "sma_cross": {"fast": 2, "slow": 3},
    "ema_cross": {"fast": 2, "slow": 3},
    "rsi_reversion": {"period": 2, "lower": 30, "upper": 70},
    "bollinger_breakout": {"period": 2, "k": 1.0},
    "donchian_breakout": {"period": 2},
}


@dataclass(frozen=True, eq=False)
class Simulation:
    """The raw outcome of one backtest: every bar's return and the closed trades as arrays of range-local indices."""

    first_bar: int  # index in the Bars of the range's first bar
    returns: FloatArray  # one per bar of the range, marked to market, net of costs
    entry: IntArray  # bar whose open is the entry
    exit: IntArray  # bar whose open (signal), level (sl/tp) or close (end) is the exit
    side: IntArray
    entry_price: FloatArray
    exit_price: FloatArray
    pnl_pips: FloatArray  # net of costs
    reason: IntArray  # index into EXIT_REASONS

    def trades(self, bars: Bars) -> list[Trade]:
        """The trades as Trade records with the bars' timestamps."""
        ts = bars.timestamps[self.first_bar :]
        columns = (self.entry, self.exit, self.side, self.entry_price, self.exit_price, self.pnl_pips, self.reason)
        return [
            Trade(int(ts[i]), int(ts[x]), int(d), float(p0), float(p1), float(pp), EXIT_REASONS[k])
            for i, x, d, p0, p1, pp, k in zip(*columns, strict=True)
        ]


def simulate(
    spec: StrategySpec,
    bars: Bars,
    *,
    start_ts: int | None = None,
    end_ts: int | None = None,
    costs: Costs = Costs(),  # frozen, so one shared default is safe
) -> Simulation:
    """Trades and per-bar returns of `spec` on the bars in [start_ts, end_ts); BacktestError as run_backtest."""
    validate(spec)
    for key in ("spread_pips", "slippage_pips"):
        value = getattr(costs, key)
        if not math.isfinite(value) or value < 0:
            raise BacktestError(f"backtest.{key} must be a finite number >= 0, got {value!r}")
    s, e = _range(bars, start_ts, end_ts)
    # Only bars before the range's end exist for the indicators: nothing after end_ts can leak in.
    ev, is_state = family_signals(spec, bars.open[:e], bars.high[:e], bars.low[:e], bars.close[:e])
    at, side = entry_signals(ev, s, is_state=is_state)
    o, h, lo, c = bars.open[s:e], bars.high[s:e], bars.low[s:e], bars.close[s:e]
    pip = costs.pip if costs.pip is not None and costs.pip > 0 else pip_size(spec.symbol)
    if spec.sl_pips > 0 or spec.tp_pips > 0:
        fills = _fills_with_stops(at, side, o, h, lo, c, spec.sl_pips * pip, spec.tp_pips * pip)
    else:
        fills = _fills_without_stops(at, side, o, c)
    cost = (costs.spread_pips + costs.slippage_pips) * pip
    entry_price = o[fills.entry]
    pnl = np.round((fills.side * (fills.exit_price - entry_price) - cost) / pip, PIPS_DECIMALS)
    return Simulation(
        s,
        _bar_returns(o, c, fills, cost),
        fills.entry,
        fills.exit,
        fills.side,
        entry_price,
        fills.exit_price,
        pnl,
        fills.reason,
    )


def _range(bars: Bars, start_ts: int | None, end_ts: int | None) -> tuple[int, int]:
    """Bar indices [s, e) of [start_ts, end_ts); BacktestError when fewer than 2 bars fall inside."""
    ts = bars.timestamps
    s = 0 if start_ts is None else int(np.searchsorted(ts, start_ts, side="left"))
    e = len(ts) if end_ts is None else int(np.searchsorted(ts, end_ts, side="left"))
    if e - s >= 2:
        return s, e
    where = bars.source or "the bars"
    wanted = f"[{_when(start_ts)}, {_when(end_ts)})"
    span = f"{_when(int(ts[0]))} .. {_when(int(ts[-1]))}" if len(ts) else "nothing"
    if e <= s:
        raise BacktestError(f"no bars in {wanted} of {where} (it holds {len(ts)} bars: {span})")
    raise BacktestError(f"only 1 bar in {wanted} of {where}; a backtest needs at least 2 (the data spans {span})")


def _when(ts: int | None) -> str:
    if ts is None:
        return "open"
    try:
        return f"{ts} ({datetime.fromtimestamp(ts, tz=UTC):%Y-%m-%d %H:%M}Z)"
    except (OverflowError, OSError, ValueError):
        return str(ts)


# --- positions -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fills:
    """Closed trades as parallel arrays of range-local bar indices, sides, exit prices and EXIT_REASONS codes."""

    entry: IntArray  # bar whose open is the entry
    exit: IntArray  # bar whose open (signal), level (sl/tp) or close (end) is the exit
    side: IntArray
    exit_price: FloatArray
    reason: IntArray


def _fills_without_stops(at: IntArray, side: IntArray, o: FloatArray, c: FloatArray) -> _Fills:
    """Without SL/TP the position is the last signal's side: a signal that changes it is a reversal (or the entry)."""
    m = len(o)
    changes = np.empty(len(side), dtype=bool)
    changes[:1] = True
    np.not_equal(side[1:], side[:-1], out=changes[1:])
    entry, side = at[changes], side[changes]
    if len(entry) == 0:
        return _Fills(entry, entry, side, np.empty(0), entry)
    exit_ = np.append(entry[1:], m - 1)
    exit_price = np.append(o[entry[1:]], c[m - 1])
    reason = np.full(len(entry), _SIGNAL, dtype=np.int64)
    reason[-1] = _END
    return _Fills(entry, exit_, side, exit_price, reason)


def _fills_with_stops(
    at: IntArray,
    side: IntArray,
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    c: FloatArray,
    sl_dist: float,
    tp_dist: float,
) -> _Fills:
    """Walk trade by trade: each trade ends at its first SL/TP bar, the opposite signal, or the range's last close."""
    from swimmy.backtest import kerneltrades

    # Each signal's levels, should it open a trade; a level the strategy doesn't have is never touched. The arrays
    # share allocations: past numpy's 4 MB huge-page threshold when signals are many, they cost few page faults.
    n = len(at)
    stop, target = np.empty((2, n))
    if sl_dist > 0:
        _levels(o, at, side, -sl_dist, stop)
    else:
        np.multiply(side, -np.inf, out=stop)
    if tp_dist > 0:
        _levels(o, at, side, tp_dist, target)
    else:
        np.multiply(side, np.inf, out=target)
    entry, exit_, sides, reason = np.empty((4, n), dtype=np.int64)  # room for one trade per signal
    price = np.empty(n)
    t = kerneltrades.fills_with_stops(at, side, o, h, lo, c, stop, target, entry, exit_, sides, price, reason)
    return _Fills(entry[:t], exit_[:t], sides[:t], price[:t], reason[:t])


def _levels(o: FloatArray, at: IntArray, side: IntArray, dist: float, out: FloatArray) -> None:
    """out = round(o[at] + side·dist, _LEVEL_DECIMALS), equal to Python's round (the exact decimal rounding)."""
    from swimmy.backtest import kerneltrades

    if kerneltrades.round_levels(o, at, side, dist, 10.0**_LEVEL_DECIMALS, out):
        for n in np.flatnonzero(np.isnan(out)):
            out[n] = round(float(o[at[n]]) + int(side[n]) * dist, _LEVEL_DECIMALS)


def _bar_returns(o: FloatArray, c: FloatArray, f: _Fills, cost: float) -> FloatArray:
    """Marked-to-market simple return of every bar: a carried leg and a leg entered at the open, a + b + a·b."""
    from swimmy.backtest import kerneltrades

    r = np.empty(len(o))
    kerneltrades.bar_returns(o, c, f.entry, f.exit, f.side, f.exit_price, cost, r)
    return r
