"""The backtest engine on small hand-made price series whose trades and returns are worked out in the comments.

Prices are USDJPY-like (pip 0.01, so 1.00 in price is 100 pips) to keep the arithmetic in whole numbers.
Unless a test says otherwise, each bar opens at the previous close, high = max(open, close), low = min(open, close).
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pytest

from swimmy.backtest import kernels
from swimmy.backtest.engine import (
    TIE_TOLERANCE,
    Bars,
    Costs,
    Simulation,
    _levels,
    _range,
    bollinger,
    ema,
    rolling_max,
    rsi,
    run_backtest,
    simulate,
    sma,
    warm_up,
)
from swimmy.backtest.metrics import (
    METRIC_KEYS,
    PIPS_DECIMALS,
    SKETCH_BLOCKS,
    compute_metrics,
    probabilistic_sharpe_ratio,
    returns_sketch,
)
from swimmy.backtest.strategies import BARS_PER_YEAR, StrategySpec, pip_size
from swimmy.errors import BacktestError, DataError

T0 = 1_700_000_000
STEP = 3600

TradeRow = tuple[int, int, int, float, float, float, str]


def ts(i: int) -> int:
    """The timestamp of bar i."""
    return T0 + STEP * i


def make_bars(
    closes: Sequence[float],
    opens: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
    lows: Sequence[float] | None = None,
) -> Bars:
    """Bars at hourly timestamps; open defaults to the previous close, high/low to the larger/smaller of open/close."""
    c = np.array(closes, dtype=float)
    o = np.array(opens, dtype=float) if opens is not None else np.concatenate((c[:1], c[:-1]))
    h = np.array(highs, dtype=float) if highs is not None else np.maximum(o, c)
    lo = np.array(lows, dtype=float) if lows is not None else np.minimum(o, c)
    return Bars(T0 + STEP * np.arange(len(c), dtype=np.int64), o, h, lo, c, "test.csv")


def spec(family: str, symbol: str = "USDJPY", sl: float = 0, tp: float = 0, **params: float) -> StrategySpec:
    """A strategy on H1."""
    return StrategySpec(family, params, symbol, "H1", sl, tp)


def trades(strategy: StrategySpec, bars: Bars, **kw: Any) -> list[TradeRow]:
    """(entry bar, exit bar, side, entry price, exit price, pnl pips, exit reason) of each trade, prices rounded."""
    result = run_backtest(strategy, bars, include_trades=True, **kw)
    return [
        (
            (t.entry_ts - T0) // STEP,
            (t.exit_ts - T0) // STEP,
            t.side,
            round(t.entry_price, 8),
            round(t.exit_price, 8),
            round(t.pnl_pips, 6),
            t.exit_reason,
        )
        for t in result.trades
    ]


# --- sma_cross(fast 1, slow 3): long while close > SMA3, short while below ---------------------------------------
#  bar      0    1    2    3        4       5    6       7    8      9    10   11
#  close  100  100  100  103      107     108  104     100   97     97   100  104
#  SMA3     -    -  100  101  103.333     106  106.333 104  100.333 98   98   100.333
#  state    -    -    =   +1       +1      +1   -1      -1   -1     -1   +1   +1
#  open   100  100.25 100.25 100.25 103.25 107.25 108.25 104.25 100.25 97.25 97.25 100.25   (previous close + 0.25)
CROSS_CLOSES = [100, 100, 100, 103, 107, 108, 104, 100, 97, 97, 100, 104]
CROSS_OPENS = [100] + [c + 0.25 for c in CROSS_CLOSES[:-1]]
CROSS = spec("sma_cross", fast=1, slow=3)


def cross_bars(closes: Sequence[float] = CROSS_CLOSES) -> Bars:
    """The sma_cross series above (opens 0.25 above the previous close)."""
    return make_bars(closes, [closes[0]] + [c + 0.25 for c in closes[:-1]])


class TestCrossFamilies:
    def test_stop_and_reverse(self) -> None:
        """A cross family holds the side of its state: each cross closes the trade and opens the opposite one."""
        # Long from the open after close 3 (103.25) to the open after close 6 (104.25): +1.00 = +100 pips.
        # Short from 104.25 to the open after close 10 (100.25): +4.00 = +400 pips.
        # Long from 100.25 to the last close 104 (range end): +3.75 = +375 pips.
        assert trades(CROSS, cross_bars()) == [
            (4, 7, 1, 103.25, 104.25, 100.0, "signal"),
            (7, 11, -1, 104.25, 100.25, 400.0, "signal"),
            (11, 11, 1, 100.25, 104.0, 375.0, "end"),
        ]

    def test_entry_at_the_next_open(self) -> None:
        """The signal read at bar 3's close fills at bar 4's open (103.25), never at bar 3's close (103)."""
        first = trades(CROSS, cross_bars())[0]
        assert first[:4] == (4, 7, 1, 103.25)

    def test_equal_averages_change_nothing(self) -> None:
        """fast == slow is "no change": the position is kept; a cross on the last bar does nothing."""
        # sma_cross(1, 2) is long after an up close, short after a down close; an unchanged close is "equal".
        #  close 100 101 101 102 103 102: state +1 at close 1, = at close 2, +1, +1, -1 at the last close (ignored).
        # One long from bar 2's open (101) to the last close (102): +100 pips.
        assert trades(spec("sma_cross", fast=1, slow=2), make_bars([100, 101, 101, 102, 103, 102])) == [
            (2, 5, 1, 101.0, 102.0, 100.0, "end"),
        ]

    def test_ema_cross_stop_and_reverse(self) -> None:
        """ema_cross(1, 2): EMA(1) is the close; EMA(2) is seeded with SMA(2) and then alpha = 2/3."""
        # close  100  102      103      99       103
        # EMA2     -  101  102.333  100.111  102.037
        #   bar 1: SMA(100, 102) = 101                    close 102 > 101: long -> bar 2's open (102)
        #   bar 2: 2/3·103 + 1/3·101 = 102.333            103 > 102.333: still long
        #   bar 3: 2/3·99 + 1/3·102.333 = 100.111         99 < 100.111: short -> bar 4's open (99)
        #   bar 4: 2/3·103 + 1/3·100.111 = 102.037        long again, but on the last bar: ignored
        # Long 102 -> 99: -300 pips; short 99 -> last close 103: -400 pips.
        assert trades(spec("ema_cross", fast=1, slow=2), make_bars([100, 102, 103, 99, 103])) == [
            (2, 4, 1, 102.0, 99.0, -300.0, "signal"),
            (4, 4, -1, 99.0, 103.0, -400.0, "end"),
        ]


class TestEventFamilies:
    def test_rsi_crossings(self) -> None:
        """rsi_reversion: long when RSI crosses up through `lower`, short when it crosses down through `upper`."""
        # period 2, lower 30, upper 70. Changes: +1 +1 -3 -1 +2 +3 +1 -3 -1 0
        # bar 2: seed avg gain (1+1)/2 = 1, avg loss 0           -> RSI 100
        # bar 3: gain (1·1+0)/2 = 0.5, loss (0·1+3)/2 = 1.5      -> RSI 25     (100 > 70 >= 25: short)
        # bar 4: 0.25, (1.5+1)/2 = 1.25                         -> RSI 16.67
        # bar 5: (0.25+2)/2 = 1.125, 0.625                      -> RSI 64.29  (16.67 < 30 <= 64.29: long)
        # bar 6: 2.0625, 0.3125 -> 86.84; bar 7: 1.53125, 0.15625 -> 90.74
        # bar 8: 0.765625, 1.578125                             -> RSI 32.67  (90.74 > 70 >= 32.67: short)
        # bar 9: 0.3828, 1.2891 -> 22.90; bar 10: unchanged ratio -> 22.90 (no crossing)
        closes = [100, 101, 102, 99, 98, 100, 103, 104, 101, 100, 100]
        expected_rsi = [100, 25, 16.666667, 64.285714, 86.842105, 90.740741, 32.666667, 22.897196, 22.897196]
        values = rsi(np.array(closes, dtype=float), 2)
        assert np.isnan(values[:2]).all()
        assert values[2:] == pytest.approx(expected_rsi, abs=1e-6)
        # Short at bar 4's open (99) -> reversed at bar 6's open (100): -100; long 100 -> bar 9's open (101): +100;
        # short 101 -> last close 100: +100.
        assert trades(spec("rsi_reversion", period=2, lower=30, upper=70), make_bars(closes)) == [
            (4, 6, -1, 99.0, 100.0, -100.0, "signal"),
            (6, 9, 1, 100.0, 101.0, 100.0, "signal"),
            (9, 10, -1, 101.0, 100.0, 100.0, "end"),
        ]

    def test_bollinger_breakouts(self) -> None:
        """bollinger_breakout: long when the close crosses above SMA + k·sd, short when it crosses below SMA - k·sd."""
        # period 3, k 1, sd the population std of the window.
        # bar 3: (100,100,100) mean 100 sd 0 -> bands 100/100; close 100 is not above.
        # bar 4: (100,100,103) mean 101 sd √2 = 1.414 -> upper 102.414; close 103 > it, prev 100 <= 100: LONG
        # bar 5: (100,103,103) mean 102 sd 1.414 -> upper 103.414: inside; bar 6: (103,103,103) sd 0: 103 = band
        # bar 7: (103,103,97) mean 101 sd √8 = 2.828 -> lower 98.172; close 97 < it, prev 103 >= 103: SHORT
        # bar 8: (103,97,97) mean 99 -> lower 96.172: inside
        # bar 9: (97,97,96) mean 96.667 sd 0.471 -> lower 96.195; close 96 < it, prev 97 >= 96.172: short again,
        #        while already short: nothing.   bar 10: (97,96,96) lower 95.862: inside
        closes = [100, 100, 100, 100, 103, 103, 103, 97, 97, 96, 96]
        upper, lower = bollinger(np.array(closes, dtype=float), 3, 1.0)
        assert upper[4] == pytest.approx(101 + math.sqrt(2)) and lower[7] == pytest.approx(101 - math.sqrt(8))
        # Long at bar 5's open (103) -> bar 8's open (97): -600; short 97 -> last close 96: +100.
        assert trades(spec("bollinger_breakout", period=3, k=1), make_bars(closes)) == [
            (5, 8, 1, 103.0, 97.0, -600.0, "signal"),
            (8, 10, -1, 97.0, 96.0, 100.0, "end"),
        ]

    def test_donchian_breakouts(self) -> None:
        """donchian_breakout: long when the close tops the previous `period` highs, short below their lows."""
        # period 3.  bar:   0    1    2    3    4    5    6    7    8   9
        #            close 100  101  100  101  102  101  103  100   98  99
        #            high  100  101  101  101  102  102  103  103  100  99
        #            low   100  100  100  100  101  101  101  100   98  98
        # bar 3: max high of 0..2 = 101, close 101 not above.  bar 4: 102 > max(1..3) = 101: LONG
        # bar 6: 103 > max(3..5) = 102: long again (already long: nothing)
        # bar 7: 100 < min low(4..6) = 101: SHORT.   bar 8: 98 < 100: short again (nothing)
        # Long at bar 5's open (102) -> bar 8's open (100): -200; short 100 -> last close 99: +100.
        closes = [100, 101, 100, 101, 102, 101, 103, 100, 98, 99]
        assert trades(spec("donchian_breakout", period=3), make_bars(closes)) == [
            (5, 8, 1, 102.0, 100.0, -200.0, "signal"),
            (8, 9, -1, 100.0, 99.0, 100.0, "end"),
        ]


# --- stops: sma_cross(1, 2), i.e. long after an up close, short after a down close -----------------------------------
# bar:      0      1      2      3      4      5      6      7      8
# open    100    100  101.2  101.3  101.4  101.5  101.0  100.8  100.9
# high    100    101  101.5  101.4  101.6  101.5  101.0 100.95  101.0
# low     100    100  101.0 101.25  101.3  101.0  100.7  100.7 100.85
# close   100    101  101.3 101.35  101.5  101.0  100.8  100.9  101.0
# state          +1     +1     +1     +1     -1     -1     +1   (last)
# Without stops: long at bar 2's open (101.2), short at bar 6's open (101.0), long at bar 8's open (100.9).
STOP_BARS: dict[str, list[float]] = {
    "open": [100, 100, 101.2, 101.3, 101.4, 101.5, 101.0, 100.8, 100.9],
    "high": [100, 101, 101.5, 101.4, 101.6, 101.5, 101.0, 100.95, 101.0],
    "low": [100, 100, 101.0, 101.25, 101.3, 101.0, 100.7, 100.7, 100.85],
    "close": [100, 101, 101.3, 101.35, 101.5, 101.0, 100.8, 100.9, 101.0],
}
UPDOWN = "sma_cross"
# After the first trade: short 101.0 -> reversed at 100.9 (+10), long 100.9 -> last close 101.0 (+10).
TAIL = [(6, 8, -1, 101.0, 100.9, 10.0, "signal"), (8, 8, 1, 100.9, 101.0, 10.0, "end")]


def stop_bars(
    bar: int | None = None, ohlc: tuple[float, float, float, float] | None = None, scale: float = 1.0
) -> Bars:
    """The stop series above, with one bar's (open, high, low, close) replaced, prices multiplied by `scale`."""
    columns = {k: list(v) for k, v in STOP_BARS.items()}
    if bar is not None and ohlc is not None:
        for key, value in zip(("open", "high", "low", "close"), ohlc, strict=True):
            columns[key][bar] = value
    c = {k: [p * scale for p in v] for k, v in columns.items()}
    return make_bars(c["close"], c["open"], c["high"], c["low"])


class TestStops:
    def test_no_stops(self) -> None:
        """The base series without SL/TP: three trades, the first held from bar 2 to bar 6."""
        assert trades(spec(UPDOWN, fast=1, slow=2), stop_bars()) == [
            (2, 6, 1, 101.2, 101.0, -20.0, "signal"),
            *TAIL,
        ]

    @pytest.mark.parametrize(
        ("sl", "tp", "bar", "ohlc", "expected"),
        [
            # SL 50 pips: 101.2 - 0.50 = 100.7; bar 3's low 100.6 touches it -> exit at 100.7: -50.
            # The state stays long (close 101.35 > 101.3) but the family waits for the next cross (close 5).
            (50, 0, 3, (101.3, 101.4, 100.6, 101.35), [(2, 3, 1, 101.2, 100.7, -50.0, "sl"), *TAIL]),
            # TP 40 pips: 101.2 + 0.40 = 101.6; bar 3's high 101.65 touches it -> exit at 101.6: +40.
            (0, 40, 3, (101.3, 101.65, 101.25, 101.35), [(2, 3, 1, 101.2, 101.6, 40.0, "tp"), *TAIL]),
            # Both touched in bar 3 (high 101.65 >= 101.6, low 100.6 <= 100.7): the stop counts.
            (50, 40, 3, (101.3, 101.65, 100.6, 101.35), [(2, 3, 1, 101.2, 100.7, -50.0, "sl"), *TAIL]),
            # Bar 3 opens at 100.5, below the stop 100.7: the exit is the open, 100.5: -70.
            (50, 0, 3, (100.5, 101.4, 100.4, 101.35), [(2, 3, 1, 101.2, 100.5, -70.0, "sl"), *TAIL]),
            # Bar 3 opens at 101.9, above the target 101.6: the exit is the open, 101.9: +70.
            (0, 40, 3, (101.9, 102.0, 101.3, 101.35), [(2, 3, 1, 101.2, 101.9, 70.0, "tp"), *TAIL]),
            # The entry bar itself is checked: bar 2's low 100.6 hits 100.7 in the bar the trade opened.
            (50, 0, 2, (101.2, 101.5, 100.6, 101.3), [(2, 2, 1, 101.2, 100.7, -50.0, "sl"), *TAIL]),
        ],
        ids=["sl", "tp", "both-touched-stop-counts", "gap-through-stop", "gap-through-target", "sl-on-entry-bar"],
    )
    def test_long_exits(
        self, sl: float, tp: float, bar: int, ohlc: tuple[float, float, float, float], expected: list[TradeRow]
    ) -> None:
        """SL/TP are checked against high/low from the entry bar; a stop wins a tie; a gap fills at the open."""
        assert trades(spec(UPDOWN, sl=sl, tp=tp, fast=1, slow=2), stop_bars(bar, ohlc)) == expected

    def test_short_stop_and_the_next_signal(self) -> None:
        """A short's stop is above it; after a stop, a signal read at the stop bar's own close is the next one."""
        # SL 20 pips. Long 101.2: stop 101.0, bar 2's low 101.0 touches it exactly -> exit 101.0: -20.
        # Next cross: close 5 -> short at bar 6's open 101.0, stop 101.2; bar 7's high 101.25 -> exit 101.2: -20.
        # Bar 7's close (100.9 > 100.8) is a cross to long, read after the stop: long at bar 8's open 100.9 -> +10.
        bars = stop_bars(7, (100.8, 101.25, 100.7, 100.9))
        assert trades(spec(UPDOWN, sl=20, fast=1, slow=2), bars) == [
            (2, 2, 1, 101.2, 101.0, -20.0, "sl"),
            (6, 7, -1, 101.0, 101.2, -20.0, "sl"),
            (8, 8, 1, 100.9, 101.0, 10.0, "end"),
        ]

    def test_short_target(self) -> None:
        """A short's target is below it; the family waits for the next signal after each exit."""
        # TP 25 pips. Long 101.2: target 101.45, bar 2's high 101.5 -> +25 in the entry bar.
        # Short at bar 6's open 101.0: target 100.75, bar 6's low 100.7 -> +25.
        # The state stays short at close 6; close 7 crosses to long -> long at 100.9 -> last close 101.0: +10.
        assert trades(spec(UPDOWN, tp=25, fast=1, slow=2), stop_bars()) == [
            (2, 2, 1, 101.2, 101.45, 25.0, "tp"),
            (6, 6, -1, 101.0, 100.75, 25.0, "tp"),
            (8, 8, 1, 100.9, 101.0, 10.0, "end"),
        ]

    def test_stop_on_an_event_family_waits_for_any_next_signal(self) -> None:
        """After a stop, a breakout family re-enters on its next signal, whichever side it is."""
        # donchian(2) on closes 100 101 102 103 101 104 105: longs at closes 2, 3, 5, 6 (6 = last: ignored).
        # Long at bar 3's open (102), stop 50 pips = 101.5; bar 4 (open 103, low 101) -> exit 101.5: -50.
        # The long signal at close 3 came before the stop (ignored); the next one is close 5 -> long at bar 6's
        # open (104) -> last close 105: +100.
        bars = make_bars([100, 101, 102, 103, 101, 104, 105])
        assert trades(spec("donchian_breakout", sl=50, period=2), bars) == [
            (3, 4, 1, 102.0, 101.5, -50.0, "sl"),
            (6, 6, 1, 104.0, 105.0, 100.0, "end"),
        ]

    def test_unreachable_stops_change_nothing(self) -> None:
        """Stops too far to touch give the trades of no stops (the stop loop agrees with the vectorised path)."""
        rng = np.random.default_rng(7)
        bars = random_bars(rng, 3000)
        for family, params in FAMILY_PARAMS:
            plain = trades(spec(family, "EURUSD", **params), bars)
            far = trades(spec(family, "EURUSD", sl=1e6, tp=1e6, **params), bars)
            assert far == plain and len(plain) > 10, family


class TestRange:
    def test_range_end_closes_the_position(self) -> None:
        """An open position is closed at the close of the last bar before end_ts, reason "end"."""
        # end_ts = bar 9 (exclusive): the short from 104.25 is closed at bar 8's close 97: +7.25 = +725 pips.
        result = run_backtest(CROSS, cross_bars(), end_ts=ts(9), include_trades=True)
        assert trades(CROSS, cross_bars(), end_ts=ts(9)) == [
            (4, 7, 1, 103.25, 104.25, 100.0, "signal"),
            (7, 8, -1, 104.25, 97.0, 725.0, "end"),
        ]
        assert (result.bars, result.start_ts, result.end_ts) == (9, ts(0), ts(8))

    def test_nothing_after_end_ts_is_looked_at(self) -> None:
        """Changing every bar from end_ts on leaves the result unchanged (an IS run never sees the OOS window)."""
        wild = [*CROSS_CLOSES[:9], 1, 500, 3]
        a = run_backtest(CROSS, cross_bars(), end_ts=ts(9), include_trades=True)
        b = run_backtest(CROSS, cross_bars(wild), end_ts=ts(9), include_trades=True)
        assert a == b

    def test_cross_family_starts_on_its_state(self) -> None:
        """Warm-up before start_ts is used: a cross family holds its state from the range's first open."""
        # start_ts = bar 5: the state at close 4 is long, so the long opens at bar 5's open (107.25), and the long
        # opened at bar 4 (before the range) is no trade. 107.25 -> 104.25 = -300; then as before.
        result = run_backtest(CROSS, cross_bars(), start_ts=ts(5))
        assert trades(CROSS, cross_bars(), start_ts=ts(5)) == [
            (5, 7, 1, 107.25, 104.25, -300.0, "signal"),
            (7, 11, -1, 104.25, 100.25, 400.0, "signal"),
            (11, 11, 1, 100.25, 104.0, 375.0, "end"),
        ]
        assert (result.bars, result.start_ts, result.end_ts) == (7, ts(5), ts(11))

    def test_trades_entered_before_start_are_not_counted(self) -> None:
        """An event family's trade entered before start_ts is no trade; the range starts flat and waits for a signal."""
        # donchian(3) series of TestEventFamilies: longs at closes 4 and 6, shorts at 7 and 8.
        # start_ts = bar 6: the long entered at bar 5 is not counted. The first signal read inside the range
        # (closes 5 .. 8) is close 6's long -> long at bar 7's open (103) -> short at bar 8's open (100): -300;
        # short 100 -> last close 99: +100.
        bars = make_bars([100, 101, 100, 101, 102, 101, 103, 100, 98, 99])
        assert trades(spec("donchian_breakout", period=3), bars, start_ts=ts(6)) == [
            (7, 8, 1, 103.0, 100.0, -300.0, "signal"),
            (8, 9, -1, 100.0, 99.0, 100.0, "end"),
        ]

    def test_range_between_bar_times(self) -> None:
        """start_ts is inclusive and end_ts exclusive; bounds between bars select the bars inside."""
        result = run_backtest(CROSS, cross_bars(), start_ts=ts(2) - 1, end_ts=ts(6) + 1)
        assert (result.bars, result.start_ts, result.end_ts) == (5, ts(2), ts(6))

    @pytest.mark.parametrize(
        ("start", "end", "message"),
        [
            (ts(12), None, "no bars in [1700043200 (2023-11-15 10:13Z), open) of test.csv (it holds 12 bars:"),
            (None, ts(0), "no bars in [open, 1700000000"),
            (ts(5), ts(5), "no bars in"),
            (ts(8), ts(3), "no bars in"),
            (ts(3), ts(4), "only 1 bar in"),
            (ts(11), None, "a backtest needs at least 2"),
        ],
    )
    def test_too_few_bars(self, start: int | None, end: int | None, message: str) -> None:
        """A range holding no bar, or a single one, is a BacktestError naming the range, the file and its span."""
        with pytest.raises(BacktestError) as info:
            run_backtest(CROSS, cross_bars(), start_ts=start, end_ts=end)
        assert message in str(info.value)

    def test_no_trades_gives_null_metrics(self) -> None:
        """A range without a trade has the null metrics (not zeros) and still reports its bars."""
        result = run_backtest(CROSS, make_bars([100.0] * 6))
        assert result.metrics["trades"] == 0 and result.metrics["sharpe"] is None and result.metrics["psr"] is None
        assert result.bars == 6 and result.trades == []

    def test_signal_on_the_last_bar_does_nothing(self) -> None:
        """A cross read at the range's last close has no next open inside the range: no trade."""
        result = run_backtest(CROSS, make_bars([100, 100, 100, 100, 103]), include_trades=True)
        assert result.trades == [] and result.metrics["trades"] == 0


class TestReturnsAndCosts:
    def test_marked_to_market_returns(self) -> None:
        """Entry bar from the open to the close, then close to close; a reversal multiplies old and new legs."""
        sim = simulate(CROSS, cross_bars())
        expected = [
            0.0,
            0.0,
            0.0,
            0.0,
            107 / 103.25 - 1,  # long entered at bar 4's open 103.25, marked at the close 107
            108 / 107 - 1,
            104 / 108 - 1,
            (1 + 0.25 / 104) * (1 + 4.25 / 104.25) - 1,  # long 104 -> open 104.25, then short 104.25 -> 100
            0.03,  # short 100 -> 97
            0.0,  # short 97 -> 97
            -3 / 97,  # short 97 -> 100
            (1 - 0.25 / 100) * (1 + 3.75 / 100.25) - 1,  # short 100 -> open 100.25, then long 100.25 -> 104
        ]
        assert sim.returns == pytest.approx(expected, abs=1e-12)

    def test_stop_exit_returns(self) -> None:
        """The exit bar runs from the previous close to the exit price; flat bars after it are 0."""
        # SL 50: long 101.2 marked to 101.3 at bar 2, then 101.3 -> stop 100.7 at bar 3.
        sim = simulate(spec(UPDOWN, sl=50, fast=1, slow=2), stop_bars(3, (101.3, 101.4, 100.6, 101.35)))
        assert sim.returns[:6] == pytest.approx([0, 0, 101.3 / 101.2 - 1, 100.7 / 101.3 - 1, 0, 0], abs=1e-12)

    def test_costs_per_round_trip(self) -> None:
        """spread + slippage pips are paid once per trade: each pnl drops by exactly their sum, on the entry bar."""
        # 1.0 + 0.5 = 1.5 pips = 0.015 in price for a JPY pair.
        costs = Costs(spread_pips=1.0, slippage_pips=0.5)
        assert [t[5] for t in trades(CROSS, cross_bars(), costs=costs)] == [98.5, 398.5, 373.5]
        free, paid = simulate(CROSS, cross_bars()), simulate(CROSS, cross_bars(), costs=costs)
        assert paid.returns[4] == pytest.approx((107 - 103.25 - 0.015) / 103.25, abs=1e-12)
        changed = np.flatnonzero(~np.isclose(free.returns, paid.returns, rtol=0, atol=1e-15))
        assert changed.tolist() == [4, 7, 11]  # the entry bars only
        result = run_backtest(CROSS, cross_bars(), costs=costs)
        assert result.metrics["pnl_pips"] == 875.0 - 3 * 1.5

    @pytest.mark.parametrize("costs", [Costs(-1.0, 0.0), Costs(0.0, float("nan"))])
    def test_bad_costs(self, costs: Costs) -> None:
        """Negative or non-finite costs are refused with the config key to fix."""
        with pytest.raises(BacktestError, match=r"backtest\.(spread|slippage)_pips must be"):
            run_backtest(CROSS, cross_bars(), costs=costs)

    @pytest.mark.parametrize(("symbol", "scale"), [("USDJPY", 1.0), ("EURUSD", 0.01)])
    def test_pip_size(self, symbol: str, scale: float) -> None:
        """A JPY pip is 0.01 and others 0.0001: the same move at 1/100 of the price is the same pips in EURUSD."""
        # SL 50 pips: USDJPY 101.2 - 0.50 = 100.7; EURUSD 1.012 - 0.0050 = 1.007. Both lose 50 pips.
        got = trades(spec(UPDOWN, symbol, sl=50, fast=1, slow=2), stop_bars(3, (101.3, 101.4, 100.6, 101.35), scale))
        want = [(2, 3, 1, 101.2, 100.7, -50.0, "sl"), *TAIL]
        assert [t[5] for t in got] == [t[5] for t in want]
        assert [t[4] for t in got] == pytest.approx([t[4] * scale for t in want])

    def test_result_carries_exactly_the_metric_keys(self) -> None:
        """BacktestResult.metrics has exactly the keys of BACKTEST_RESULT.metrics, trades only when asked for."""
        result = run_backtest(CROSS, cross_bars())
        assert list(result.metrics) == list(METRIC_KEYS)
        assert result.metrics["trades"] == 3 and result.trades == []
        assert (result.metrics["wins"], result.metrics["losses"], result.metrics["pnl_pips"]) == (3, 0, 875.0)


class TestRequests:
    def test_invalid_spec_is_refused(self) -> None:
        """run_backtest validates the spec first: a bad one is a BacktestError naming the problem."""
        with pytest.raises(BacktestError, match=r"fast \(5\) must be < slow \(3\)"):
            run_backtest(spec("sma_cross", fast=5, slow=3), cross_bars())

    def test_bars_validation(self) -> None:
        """Bars refuse timestamps that don't increase, non-positive or NaN prices and ragged columns (DataError)."""
        c = np.array([1.0, 1.1, 1.2])
        with pytest.raises(DataError, match=r"test\.csv: timestamps not strictly increasing at bar 2 \(2 then 2\)"):
            Bars(np.array([1, 2, 2]), c, c, c, c, "test.csv")
        with pytest.raises(DataError, match=r"close at bar 1 \(ts 2\) is nan, not a positive price"):
            Bars(np.array([1, 2, 3]), c, c, c, np.array([1.0, np.nan, 1.0]), "test.csv")
        with pytest.raises(DataError, match=r"low at bar 0 \(ts 1\) is 0\.0, not a positive price"):
            Bars(np.array([1, 2, 3]), c, c, np.array([0.0, 1.0, 1.0]), c)
        with pytest.raises(DataError, match="one length"):
            Bars(np.array([1, 2]), c, c, c, c)

    def test_bars_length_and_dtypes(self) -> None:
        """len(bars) is the bar count; lists are accepted and stored as int64 / float64 arrays."""
        bars = Bars([1, 2, 3], [1, 1, 1], [2, 2, 2], [1, 1, 1], [1.5, 1.5, 1.5])  # type: ignore[arg-type]
        assert len(bars) == 3
        assert bars.timestamps.dtype == np.int64 and bars.close.dtype == np.float64


# --- indicators against plain loops on random data --------------------------------------------------------------------

FAMILY_PARAMS: list[tuple[str, dict[str, float]]] = [
    ("sma_cross", {"fast": 5, "slow": 20}),
    ("ema_cross", {"fast": 5, "slow": 20}),
    ("rsi_reversion", {"period": 14, "lower": 30, "upper": 70}),
    ("bollinger_breakout", {"period": 20, "k": 2.0}),
    ("donchian_breakout", {"period": 20}),
]


def random_bars(rng: np.random.Generator, n: int) -> Bars:
    """A EURUSD-like random walk with consistent OHLC, in read-only arrays."""
    c = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    o = np.concatenate(([1.1], c[:-1])) * np.exp(rng.normal(0, 0.0002, n))
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.0005, n)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.0005, n)))
    columns = (T0 + STEP * np.arange(n, dtype=np.int64), o, h, lo, c)
    for a in columns:
        a.flags.writeable = False  # as the data loader hands them over: the engine must never write into bars
    return Bars(*columns, "random")


def loop_ema(x: list[float], n: int) -> list[float]:
    """EMA by its definition, one bar at a time."""
    out = [math.nan] * len(x)
    out[n - 1] = sum(x[:n]) / n
    for i in range(n, len(x)):
        out[i] = 2 / (n + 1) * x[i] + (1 - 2 / (n + 1)) * out[i - 1]
    return out


def loop_rsi(x: list[float], n: int) -> list[float]:
    """Wilder's RSI by its definition, one bar at a time."""
    gains = [max(b - a, 0.0) for a, b in itertools.pairwise(x)]
    losses = [max(a - b, 0.0) for a, b in itertools.pairwise(x)]
    g, lo = sum(gains[:n]) / n, sum(losses[:n]) / n
    out = [math.nan] * len(x)
    out[n] = 100 * g / (g + lo)
    for i in range(n + 1, len(x)):
        g = (g * (n - 1) + gains[i - 1]) / n
        lo = (lo * (n - 1) + losses[i - 1]) / n
        out[i] = 100 * g / (g + lo)
    return out


class TestIndicators:
    @pytest.mark.parametrize("n", [1, 2, 3, 10, 200])
    def test_ema_matches_its_definition(self, n: int) -> None:
        """The block-wise closed-form EMA equals the bar-by-bar recursion over thousands of bars (many blocks)."""
        x = random_bars(np.random.default_rng(1), 5000).close
        assert ema(x, n) == pytest.approx(loop_ema(x.tolist(), n), rel=1e-11, nan_ok=True)

    @pytest.mark.parametrize("n", [2, 14, 100])
    def test_rsi_matches_its_definition(self, n: int) -> None:
        """RSI equals Wilder's recursion bar by bar."""
        x = random_bars(np.random.default_rng(2), 3000).close
        assert rsi(x, n) == pytest.approx(loop_rsi(x.tolist(), n), abs=1e-8, nan_ok=True)

    def test_sma_and_bollinger_match_windows(self) -> None:
        """SMA and the bands equal mean and population std computed window by window."""
        x = random_bars(np.random.default_rng(3), 2000).close
        windows = np.lib.stride_tricks.sliding_window_view(x, 20)
        assert sma(x, 20)[19:] == pytest.approx(windows.mean(axis=1), rel=1e-12)
        upper, lower = bollinger(x, 20, 2.0)
        assert upper[19:] == pytest.approx(windows.mean(axis=1) + 2 * windows.std(axis=1), rel=1e-9)
        assert lower[19:] == pytest.approx(windows.mean(axis=1) - 2 * windows.std(axis=1), rel=1e-9)
        assert np.isnan(upper[:19]).all()

    @pytest.mark.parametrize("w", [1, 2, 7, 20, 999, 1000])
    def test_rolling_max(self, w: int) -> None:
        """The O(n) rolling max equals the max of every window."""
        x = np.random.default_rng(4).normal(size=1000)
        expected = np.lib.stride_tricks.sliding_window_view(x, w).max(axis=1)
        assert rolling_max(x, w).tolist() == expected.tolist()

    def test_longer_period_than_data(self) -> None:
        """A period longer than the data gives no values and no trades, not an error."""
        bars = make_bars([100, 101, 102, 103])
        assert np.isnan(ema(bars.close, 10)).all() and np.isnan(rsi(bars.close, 10)).all()
        for family, params in [("sma_cross", {"fast": 5, "slow": 50}), ("donchian_breakout", {"period": 50})]:
            assert run_backtest(spec(family, **params), bars).metrics["trades"] == 0


class TestNoLookAhead:
    @pytest.mark.parametrize(("family", "params"), FAMILY_PARAMS, ids=[f for f, _ in FAMILY_PARAMS])
    @pytest.mark.parametrize("stops", [(0.0, 0.0), (15.0, 30.0)], ids=["no-stops", "stops"])
    def test_future_bars_change_no_finished_trade(
        self, family: str, params: dict[str, float], stops: tuple[float, float]
    ) -> None:
        """Replacing every bar from k on changes no trade that ended before k, in every family, stops or not."""
        rng = np.random.default_rng(5)
        a = random_bars(rng, 1500)
        other = random_bars(rng, 1500)
        k = 900
        cut = [
            np.concatenate((x[:k], y[k:]))
            for x, y in zip(
                (a.open, a.high, a.low, a.close), (other.open, other.high, other.low, other.close), strict=True
            )
        ]
        b = Bars(a.timestamps, *cut)
        strategy = spec(family, "EURUSD", sl=stops[0], tp=stops[1], **params)
        before_a = [t for t in trades(strategy, a) if t[1] < k]
        before_b = [t for t in trades(strategy, b) if t[1] < k]
        assert before_a == before_b and len(before_a) > 5

    @pytest.mark.parametrize(("family", "params"), FAMILY_PARAMS, ids=[f for f, _ in FAMILY_PARAMS])
    def test_metrics_are_always_json_safe(self, family: str, params: dict[str, float]) -> None:
        """Every metric is an int, a finite float or None, for every family on random data."""
        result = run_backtest(
            spec(family, "EURUSD", sl=20, tp=40, **params), random_bars(np.random.default_rng(6), 2000)
        )
        assert all(v is None or (isinstance(v, int | float) and math.isfinite(v)) for v in result.metrics.values())



class TestTies:
    def test_averages_equal_but_for_float_noise_are_a_tie(self) -> None:
        """A rounding-sized difference between the averages is no cross: the state holds (equal changes nothing)."""
        import numpy as np

        from swimmy.backtest.engine import _cross_state

        c = np.array([1.1, 1.1, 1.1, 1.1])
        slow = np.array([1.10002, 1.10002, 1.10002, 1.10002])
        fast = slow + np.array([3.77e-15, -2.28e-14, 0.0, 5e-6])  # the noise the benchmark found at true ties
        assert _cross_state(fast, slow, c).tolist() == [0, 0, 0, 1]


# --- the compiled loops ------------------------------------------------------------------------------------------


class TestCompiledLoops:
    @pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 16, 127, 128, 129, 136, 255, 256, 257, 1000, 65_537])
    def test_sums_are_numpys_to_the_bit(self, n: int) -> None:
        """The metrics' sums add in numpy's pairwise order: equal to np.sum's results bit for bit, any length."""
        rng = np.random.default_rng(n)
        r = rng.normal(3e-5, 1e-3, n)
        r[rng.random(n) < 0.3] = 0.0  # flat bars
        total, downside, drawdown, high, low = kernels.return_sums(r)
        assert (total, downside, high, low) == (np.sum(r), np.sum(np.minimum(r, 0.0) ** 2), r.max(), r.min())
        equity = np.cumprod(np.maximum(1.0 + r, 0.0))
        assert drawdown == np.max(1.0 - equity / np.maximum(np.maximum.accumulate(equity), 1.0))
        mean = float(r.mean())
        d = r - mean
        assert kernels.central_sums(r, mean) == (np.sum(d * d), np.sum(d * d * d), np.sum(d * d * (d * d)))

    def test_levels_round_as_python_does(self) -> None:
        """Stop/target levels are Python's round(x, 10) to the bit, also where np.round (scale, rint) differs."""
        rng = np.random.default_rng(7)
        # Entries that put the level within a hair of half a 1e-10 step, where np.round misses half the time.
        o = (rng.integers(10**10, 2 * 10**10, 5000) + 0.5) / 1e10 + 0.002
        at = np.arange(len(o), dtype=np.int64)
        side = np.where(rng.random(len(o)) < 0.5, 1, -1).astype(np.int64)
        want = [round(float(o[i]) + int(side[i]) * -0.002, 10) for i in at]
        assert np.count_nonzero(np.round(o + side * -0.002, 10) != want) > 100  # the case is a real one
        levels = np.empty(len(o))
        _levels(o, at, side, -0.002, levels)
        assert levels.tolist() == want

    def test_warm_up_runs_every_family(self) -> None:
        """warm_up (a worker's, before its first READY) runs every family with and without stops, without error."""
        warm_up()

    def test_the_daemon_never_loads_numba(self) -> None:
        """Importing the engine and the metrics (as the daemon does, for Bars and constants) does not import numba."""
        code = "import sys, swimmy.backtest.engine, swimmy.backtest.metrics; print('numba' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"


# --- parity with the numpy engine the compiled loops replaced (issue 13) ----------------------------------------
# The reference_* functions are engine.py and metrics.py as they were before (commit 8132ebb), verbatim but for
# names and comments: the compiled engine must make the same trades and per-bar returns, and the same metrics to
# 1e-12 relative (they agree to the bit). Only EMA and Wilder's averages moved, in the last bits (tested below).

_SIGNAL, _SL, _TP, _END = range(4)
_LEVEL_DECIMALS = 10
_MAX_LOG_GROWTH = 300.0
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SignalArray = npt.NDArray[np.int8]


def reference_simulate(
    spec: StrategySpec, bars: Bars, start_ts: int | None, end_ts: int | None, costs: Costs
) -> Simulation:
    """The old engine.simulate (after validation)."""
    s, e = _range(bars, start_ts, end_ts)
    ev, is_state = reference_family_signals(spec, bars.open[:e], bars.high[:e], bars.low[:e], bars.close[:e])
    at, side = reference_entry_signals(ev, s, is_state=is_state)
    o, h, lo, c = bars.open[s:e], bars.high[s:e], bars.low[s:e], bars.close[s:e]
    pip = costs.pip if costs.pip is not None and costs.pip > 0 else pip_size(spec.symbol)
    if spec.sl_pips > 0 or spec.tp_pips > 0:
        fills = reference_fills_with_stops(at, side, o, h, lo, c, spec.sl_pips * pip, spec.tp_pips * pip)
    else:
        fills = reference_fills_without_stops(at, side, o, c)
    cost = (costs.spread_pips + costs.slippage_pips) * pip
    entry_price = o[fills.entry]
    pnl = np.round((fills.side * (fills.exit_price - entry_price) - cost) / pip, PIPS_DECIMALS)
    returns = reference_bar_returns(o, c, fills, cost)
    return Simulation(s, returns, fills.entry, fills.exit, fills.side, entry_price, fills.exit_price, pnl, fills.reason)


def reference_prefix_sums(x: FloatArray) -> FloatArray:
    cs = np.empty(len(x) + 1)
    cs[0] = 0.0
    if len(x):
        np.cumsum(x - x[0], out=cs[1:])
    return cs


def reference_window_means(cs: FloatArray, base: float, n: int) -> FloatArray:
    out = np.full(len(cs) - 1, np.nan)
    if 0 < n < len(cs):
        out[n - 1 :] = (cs[n:] - cs[:-n]) / n + base
    return out


def reference_ema(x: FloatArray, n: int) -> FloatArray:
    out = np.full(len(x), np.nan)
    if 0 < n <= len(x):
        out[n - 1 :] = reference_ewm(float(x[:n].mean()), x[n:], 2.0 / (n + 1))
    return out


def reference_rsi(close: FloatArray, period: int) -> FloatArray:
    out = np.full(len(close), np.nan)
    if len(close) <= period:
        return out
    change = np.diff(close)
    gain = np.maximum(change, 0.0)
    loss = np.maximum(-change, 0.0)
    avg_gain = reference_ewm(float(gain[:period].mean()), gain[period:], 1.0 / period)
    avg_loss = reference_ewm(float(loss[:period].mean()), loss[period:], 1.0 / period)
    total = avg_gain + avg_loss
    values = np.full(len(total), 50.0)
    np.divide(100.0 * avg_gain, total, out=values, where=total > 0)
    out[period:] = values
    return out


def reference_bollinger(close: FloatArray, period: int, k: float) -> tuple[FloatArray, FloatArray]:
    upper = np.full(len(close), np.nan)
    lower = np.full(len(close), np.nan)
    if period <= len(close):
        base = float(close[0])
        dev = close - base
        cs1 = np.concatenate(([0.0], np.cumsum(dev)))
        cs2 = np.concatenate(([0.0], np.cumsum(dev * dev)))
        mean = (cs1[period:] - cs1[:-period]) / period
        sigma = np.sqrt(np.maximum((cs2[period:] - cs2[:-period]) / period - mean * mean, 0.0))
        upper[period - 1 :] = base + mean + k * sigma
        lower[period - 1 :] = base + mean - k * sigma
    return upper, lower


def reference_rolling_max(x: FloatArray, w: int) -> FloatArray:
    n = len(x)
    if w > n:
        return np.empty(0)
    blocks = -(-n // w)
    padded = np.concatenate((x, np.full(blocks * w - n, -np.inf))).reshape(blocks, w)
    prefix = np.maximum.accumulate(padded, axis=1).ravel()
    suffix = np.maximum.accumulate(padded[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.maximum(suffix[: n - w + 1], prefix[w - 1 : n])


def reference_ewm(seed: float, x: FloatArray, alpha: float) -> FloatArray:
    out = np.empty(len(x) + 1)
    out[0] = seed
    q = 1.0 - alpha
    if q <= 0.0:
        out[1:] = x
        return out
    if len(x) == 0:
        return out
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


def reference_family_signals(
    spec: StrategySpec, o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray
) -> tuple[SignalArray, bool]:
    p = spec.params
    with np.errstate(invalid="ignore"):
        if spec.family == "sma_cross":
            cs, base = reference_prefix_sums(c), float(c[0])
            fast = reference_window_means(cs, base, int(p["fast"]))
            slow = reference_window_means(cs, base, int(p["slow"]))
            return reference_cross_state(fast, slow, c), True
        if spec.family == "ema_cross":
            fast, slow = reference_ema(c, int(p["fast"])), reference_ema(c, int(p["slow"]))
            return reference_cross_state(fast, slow, c), True
        period = int(p["period"])
        if spec.family == "rsi_reversion":
            value = reference_rsi(c, period)
            prev = np.concatenate(([np.nan], value[:-1]))
            lower, upper = p["lower"], p["upper"]
            return reference_side((prev < lower) & (value >= lower), (prev > upper) & (value <= upper)), False
        if spec.family == "bollinger_breakout":
            upper_band, lower_band = reference_bollinger(c, period, p["k"])
            prev_c = np.concatenate(([np.nan], c[:-1]))
            prev_up = np.concatenate(([np.nan], upper_band[:-1]))
            prev_low = np.concatenate(([np.nan], lower_band[:-1]))
            long = (prev_c <= prev_up) & (c > upper_band)
            short = (prev_c >= prev_low) & (c < lower_band)
            return reference_side(long, short), False
        channel_high = np.full(len(c), np.inf)
        channel_low = np.full(len(c), -np.inf)
        if period < len(c):
            channel_high[period:] = reference_rolling_max(h[:-1], period)
            channel_low[period:] = -reference_rolling_max(-lo[:-1], period)
        return reference_side(c > channel_high, c < channel_low), False


def reference_cross_state(fast: FloatArray, slow: FloatArray, c: FloatArray) -> SignalArray:
    tol = TIE_TOLERANCE * np.abs(c)
    diff = fast - slow
    return reference_side(diff > tol, diff < -tol)


def reference_side(long: npt.NDArray[np.bool_], short: npt.NDArray[np.bool_]) -> SignalArray:
    return long.astype(np.int8) - short.astype(np.int8)


def reference_entry_signals(ev: SignalArray, s: int, *, is_state: bool) -> tuple[IntArray, IntArray]:
    if not is_state:
        first = max(s - 1, 0)
        closes = np.flatnonzero(ev[first:-1]) + first
        return closes + 1 - s, ev[closes].astype(np.int64)
    defined = np.flatnonzero(ev[:-1])
    values = ev[defined]
    changed = np.empty(len(values), dtype=bool)
    changed[:1] = True
    np.not_equal(values[1:], values[:-1], out=changed[1:])
    closes, values = defined[changed], values[changed]
    held = int(np.searchsorted(closes, s - 1, side="right")) - 1
    if held >= 0:
        closes = np.concatenate(([s - 1], closes[held + 1 :]))
        values = values[held:]
    return closes + 1 - s, values.astype(np.int64)


class ReferenceFills(NamedTuple):
    entry: IntArray
    exit: IntArray
    side: IntArray
    exit_price: FloatArray
    reason: IntArray


def reference_fills_without_stops(at: IntArray, side: IntArray, o: FloatArray, c: FloatArray) -> ReferenceFills:
    m = len(o)
    changes = np.empty(len(side), dtype=bool)
    changes[:1] = True
    np.not_equal(side[1:], side[:-1], out=changes[1:])
    entry, side = at[changes], side[changes]
    if len(entry) == 0:
        return ReferenceFills(entry, entry, side, np.empty(0), entry)
    exit_ = np.append(entry[1:], m - 1)
    exit_price = np.append(o[entry[1:]], c[m - 1])
    reason = np.full(len(entry), _SIGNAL, dtype=np.int64)
    reason[-1] = _END
    return ReferenceFills(entry, exit_, side, exit_price, reason)


def reference_fills_with_stops(
    at: IntArray,
    side: IntArray,
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    c: FloatArray,
    sl_dist: float,
    tp_dist: float,
) -> ReferenceFills:
    m = len(o)
    anys, sides = at.tolist(), side.tolist()
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
    n = 0
    while n < len(anys):
        j, d = anys[n], sides[n]
        entry = float(o[j])
        opposite_at, opposite_n = by_side[-d]
        p = bisect_right(opposite_at, j)
        k = opposite_at[p] if p < len(opposite_at) else m
        stop = round(entry - d * sl_dist, _LEVEL_DECIMALS) if sl_dist > 0 else None
        target = round(entry + d * tp_dist, _LEVEL_DECIMALS) if tp_dist > 0 else None
        hit = reference_first_touch(h[j:k], lo[j:k], d, stop, target)
        entries.append(j)
        trade_sides.append(d)
        if hit >= 0:
            b = j + hit
            bar_open = float(o[b])
            if stop is not None and (float(lo[b]) <= stop if d > 0 else float(h[b]) >= stop):
                level, reason = stop, _SL
            else:
                assert target is not None
                level, reason = target, _TP
            gapped = bar_open <= level if (d > 0) == (reason == _SL) else bar_open >= level
            exits.append(b)
            prices.append(bar_open if gapped else level)
            reasons.append(reason)
            n = bisect_right(anys, b)
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
    return ReferenceFills(
        np.array(entries, dtype=np.int64),
        np.array(exits, dtype=np.int64),
        np.array(trade_sides, dtype=np.int64),
        np.array(prices, dtype=np.float64),
        np.array(reasons, dtype=np.int64),
    )


def reference_first_touch(h: FloatArray, lo: FloatArray, side: int, stop: float | None, target: float | None) -> int:
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


def reference_bar_returns(o: FloatArray, c: FloatArray, f: ReferenceFills, cost: float) -> FloatArray:
    m = len(o)
    prev_close = np.empty(m)
    prev_close[0] = o[0]
    prev_close[1:] = c[:-1]
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
    end = np.where(carried, c[f.entry], f.exit_price)
    new = (f.side * (end - o[f.entry]) - cost) / o[f.entry]
    old = r[f.entry]
    r[f.entry] = old + new + old * new
    return r


def reference_metrics(returns: FloatArray, trade_pnls_pips: FloatArray, timeframe: str) -> dict[str, Any]:
    r = np.asarray(returns, dtype=np.float64)
    pnl = np.asarray(trade_pnls_pips, dtype=np.float64)
    wins = int(np.count_nonzero(pnl > 0))
    losses = int(np.count_nonzero(pnl < 0))
    out: dict[str, float | int | None] = dict.fromkeys(METRIC_KEYS)
    out.update(trades=len(pnl), wins=wins, losses=losses, pnl_pips=round(float(pnl.sum()), PIPS_DECIMALS))
    if len(pnl) == 0:
        return out
    gross_win = float(pnl[pnl > 0].sum())
    gross_loss = -float(pnl[pnl < 0].sum())
    out["win_rate"] = wins / len(pnl)
    out["profit_factor"] = gross_win / gross_loss if gross_loss > 0 else None
    out.update(reference_return_metrics(r, BARS_PER_YEAR[timeframe]))
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}


def reference_return_metrics(r: FloatArray, bars_per_year: int) -> dict[str, float | None]:
    n = len(r)
    out: dict[str, float | None] = {"sharpe": None, "sortino": None, "max_drawdown": None, "psr": None,
                                    "skew": None, "kurtosis": None, "sharpe_per_bar": None}
    if n == 0:
        return out
    with np.errstate(all="ignore"):
        equity = np.cumprod(np.maximum(1.0 + r, 0.0))
        peak = np.maximum(np.maximum.accumulate(equity), 1.0)
        out["max_drawdown"] = min(1.0, max(0.0, float(np.max(1.0 - equity / peak))))
        mean = float(r.mean())
        downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
        if downside > 0:
            out["sortino"] = mean / downside * math.sqrt(bars_per_year)
        if n < 2 or float(r.max()) == float(r.min()):
            return out
        std = float(r.std(ddof=1))
        if not std > 0:
            return out
        per_bar_sharpe = mean / std
        out["sharpe"] = per_bar_sharpe * math.sqrt(bars_per_year)
        dev = r - mean
        dev2 = dev * dev
        m2 = float(dev2.mean())
        skew = float((dev2 * dev).mean()) / m2**1.5
        kurtosis = float((dev2 * dev2).mean()) / m2**2
        out.update(skew=skew, kurtosis=kurtosis, sharpe_per_bar=per_bar_sharpe)
        try:
            out["psr"] = probabilistic_sharpe_ratio(per_bar_sharpe, n, skew, kurtosis)
        except ValueError:
            out["psr"] = None
    return out


def reference_sketch(returns: FloatArray, blocks: int = SKETCH_BLOCKS) -> dict[str, list[float]]:
    r = np.asarray(returns, dtype=np.float64)
    edges = np.linspace(0, len(r), blocks + 1).astype(np.int64)
    csum = np.concatenate(([0.0], np.cumsum(r)))
    csq = np.concatenate(([0.0], np.cumsum(r * r)))
    return {"sums": [float(x) for x in np.diff(csum[edges])], "sumsqs": [float(x) for x in np.diff(csq[edges])],
            "counts": [int(x) for x in np.diff(edges)]}


PARITY_PARAMS: list[tuple[str, dict[str, float]]] = [
    *FAMILY_PARAMS,
    ("sma_cross", {"fast": 1, "slow": 2}),  # on 5-decimal quotes: exact ties
    ("ema_cross", {"fast": 1, "slow": 3}),
    ("rsi_reversion", {"period": 2, "lower": 20, "upper": 80}),
    ("bollinger_breakout", {"period": 3, "k": 1}),
    ("donchian_breakout", {"period": 2}),
]
PARITY_STOPS = [(0.0, 0.0), (20.0, 40.0), (15.0, 0.0), (0.0, 25.0), (3.0, 3.0)]


def gapped_bars(seed: int) -> tuple[Bars, str]:
    """3,000 random-walk bars with price gaps (3% of opens jump) and time gaps; seed 1 is USDJPY, seed 2 quoted to
    5 decimals (ties between averages), the others EURUSD at full precision."""
    rng = np.random.default_rng(seed)
    n = 3000
    scale, symbol = (100.0, "USDJPY") if seed == 1 else (1.0, "EURUSD")
    c = 1.1 * scale * np.exp(np.cumsum(rng.normal(0, 8e-4, n)))
    o = np.concatenate(([c[0]], c[:-1])) * np.where(rng.random(n) < 0.03, np.exp(rng.normal(0, 4e-3, n)), 1.0)
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 4e-4, n)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 4e-4, n)))
    if seed == 2:
        o, h, lo, c = (np.round(a, 5) for a in (o, h, lo, c))
    ts = T0 + np.cumsum(np.where(rng.random(n) < 0.02, 48 * STEP, STEP)).astype(np.int64)
    return Bars(ts, o, np.maximum(h, np.maximum(o, c)), np.minimum(lo, np.minimum(o, c)), c, "gapped"), symbol


def assert_same_metrics(new: dict[str, Any], old: dict[str, Any]) -> None:
    """The same keys; counts and nulls equal, floats within 1e-12 relative."""
    assert list(new) == list(old)
    for key, value in old.items():
        if value is None or isinstance(value, int):
            assert new[key] == value, key
        else:
            assert new[key] == pytest.approx(value, rel=1e-12, abs=0), key


class TestParityWithTheNumpyEngine:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    @pytest.mark.parametrize("stops", PARITY_STOPS, ids=[f"sl{sl:g}-tp{tp:g}" for sl, tp in PARITY_STOPS])
    @pytest.mark.parametrize(("family", "params"), PARITY_PARAMS, ids=[f"{f}-{'-'.join(map(str, p.values()))}"
                                                                       for f, p in PARITY_PARAMS])
    def test_same_trades_returns_and_metrics(
        self, family: str, params: dict[str, float], stops: tuple[float, float], seed: int
    ) -> None:
        """Each family, stops or not, any range: the old engine's trades and returns exactly, its metrics to 1e-12."""
        bars, symbol = gapped_bars(seed)
        strategy = StrategySpec(family, params, symbol, "H1", *stops)
        costs = Costs(0.8, 0.2)
        for start, end in ((None, None), (int(bars.timestamps[500]), int(bars.timestamps[2500]))):
            new = simulate(strategy, bars, start_ts=start, end_ts=end, costs=costs)
            old = reference_simulate(strategy, bars, start, end, costs)
            assert new.first_bar == old.first_bar
            for name in ("entry", "exit", "side", "entry_price", "exit_price", "pnl_pips", "reason", "returns"):
                np.testing.assert_array_equal(getattr(new, name), getattr(old, name), err_msg=name)
            assert len(old.entry) > 3
            new_metrics = run_backtest(strategy, bars, start_ts=start, end_ts=end, costs=costs).metrics
            assert new_metrics == compute_metrics(new.returns, new.pnl_pips, "H1")
            assert_same_metrics(new_metrics, reference_metrics(old.returns, old.pnl_pips, "H1"))
            sketch, reference = returns_sketch(new.returns), reference_sketch(old.returns)
            assert sketch["counts"] == reference["counts"]
            assert sketch["sums"] == pytest.approx(reference["sums"], rel=1e-12, abs=0)
            assert sketch["sumsqs"] == pytest.approx(reference["sumsqs"], rel=1e-12, abs=0)

    @pytest.mark.parametrize("n", [1, 2, 10, 30, 200])
    def test_indicators(self, n: int) -> None:
        """SMA, Bollinger and rolling max are the old ones to the bit; EMA and RSI (now recursive) to the last bits."""
        bars, _ = gapped_bars(3)
        c = bars.close
        assert np.array_equal(sma(c, n), reference_window_means(reference_prefix_sums(c), float(c[0]), n),
                              equal_nan=True)
        assert np.array_equal(rolling_max(c, n), reference_rolling_max(c, n))
        for got, want in zip(bollinger(c, n, 2.0), reference_bollinger(c, n, 2.0), strict=True):
            assert np.array_equal(got, want, equal_nan=True)
        assert ema(c, n) == pytest.approx(reference_ema(c, n), rel=1e-12, nan_ok=True)
        if n >= 2:
            assert rsi(c, n) == pytest.approx(reference_rsi(c, n), rel=0, abs=1e-10, nan_ok=True)
