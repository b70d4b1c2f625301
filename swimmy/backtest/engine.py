"""The vectorised backtest engine (SPEC §4, docs/metrics.md): bars + strategy rules -> trades, per-bar returns, metrics.

Indicators, signals, positions without stops, returns and metrics are numpy array operations; with a
stop-loss or take-profit the engine loops over trades (never over bars), scanning each trade's bars with
one vectorised comparison.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from swimmy.backtest.metrics import PIPS_DECIMALS, compute_metrics, returns_sketch
from swimmy.backtest.strategies import StrategySpec, pip_size, validate
from swimmy.errors import BacktestError, DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SignalArray = npt.NDArray[np.int8]

EXIT_REASONS: tuple[str, ...] = ("signal", "sl", "tp", "end")
_SIGNAL, _SL, _TP, _END = range(4)
# Stop and target levels are rounded so that 1.1000 - 10 pips equals the quoted 1.0990 (FX quotes have <= 6 decimals).
_LEVEL_DECIMALS = 10
# exp(300) keeps the block-wise EMA's growth factors far from float overflow and its cumsum precise.
_MAX_LOG_GROWTH = 300.0


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


# --- indicators: full-length arrays, NaN until defined -------------------------------------------------------------


def sma(x: FloatArray, n: int) -> FloatArray:
    """Simple moving average over n bars."""
    return _window_means(_prefix_sums(x), float(x[0]) if len(x) else 0.0, n)


def _prefix_sums(x: FloatArray) -> FloatArray:
    """cs[i] = Σ (x[:i] - x[0]): deviations from the first price keep the sum small and its rounding error tiny."""
    cs = np.empty(len(x) + 1)
    cs[0] = 0.0
    if len(x):
        np.cumsum(x - x[0], out=cs[1:])
    return cs


def _window_means(cs: FloatArray, base: float, n: int) -> FloatArray:
    out = np.full(len(cs) - 1, np.nan)
    if 0 < n < len(cs):
        out[n - 1 :] = (cs[n:] - cs[:-n]) / n + base
    return out


def ema(x: FloatArray, n: int) -> FloatArray:
    """Exponential moving average, alpha = 2/(n+1), seeded with SMA(n) at bar n-1."""
    out = np.full(len(x), np.nan)
    if 0 < n <= len(x):
        out[n - 1 :] = _ewm(float(x[:n].mean()), x[n:], 2.0 / (n + 1))
    return out


def rsi(close: FloatArray, period: int) -> FloatArray:
    """Wilder's RSI: averages seeded with the simple mean of the first `period` gains/losses, then alpha = 1/period."""
    out = np.full(len(close), np.nan)
    if len(close) <= period:
        return out
    change = np.diff(close)
    gain = np.maximum(change, 0.0)
    loss = np.maximum(-change, 0.0)
    avg_gain = _ewm(float(gain[:period].mean()), gain[period:], 1.0 / period)
    avg_loss = _ewm(float(loss[:period].mean()), loss[period:], 1.0 / period)
    total = avg_gain + avg_loss
    # No movement at all over the window: neither overbought nor oversold.
    values = np.full(len(total), 50.0)
    np.divide(100.0 * avg_gain, total, out=values, where=total > 0)
    out[period:] = values
    return out


def bollinger(close: FloatArray, period: int, k: float) -> tuple[FloatArray, FloatArray]:
    """Upper and lower Bollinger bands: SMA(period) ± k·std, std the population std over the same window."""
    upper = np.full(len(close), np.nan)
    lower = np.full(len(close), np.nan)
    if period <= len(close):
        base = float(close[0])
        dev = close - base
        cs1 = np.concatenate(([0.0], np.cumsum(dev)))
        cs2 = np.concatenate(([0.0], np.cumsum(dev * dev)))
        mean = (cs1[period:] - cs1[:-period]) / period
        # E[x²] - E[x]² can round to a hair below 0 on a flat window.
        sigma = np.sqrt(np.maximum((cs2[period:] - cs2[:-period]) / period - mean * mean, 0.0))
        upper[period - 1 :] = base + mean + k * sigma
        lower[period - 1 :] = base + mean - k * sigma
    return upper, lower


def rolling_max(x: FloatArray, w: int) -> FloatArray:
    """out[i] = max(x[i : i + w]) for every full window (van Herk/Gil-Werman: O(n) whatever w)."""
    n = len(x)
    if w > n:
        return np.empty(0)
    blocks = -(-n // w)
    padded = np.concatenate((x, np.full(blocks * w - n, -np.inf))).reshape(blocks, w)
    prefix = np.maximum.accumulate(padded, axis=1).ravel()
    suffix = np.maximum.accumulate(padded[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.maximum(suffix[: n - w + 1], prefix[w - 1 : n])


def _ewm(seed: float, x: FloatArray, alpha: float) -> FloatArray:
    """y[0] = seed, y[i] = (1 - alpha)·y[i-1] + alpha·x[i-1]: 1 + len(x) values, computed in closed form per block."""
    out = np.empty(len(x) + 1)
    out[0] = seed
    q = 1.0 - alpha
    if q <= 0.0:
        out[1:] = x
        return out
    if len(x) == 0:
        return out
    # Within a block y[b+m] = q^(m+1)·(y[b-1] + alpha·Σ_{i<=m} q^-(i+1)·x[b+i]); the block length bounds q^-m.
    block = len(x) if -math.log(q) * len(x) <= _MAX_LOG_GROWTH else max(1, int(_MAX_LOG_GROWTH / -math.log(q)))
    steps = np.arange(1, block + 1, dtype=np.float64)
    grow = q**-steps
    decay = q**steps
    prev = seed
    for b0 in range(0, len(x), block):
        seg = x[b0 : b0 + block]
        m = len(seg)
        y = (np.cumsum(seg * grow[:m]) * alpha + prev) * decay[:m]
        out[1 + b0 : 1 + b0 + m] = y
        prev = float(y[-1])
    return out


# --- signals ---------------------------------------------------------------------------------------------------------


def family_signals(
    spec: StrategySpec, o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray
) -> tuple[SignalArray, bool]:
    """Per bar, read at its close: the cross families' state (+1/-1, 0 = no change) or the others' signal events."""
    p = spec.params
    with np.errstate(invalid="ignore"):  # NaN warm-up values compare False: no signal
        if spec.family == "sma_cross":
            cs, base = _prefix_sums(c), float(c[0])
            fast, slow = _window_means(cs, base, int(p["fast"])), _window_means(cs, base, int(p["slow"]))
            return _cross_state(fast, slow, c), True
        if spec.family == "ema_cross":
            fast, slow = ema(c, int(p["fast"])), ema(c, int(p["slow"]))
            return _cross_state(fast, slow, c), True
        period = int(p["period"])
        if spec.family == "rsi_reversion":
            value = rsi(c, period)
            prev = np.concatenate(([np.nan], value[:-1]))
            lower, upper = p["lower"], p["upper"]
            return _side((prev < lower) & (value >= lower), (prev > upper) & (value <= upper)), False
        if spec.family == "bollinger_breakout":
            upper_band, lower_band = bollinger(c, period, p["k"])
            prev_c = np.concatenate(([np.nan], c[:-1]))
            prev_up = np.concatenate(([np.nan], upper_band[:-1]))
            prev_low = np.concatenate(([np.nan], lower_band[:-1]))
            long = (prev_c <= prev_up) & (c > upper_band)
            short = (prev_c >= prev_low) & (c < lower_band)
            return _side(long, short), False
        # donchian_breakout: the channel of bar t is bars t-period .. t-1, i.e. window t-period of rolling_max.
        channel_high = np.full(len(c), np.inf)
        channel_low = np.full(len(c), -np.inf)
        if period < len(c):
            channel_high[period:] = rolling_max(h[:-1], period)
            channel_low[period:] = -rolling_max(-lo[:-1], period)
        return _side(c > channel_high, c < channel_low), False


# Two averages that are equal in exact arithmetic differ by rounding noise (~1e-14 on FX quotes) in
# floats, and a noisy sign at a tie is a false cross (SPEC §4: equal changes nothing). A difference
# within this share of the price is a tie; real crosses are millions of times wider.
TIE_TOLERANCE = 1e-11


def _cross_state(fast: FloatArray, slow: FloatArray, c: FloatArray) -> SignalArray:
    tol = TIE_TOLERANCE * np.abs(c)
    diff = fast - slow
    return _side(diff > tol, diff < -tol)


def _side(long: npt.NDArray[np.bool_], short: npt.NDArray[np.bool_]) -> SignalArray:
    return long.astype(np.int8) - short.astype(np.int8)


def entry_signals(ev: SignalArray, s: int, *, is_state: bool) -> tuple[IntArray, IntArray]:
    """The range-local bars whose open a signal acts at (read at the close before) and the signals' sides.

    `ev` holds one value per bar up to the range's end. A cross family's first value is the state it holds
    at the close before the range (it holds that side from the range's first open), then each change of
    state; the other families' values are their signal events as they are. A signal on the last bar is dropped.
    """
    if not is_state:
        first = max(s - 1, 0)
        closes = np.flatnonzero(ev[first:-1]) + first
        return closes + 1 - s, ev[closes].astype(np.int64)
    # 0 means "no change": the state at a close is the last nonzero value, so only changes between them count.
    defined = np.flatnonzero(ev[:-1])
    values = ev[defined]
    changed = np.empty(len(values), dtype=bool)
    changed[:1] = True
    np.not_equal(values[1:], values[:-1], out=changed[1:])
    closes, values = defined[changed], values[changed]
    held = int(np.searchsorted(closes, s - 1, side="right")) - 1  # the last change at or before the close s-1
    if held >= 0:
        closes = np.concatenate(([s - 1], closes[held + 1 :]))
        values = values[held:]
    return closes + 1 - s, values.astype(np.int64)


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
    m = len(o)
    anys, sides = at.tolist(), side.tolist()
    # Per side: the bars of its signals and their positions in `anys`, to find the next opposite signal by bisection.
    is_long = side > 0
    by_side = {
        1: (at[is_long].tolist(), np.flatnonzero(is_long).tolist()),
        -1: (at[~is_long].tolist(), np.flatnonzero(~is_long).tolist()),
    }
    entries: list[int] = []
    exits: list[int] = []
    trade_sides: list[int] = []
    prices: list[float] = []
    reasons: list[int] = []
    n = 0  # position in `anys` of the signal that opens the next trade
    while n < len(anys):
        j, d = anys[n], sides[n]
        entry = float(o[j])
        opposite_at, opposite_n = by_side[-d]
        p = bisect_right(opposite_at, j)
        k = opposite_at[p] if p < len(opposite_at) else m  # the reversal bar; stops are checked on bars j .. k-1
        stop = round(entry - d * sl_dist, _LEVEL_DECIMALS) if sl_dist > 0 else None
        target = round(entry + d * tp_dist, _LEVEL_DECIMALS) if tp_dist > 0 else None
        hit = _first_touch(h[j:k], lo[j:k], d, stop, target)
        entries.append(j)
        trade_sides.append(d)
        if hit >= 0:
            b = j + hit
            bar_open = float(o[b])
            if stop is not None and (float(lo[b]) <= stop if d > 0 else float(h[b]) >= stop):
                # Both touched in one bar: the stop counts.
                level, reason = stop, _SL
            else:
                assert target is not None
                level, reason = target, _TP
            # A bar that opens beyond the level (a gap) fills at its open, not at a price that never traded.
            gapped = bar_open <= level if (d > 0) == (reason == _SL) else bar_open >= level
            exits.append(b)
            prices.append(bar_open if gapped else level)
            reasons.append(reason)
            n = bisect_right(anys, b)  # wait for the next signal: one read at bar b's close or later
        elif k < m:
            exits.append(k)
            prices.append(float(o[k]))
            reasons.append(_SIGNAL)
            n = opposite_n[p]
        else:
            exits.append(m - 1)
            prices.append(float(c[m - 1]))
            reasons.append(_END)
            break
    return _Fills(
        np.array(entries, dtype=np.int64),
        np.array(exits, dtype=np.int64),
        np.array(trade_sides, dtype=np.int64),
        np.array(prices, dtype=np.float64),
        np.array(reasons, dtype=np.int64),
    )


def _first_touch(h: FloatArray, lo: FloatArray, side: int, stop: float | None, target: float | None) -> int:
    """Offset of the first bar whose range touches the stop or the target, -1 when none does."""
    if side > 0:
        hit_stop = None if stop is None else lo <= stop
        hit_target = None if target is None else h >= target
    else:
        hit_stop = None if stop is None else h >= stop
        hit_target = None if target is None else lo <= target
    if hit_stop is None:
        hit = hit_target
    elif hit_target is None:
        hit = hit_stop
    else:
        hit = hit_stop | hit_target
    if hit is None or len(hit) == 0:
        return -1
    i = int(hit.argmax())
    return i if hit[i] else -1


def _bar_returns(o: FloatArray, c: FloatArray, f: _Fills, cost: float) -> FloatArray:
    """Marked-to-market simple return of every bar: a carried leg and a leg entered at the open, a + b + a·b."""
    m = len(o)
    prev_close = np.empty(m)
    prev_close[0] = o[0]  # never used: nothing is carried into the range's first bar
    prev_close[1:] = c[:-1]
    # The carried leg: a position held at the previous close is close to close, except on its exit bar.
    # Bars entry+1 .. exit carry the trade's side; the flat gaps between trades carry 0.
    gaps = np.empty(len(f.entry) + 1, dtype=np.int64)
    gaps[:-1] = f.entry + 1
    gaps[1:-1] -= f.exit[:-1] + 1
    gaps[0] = f.entry[0] + 1 if len(f.entry) else m
    gaps[-1] = m - (f.exit[-1] + 1) if len(f.entry) else gaps[-1]
    lengths = np.empty(2 * len(f.entry) + 1, dtype=np.int64)
    lengths[0::2] = gaps
    lengths[1::2] = f.exit - f.entry
    values = np.zeros(len(lengths))
    values[1::2] = f.side
    carried_side = np.repeat(values, lengths)
    r: FloatArray = carried_side * (c - prev_close) / prev_close
    carried = f.exit > f.entry
    x, d = f.exit[carried], f.side[carried]
    r[x] = d * (f.exit_price[carried] - prev_close[x]) / prev_close[x]
    # The new leg, entered at the open: to this bar's close, or to the exit price when it exits in the same bar.
    end = np.where(carried, c[f.entry], f.exit_price)
    new = (f.side * (end - o[f.entry]) - cost) / o[f.entry]
    old = r[f.entry]  # a reversal's old leg, from the previous close to this open; 0 when flat
    r[f.entry] = old + new + old * new
    return r
