"""Walk-forward validation's numbers (SPEC §6): fold tiling, the neighbourhood grid, folds, the verdict, the wire."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from swimmy.backtest.engine import Bars, Costs, run_backtest, simulate
from swimmy.backtest.strategies import BARS_PER_YEAR, CROSS_FAMILIES, FAMILIES, StrategySpec, validate
from swimmy.backtest.walkforward import (
    MAX_GRID_POINTS,
    MAX_WIRE_GRID,
    Fold,
    FoldRange,
    FoldResult,
    best_index,
    decide,
    fold_ranges,
    fold_request_fields,
    fold_result_fields,
    fold_windows,
    neighbourhood,
    parse_fold_request,
    parse_fold_result,
    run_fold,
    stitch,
    summarize,
    summary_fields,
)
from swimmy.school.breeding import PARAM_SPACE

T0 = 1_700_000_000
STEP = 3600
H1 = BARS_PER_YEAR["H1"]


def walk(n: int, seed: int, drift: float = 0.0, vol: float = 0.002) -> Bars:
    """A geometric random walk (EURUSD-like, hourly), optionally with a planted drift per bar."""
    rng = np.random.default_rng(seed)
    c = 1.1 * np.exp(np.cumsum(rng.normal(drift, vol, n)))
    o = np.concatenate((c[:1], c[:-1]))
    spread = np.abs(rng.normal(0, vol / 2, n)) * c
    h = np.maximum(o, c) + spread
    lo = np.minimum(o, c) - spread
    return Bars(T0 + STEP * np.arange(n, dtype=np.int64), o, h, lo, c, "walk.csv")


def with_closes(bars: Bars, c: np.ndarray) -> Bars:
    """`bars` with new closes (open = previous close, high/low around them)."""
    o = np.concatenate((c[:1], c[:-1]))
    return Bars(bars.timestamps, o, np.maximum(o, c) * 1.0005, np.minimum(o, c) * 0.9995, c, bars.source)


def cross(fast: int, slow: int) -> StrategySpec:
    return StrategySpec("sma_cross", {"fast": fast, "slow": slow}, "EURUSD", "H1")


def rng_of(fold: Fold) -> tuple[tuple[int, int], tuple[int, int]]:
    return (fold.train_start, fold.train_end), (fold.test_start, fold.test_end)


# --- the tiling -------------------------------------------------------------------------------------------------------

# Hand-computed: W = floor(B r / (1 - r + K r)), L = floor((1 - r) / r x W), fold k tests [B - (K-k) W, B - (K-k-1) W).
TILINGS = [
    # B=1000, K=5, r=0.2: W = floor(200 / 1.8) = floor(111.1) = 111; L = 4 x 111 = 444; tests from 1000 - 555 = 445.
    (1000, 5, 0.2, [(445, 556), (556, 667), (667, 778), (778, 889), (889, 1000)], 444),
    # B=900, K=5, r=0.2: W = 180 / 1.8 = 100 exactly (a float computation gives 99.99999999999999); L = 400.
    (900, 5, 0.2, [(400, 500), (500, 600), (600, 700), (700, 800), (800, 900)], 400),
    # B=500, K=3, r=0.25: W = floor(125 / 1.5) = 83; L = 3 x 83 = 249; tests from 500 - 249 = 251.
    (500, 3, 0.25, [(251, 334), (334, 417), (417, 500)], 249),
    # B=1000, K=4, r=0.3: W = floor(300 / 1.9) = floor(157.89) = 157; L = floor(7/3 x 157) = floor(366.33) = 366.
    (1000, 4, 0.3, [(372, 529), (529, 686), (686, 843), (843, 1000)], 366),
    # B=100, K=1, r=0.5: W = floor(50 / 1) = 50; L = 50.
    (100, 1, 0.5, [(50, 100)], 50),
]


class TestFoldWindows:
    @pytest.mark.parametrize(("n", "k", "r", "tests", "train"), TILINGS)
    def test_rolling_table(self, n: int, k: int, r: float, tests: list[tuple[int, int]], train: int) -> None:
        """Rolling: each fold trains on the L bars right before its test window."""
        folds = fold_windows(n, k, r, "rolling")
        assert [rng_of(f) for f in folds] == [((s - train, s), (s, e)) for s, e in tests]
        assert [f.index for f in folds] == list(range(k))

    @pytest.mark.parametrize(("n", "k", "r", "tests", "train"), TILINGS)
    def test_anchored_table(self, n: int, k: int, r: float, tests: list[tuple[int, int]], train: int) -> None:
        """Anchored: each fold trains on every bar before its test window."""
        folds = fold_windows(n, k, r, "anchored")
        assert [rng_of(f) for f in folds] == [((0, s), (s, e)) for s, e in tests]

    def test_first_table_spelled_out(self) -> None:
        """B=1000, K=5, r=0.2 rolling, every number written out."""
        assert fold_windows(1000, 5, 0.2, "rolling") == [
            Fold(0, 1, 445, 445, 556),
            Fold(1, 112, 556, 556, 667),
            Fold(2, 223, 667, 667, 778),
            Fold(3, 334, 778, 778, 889),
            Fold(4, 445, 889, 889, 1000),
        ]

    @pytest.mark.parametrize("mode", ["rolling", "anchored"])
    @pytest.mark.parametrize(
        ("n", "k", "r"), list(itertools.product([60, 97, 1000, 4321, 20_000], [1, 2, 5, 8], [0.1, 0.2, 0.25, 0.5]))
    )
    def test_invariants(self, n: int, k: int, r: float, mode: Any) -> None:
        """Tests are contiguous, equally wide, never overlap and end at B; trains end where their test starts."""
        try:
            folds = fold_windows(n, k, r, mode)
        except ValueError:
            assert math.floor(n * r / (1 - r + k * r) + 1e-9) < 2
            return
        w = folds[0].test_end - folds[0].test_start
        assert w == math.floor(round(n * r / (1 - r + k * r), 9))
        assert len(folds) == k
        assert folds[-1].test_end == n
        for a, b in itertools.pairwise(folds):
            assert a.test_end == b.test_start
        for f in folds:
            assert f.test_end - f.test_start == w
            assert f.train_end == f.test_start
            assert 0 <= f.train_start < f.train_end
            expected_train = math.floor(round((1 - r) / r * w, 9)) if mode == "rolling" else f.test_start
            assert f.train_end - f.train_start == expected_train

    @pytest.mark.parametrize(
        ("args", "match"),
        [
            ((10, 5, 0.2, "rolling"), "test windows of 1 bar"),  # W = floor(2 / 1.8) = 1
            ((100, 1, 0.99, "rolling"), "leaves 1 train bar"),  # W = 99, L = floor(1/99 x 99) = 1
            ((1000, 0, 0.2, "rolling"), "folds"),
            ((1000, 5, 0.0, "rolling"), "split_ratio"),
            ((1000, 5, 1.0, "anchored"), "split_ratio"),
            ((1000, 5, 0.2, "expanding"), "mode"),
            ((-1, 5, 0.2, "rolling"), "n_bars"),
        ],
    )
    def test_refused(self, args: tuple[Any, ...], match: str) -> None:
        """Too few bars for K folds, an empty train window or a bad argument: a clear ValueError."""
        with pytest.raises(ValueError, match=match):
            fold_windows(*args)

    def test_ranges_in_unix_seconds(self) -> None:
        """A window is [first bar's ts, next bar's ts); the one ending with the range ends at the last ts + 1."""
        ts = np.array([100, 200, 300, 400, 500, 700, 800, 900], dtype=np.int64)  # a gap between 500 and 700
        folds = [Fold(0, 0, 4, 4, 6), Fold(1, 2, 6, 6, 8)]
        assert fold_ranges(folds, ts) == [FoldRange(0, 100, 500, 500, 800), FoldRange(1, 300, 800, 800, 901)]
        with pytest.raises(ValueError, match="does not fit"):
            fold_ranges([Fold(0, 0, 4, 4, 9)], ts)


# --- the neighbourhood ------------------------------------------------------------------------------------------------

CURRENT = [
    ("sma_cross", {"fast": 10, "slow": 40}),
    ("ema_cross", {"fast": 40, "slow": 45}),  # fast x 1.25 = 50 > slow x 0.75 = 34: some combinations drop out
    ("sma_cross", {"fast": 3, "slow": 10}),  # both at the range's low end
    ("rsi_reversion", {"period": 14, "lower": 30, "upper": 70}),
    ("rsi_reversion", {"period": 30, "lower": 40, "upper": 60}),  # at the range's ends
    ("bollinger_breakout", {"period": 20, "k": 2.0}),
    ("bollinger_breakout", {"period": 48, "k": 3.0}),
    ("donchian_breakout", {"period": 20}),
    ("donchian_breakout", {"period": 100}),
]


class TestNeighbourhood:
    @pytest.mark.parametrize(("family", "params"), CURRENT)
    def test_properties(self, family: str, params: dict[str, float]) -> None:
        """Current params first; the rest distinct, inside PARAM_SPACE, valid rules; at most 27 points."""
        grid = neighbourhood(family, params)
        assert grid[0] == params
        assert 1 <= len(grid) <= MAX_GRID_POINTS
        keys = [tuple(sorted(p.items())) for p in grid]
        assert len(set(keys)) == len(keys)
        space = PARAM_SPACE[family]
        for point in grid:
            assert sorted(point) == sorted(FAMILIES[family])
            validate(StrategySpec(family, point, "EURUSD", "H1"))  # fast < slow, lower < upper, whole periods
            for name, value in point.items():
                assert space[name].low <= value <= space[name].high
                if space[name].kind == "int":
                    assert type(value) is int
            if family in CROSS_FAMILIES:
                assert point["fast"] < point["slow"]
            if family == "rsi_reversion":
                assert point["lower"] < point["upper"]

    def test_sma_cross_spelled_out(self) -> None:
        """fast 10 -> {8 (7.5 rounded half up), 10, 13 (12.5)}; slow 40 -> {30, 40, 50}: all 9 combinations."""
        grid = neighbourhood("sma_cross", {"fast": 10, "slow": 40})
        assert grid[0] == {"fast": 10, "slow": 40}
        assert sorted((p["fast"], p["slow"]) for p in grid) == sorted(itertools.product([8, 10, 13], [30, 40, 50]))

    def test_clamped_and_constrained(self) -> None:
        """ema_cross 40/45: fast {30, 40, 50 (the high end)}, slow {34, 45, 56}; fast < slow keeps 6 of 9."""
        grid = neighbourhood("ema_cross", {"fast": 40, "slow": 45})
        assert sorted((p["fast"], p["slow"]) for p in grid) == [
            (30, 34),
            (30, 45),
            (30, 56),
            (40, 45),
            (40, 56),
            (50, 56),
        ]

    def test_other_families_spelled_out(self) -> None:
        """k moves by 0.25 (clamped at 3.0), RSI levels by 5, periods by x0.75 / x1.25 (clamped)."""
        boll = neighbourhood("bollinger_breakout", {"period": 48, "k": 3.0})
        assert sorted((p["period"], p["k"]) for p in boll) == sorted(itertools.product([36, 48, 50], [2.75, 3.0]))
        assert [p["period"] for p in neighbourhood("donchian_breakout", {"period": 20})] == [20, 15, 25]
        rsi = neighbourhood("rsi_reversion", {"period": 14, "lower": 30, "upper": 70})
        assert len(rsi) == 27
        assert sorted({p["period"] for p in rsi}) == [11, 14, 18]  # 10.5 -> 11, 17.5 -> 18
        assert sorted({p["lower"] for p in rsi}) == [25, 30, 35]
        assert sorted({p["upper"] for p in rsi}) == [65, 70, 75]

    def test_current_outside_the_space_is_kept(self) -> None:
        """A hand-written strategy's params stay the first point as given; its neighbours are clamped."""
        grid = neighbourhood("donchian_breakout", {"period": 300})
        assert grid == [{"period": 300}, {"period": 100}]

    @pytest.mark.parametrize(
        ("family", "params"),
        [("macd", {"fast": 1}), ("sma_cross", {"fast": 10}), ("donchian_breakout", {"period": 10, "k": 2.0})],
    )
    def test_refused(self, family: str, params: dict[str, float]) -> None:
        with pytest.raises(ValueError, match="neighbourhood"):
            neighbourhood(family, params)


# --- one fold ---------------------------------------------------------------------------------------------------------


class TestBestIndex:
    @pytest.mark.parametrize(
        ("sharpes", "current", "expected"),
        [
            ([0.5, 1.2, 0.9], 0, 1),  # the best wins over the current
            ([None, -0.3, None], 0, 1),  # None loses, even to a negative Sharpe
            ([1.0, 2.0, 2.0], 2, 2),  # a tie goes to the current params
            ([1.0, 2.0, 2.0], 1, 1),
            ([1.0, 2.0, 2.0], 0, 1),  # a tie without the current: the first
            ([2.0, 2.0], None, 0),
            ([None, None, None], 2, 2),  # nothing has a Sharpe: the current params
            ([None, None], None, 0),
        ],
    )
    def test_table(self, sharpes: list[float | None], current: int | None, expected: int) -> None:
        assert best_index(sharpes, current) == expected

    def test_empty(self) -> None:
        with pytest.raises(ValueError, match="no candidates"):
            best_index([])


BARS = walk(1500, seed=7)
SPEC = cross(10, 40)
FOLD = fold_ranges([Fold(0, 200, 1000, 1000, 1400)], BARS.timestamps)[0]
COSTS = Costs(spread_pips=0.5, slippage_pips=0.2)


def train_sharpes(spec: StrategySpec, bars: Bars, fold: FoldRange, grid: list[dict[str, float]]) -> list[Any]:
    """Every grid point's Sharpe on the train window, by the engine's own run_backtest."""
    return [
        run_backtest(
            replace(spec, params=p), bars, start_ts=fold.train_start_ts, end_ts=fold.train_end_ts, costs=COSTS
        ).metrics["sharpe"]
        for p in grid
    ]


class TestRunFold:
    def test_chooses_the_train_best_and_tests_it(self) -> None:
        """The chosen params have the best train Sharpe of the grid; the test figures are that choice's backtest."""
        grid = neighbourhood("sma_cross", dict(SPEC.params))
        result = run_fold(SPEC, BARS, FOLD, grid, COSTS)
        assert result.status == "ok", result.error
        sharpes = train_sharpes(SPEC, BARS, FOLD, grid)
        best = max(s for s in sharpes if s is not None)
        assert result.train_sharpe == best
        assert result.params == grid[sharpes.index(best)]
        assert result.params != dict(SPEC.params)  # this seed's train-best is a neighbour, not the current params
        assert result.candidates == len(grid)
        chosen = replace(SPEC, params=result.params)
        test = run_backtest(chosen, BARS, start_ts=FOLD.test_start_ts, end_ts=FOLD.test_end_ts, costs=COSTS)
        assert result.test_sharpe == test.metrics["sharpe"]
        assert result.test_metrics == test.metrics
        assert result.test_trades == test.metrics["trades"]
        assert result.test_pnl_pips == test.metrics["pnl_pips"]
        sim = simulate(chosen, BARS, start_ts=FOLD.test_start_ts, end_ts=FOLD.test_end_ts, costs=COSTS)
        np.testing.assert_array_equal(result.test_returns, sim.returns)
        assert len(result.test_returns) == 400

    def test_a_planted_winner(self) -> None:
        """Closes that rise for 60 bars and fall for 60: a cross of slow 40 fits, 70 lags; the fold picks 40."""
        n = 1200
        phase = np.arange(n) % 120
        c = 1.1 + 0.0005 * np.where(phase < 60, phase, 120 - phase)
        bars = with_closes(BARS, np.concatenate((c, BARS.close[n:])))
        spec = cross(5, 70)
        grid: list[dict[str, float]] = [dict(spec.params), {"fast": 5, "slow": 40}]
        fold = fold_ranges([Fold(0, 100, 900, 900, 1200)], bars.timestamps)[0]
        result = run_fold(spec, bars, fold, grid)
        sharpes = train_sharpes(spec, bars, fold, grid)
        assert sharpes[1] > sharpes[0]
        assert result.params == {"fast": 5, "slow": 40}

    def test_ties_go_to_the_current_params(self) -> None:
        """Flat prices: no cross trades, no Sharpe anywhere; the current params are chosen wherever they are."""
        flat = with_closes(BARS, np.full(len(BARS), 1.1))
        grid: list[dict[str, float]] = [{"fast": 5, "slow": 20}, {"fast": 8, "slow": 30}, dict(SPEC.params)]
        result = run_fold(SPEC, flat, FOLD, grid)
        assert result.status == "ok"
        assert result.params == dict(SPEC.params)
        assert (result.train_sharpe, result.test_sharpe, result.test_trades) == (None, None, 0)
        assert not result.test_returns.any()

    def test_bars_after_the_test_window_change_nothing(self) -> None:
        """No look-ahead: rewriting every bar from the test window's end on leaves the fold's result as it was."""
        grid = neighbourhood("sma_cross", dict(SPEC.params))
        base = run_fold(SPEC, BARS, FOLD, grid, COSTS)
        rng = np.random.default_rng(99)
        c = BARS.close.copy()
        c[1400:] *= np.exp(np.cumsum(rng.normal(0.01, 0.01, len(c) - 1400)))
        changed = run_fold(SPEC, with_closes(BARS, c), FOLD, grid, COSTS)
        assert changed.params == base.params
        assert changed.train_sharpe == base.train_sharpe
        assert changed.test_sharpe == base.test_sharpe
        np.testing.assert_array_equal(changed.test_returns, base.test_returns)

    def test_bars_inside_the_test_window_do_not_change_the_choice(self) -> None:
        """The choice sees only the train window: a rewritten test window changes its result, not the choice."""
        grid = neighbourhood("sma_cross", dict(SPEC.params))
        base = run_fold(SPEC, BARS, FOLD, grid, COSTS)
        c = BARS.close.copy()
        c[1000:1400] = c[999] * np.exp(np.cumsum(np.full(400, -0.003)))  # a steady fall through the test window
        changed = run_fold(SPEC, with_closes(BARS, c), FOLD, grid, COSTS)
        assert changed.params == base.params
        assert changed.train_sharpe == base.train_sharpe
        assert not np.array_equal(changed.test_returns, base.test_returns)

    def test_progress_beats(self) -> None:
        """One beat per backtest, rising to 1."""
        beats: list[float] = []
        run_fold(SPEC, BARS, FOLD, [dict(SPEC.params), {"fast": 5, "slow": 20}], progress=beats.append)
        assert beats == pytest.approx([1 / 3, 2 / 3, 1.0])

    @pytest.mark.parametrize(
        ("grid", "fold", "match"),
        [
            ([], FOLD, "empty parameter grid"),
            ([{"fast": 40, "slow": 10}], FOLD, "fast"),  # not a valid rule set
            ([dict(SPEC.params)], replace(FOLD, train_start_ts=T0 - 10 * STEP, train_end_ts=T0 - STEP), "train"),
            ([dict(SPEC.params)], replace(FOLD, test_start_ts=T0 + 10**8, test_end_ts=T0 + 2 * 10**8), "test window"),
        ],
    )
    def test_errors(self, grid: list[dict[str, float]], fold: FoldRange, match: str) -> None:
        """What the engine can't serve is an error result naming the fold, never an exception."""
        result = run_fold(SPEC, BARS, fold, grid)
        assert result.status == "error"
        assert result.error is not None
        assert match in result.error
        assert f"fold {fold.index}" in result.error


# --- the verdict ------------------------------------------------------------------------------------------------------


def fold_result(i: int, returns: np.ndarray, train_sharpe: float | None, status: str = "ok") -> FoldResult:
    n = len(returns)
    start = T0 + i * n * STEP
    rng = FoldRange(i, start - 4 * n * STEP, start, start, start + n * STEP)
    return FoldResult(
        rng,
        status,
        params={"period": 20},
        train_sharpe=train_sharpe,
        test_returns=returns,
        error=None if status == "ok" else f"fold {i}: broken",
    )


class TestDecide:
    # (wf_sharpe, wf_psr, wfe, profitable_folds, required_oos, expected)
    TABLE = [
        (1.0, 0.96, 0.6, 0.6, 0.5, "validated"),
        (1.0, 0.95, 0.5, 0.6, 0.5, "validated"),  # every threshold is inclusive ...
        (0.5, 0.99, 0.9, 1.0, 0.5, "weak"),  # ... but wf_sharpe must exceed required_oos
        (1.0, 0.94, 0.9, 1.0, 0.5, "weak"),  # PSR short
        (1.0, 0.99, 0.49, 1.0, 0.5, "weak"),  # wfe short (still >= 0.2)
        (1.0, 0.99, 0.9, 0.4, 0.5, "weak"),  # too few profitable folds
        (1.0, 0.99, 0.19, 1.0, 0.5, "overfit"),  # wfe < 0.2
        (1.0, 0.99, None, 1.0, 0.5, "overfit"),  # wfe undefined (train Sharpes' mean <= 0)
        (0.0, 0.5, 0.9, 0.6, -1.0, "overfit"),  # wf_sharpe <= 0
        (-0.4, 0.2, 0.9, 0.2, 0.0, "overfit"),
        (None, None, None, 0.0, 0.0, "overfit"),  # no trade in any test window
        (1.0, None, 0.9, 1.0, 0.5, "weak"),  # PSR undefined: not validated
    ]

    @pytest.mark.parametrize(("wf_sharpe", "wf_psr", "wfe", "profitable", "required", "expected"), TABLE)
    def test_table(
        self,
        wf_sharpe: float | None,
        wf_psr: float | None,
        wfe: float | None,
        profitable: float,
        required: float,
        expected: str,
    ) -> None:
        assert decide(wf_sharpe, wf_psr, wfe, profitable, required_oos=required) == expected

    def test_thresholds_are_arguments(self) -> None:
        assert (
            decide(1.0, 0.91, 0.3, 0.5, required_oos=0.2, min_psr=0.9, min_wfe=0.3, min_profitable_folds=0.5)
            == "validated"
        )
        assert decide(1.0, 0.99, 0.9, 1.0, required_oos=0.0, failed=True) == "error"


class TestSummarize:
    def returns(self, seed: int, n: int = 300, mean: float = 0.0004) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.standard_t(4, n) * 0.002 + mean

    def test_against_an_independent_computation(self) -> None:
        """wf_sharpe, wf_psr (scipy's skew and non-excess kurtosis, Φ), wfe, profitable_folds, degradation."""
        stats = pytest.importorskip("scipy.stats")  # not a declared test dependency: only this test needs it
        parts = [self.returns(s) for s in range(5)]
        parts[3] = -np.abs(parts[3])  # one losing fold
        train = [2.0, 1.5, None, 3.0, 2.5]
        folds = [fold_result(i, r, t) for i, (r, t) in enumerate(zip(parts, train, strict=True))]
        s = summarize(folds[::-1], periods_per_year=H1, required_oos=0.5)  # order given doesn't matter
        r = np.concatenate(parts)
        sr = r.mean() / r.std(ddof=1)
        skew = stats.skew(r)
        kurt = stats.kurtosis(r, fisher=False)
        psr = stats.norm.cdf(sr * math.sqrt(len(r) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
        assert s.bars == 1500
        assert s.wf_sharpe == pytest.approx(sr * math.sqrt(H1), rel=1e-12)
        assert s.oos_sharpe == s.wf_sharpe
        assert s.skew == pytest.approx(skew, rel=1e-9)
        assert s.kurtosis == pytest.approx(kurt, rel=1e-9)
        assert s.wf_psr == pytest.approx(psr, abs=1e-12)
        assert s.is_sharpe == pytest.approx(9.0 / 4)  # the mean over the folds that have a train Sharpe
        assert s.wfe == pytest.approx(sr * math.sqrt(H1) / 2.25, rel=1e-12)
        assert s.profitable_folds == pytest.approx(sum(p.sum() > 0 for p in parts) / 5)
        assert s.profitable_folds is not None and s.profitable_folds <= 0.8
        assert s.wf_sharpe is not None
        assert s.degradation == pytest.approx((2.25 - s.wf_sharpe) / 2.25)
        assert s.decision == decide(s.wf_sharpe, s.wf_psr, s.wfe, s.profitable_folds, required_oos=0.5)
        np.testing.assert_array_equal(stitch(folds[::-1]), r)

    def test_validated_and_overfit(self) -> None:
        """A steady edge kept out of sample is validated; the same record after negative train Sharpes is overfit."""
        parts = [self.returns(s, mean=0.002) for s in range(5)]
        good = summarize([fold_result(i, r, 20.0) for i, r in enumerate(parts)], periods_per_year=H1, required_oos=0.5)
        assert good.wf_psr is not None and good.wf_psr > 0.99
        assert good.profitable_folds == 1.0
        assert good.decision == "validated"
        bad = summarize([fold_result(i, r, -1.0) for i, r in enumerate(parts)], periods_per_year=H1)
        assert (bad.wfe, bad.decision) == (None, "overfit")
        inflated = summarize([fold_result(i, r, 1e4) for i, r in enumerate(parts)], periods_per_year=H1)
        assert inflated.wfe is not None and inflated.wfe < 0.2
        assert inflated.decision == "overfit"

    def test_no_trades_anywhere(self) -> None:
        """All-zero test returns: no Sharpe, no PSR, no wfe, nothing profitable: overfit."""
        s = summarize([fold_result(i, np.zeros(50), 1.0) for i in range(3)], periods_per_year=H1)
        assert (s.wf_sharpe, s.wf_psr, s.wfe, s.profitable_folds, s.decision) == (None, None, None, 0.0, "overfit")

    def test_errors(self) -> None:
        """A failed fold, no fold or overlapping test windows: error, figures undefined."""
        ok = [fold_result(i, self.returns(i), 1.0) for i in range(3)]
        failed = summarize([*ok[:2], fold_result(2, np.zeros(0), None, status="error")], periods_per_year=H1)
        assert (failed.decision, failed.wf_sharpe, failed.error) == ("error", None, "fold 2: broken")
        assert summarize([], periods_per_year=H1).decision == "error"
        overlap = summarize(
            [ok[0], replace(ok[1], fold=replace(ok[1].fold, test_start_ts=ok[0].fold.test_end_ts - 1))],
            periods_per_year=H1,
        )
        assert overlap.decision == "error"
        assert overlap.error is not None and "overlap" in overlap.error

    def test_summary_fields_are_json(self) -> None:
        folds = [fold_result(i, self.returns(i), 1.0) for i in range(3)]
        out = summary_fields(summarize(folds, periods_per_year=H1), folds)
        json.dumps(out, allow_nan=False)
        assert [f["index"] for f in out["folds"]] == [0, 1, 2]
        assert set(out["folds"][0]) >= {
            "train_start_ts",
            "train_end_ts",
            "test_start_ts",
            "test_end_ts",
            "params",
            "is_sharpe",
            "oos_sharpe",
        }


class TestEndToEnd:
    def test_fold_windows_to_summary(self) -> None:
        """Tile the IS bars, run every fold, stitch: the record is the test windows' bars, in order."""
        bars = walk(3000, seed=11, drift=0.0003)
        folds = fold_windows(len(bars), 5, 0.2, "rolling")
        ranges = fold_ranges(folds, bars.timestamps)
        results = [run_fold(SPEC, bars, f, neighbourhood("sma_cross", dict(SPEC.params)), COSTS) for f in ranges]
        assert all(r.status == "ok" for r in results)
        s = summarize(results, periods_per_year=H1)
        assert s.bars == 5 * (folds[0].test_end - folds[0].test_start) == sum(len(r.test_returns) for r in results)
        assert s.decision in ("validated", "weak", "overfit")
        assert s.wf_sharpe is not None and s.wf_sharpe > 0  # the planted drift shows through


# --- the wire ---------------------------------------------------------------------------------------------------------


def roundtrip(obj: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(obj, allow_nan=False))


class TestWire:
    def test_request_roundtrip(self) -> None:
        grid = neighbourhood("bollinger_breakout", {"period": 20, "k": 2.0})
        fields = roundtrip(fold_request_fields(FOLD, grid))
        assert set(fields) == {"fold", "grid"}
        assert set(fields["fold"]) == {"index", "train_start_ts", "train_end_ts", "test_start_ts", "test_end_ts"}
        assert parse_fold_request({"purpose": "wfv_fold", **fields}) == (FOLD, grid)

    @pytest.mark.parametrize(
        ("body", "match"),
        [
            ({}, "fold"),
            ({"fold": [1, 2]}, "fold: expected an object"),
            ({"fold": {"index": 0, "train_start_ts": 1, "train_end_ts": 2, "test_start_ts": 2}}, "test_end_ts"),
            (
                {"fold": {"index": True, "train_start_ts": 1, "train_end_ts": 2, "test_start_ts": 2, "test_end_ts": 3}},
                "index",
            ),
            (
                {"fold": {"index": 0, "train_start_ts": 5, "train_end_ts": 2, "test_start_ts": 2, "test_end_ts": 3}},
                "train_start_ts < train_end_ts",
            ),
            (
                {"fold": {"index": 0, "train_start_ts": 1, "train_end_ts": 3, "test_start_ts": 2, "test_end_ts": 4}},
                "train_end_ts <= test_start_ts",
            ),
            (
                {"fold": {"index": -1, "train_start_ts": 1, "train_end_ts": 2, "test_start_ts": 2, "test_end_ts": 3}},
                "index",
            ),
            (
                {"fold": {"index": 0, "train_start_ts": 1.5, "train_end_ts": 2, "test_start_ts": 2, "test_end_ts": 3}},
                "train_start_ts",
            ),
        ],
    )
    def test_request_refused_fold(self, body: dict[str, Any], match: str) -> None:
        problem = parse_fold_request(body)
        assert isinstance(problem, str)
        assert match in problem

    @pytest.mark.parametrize(
        ("grid", "match"),
        [
            (None, "grid"),
            ([], "grid"),
            ("fast=1", "grid"),
            ([{"fast": 5, "slow": 20}, "x"], "grid[1]"),
            ([{}], "grid[0]"),
            ([{"fast": "5"}], "grid[0].fast"),
            ([{"fast": True}], "grid[0].fast"),
            ([{"fast": 10**400}], "grid[0].fast"),
            ([{"fast": float("nan")}], "grid[0].fast"),
            ([{"period": 20}] * (MAX_WIRE_GRID + 1), "at most"),
        ],
    )
    def test_request_refused_grid(self, grid: Any, match: str) -> None:
        problem = parse_fold_request({**fold_request_fields(FOLD, [{"period": 20}]), "grid": grid})
        assert isinstance(problem, str)
        assert match in problem

    def test_result_roundtrip(self) -> None:
        result = run_fold(SPEC, BARS, FOLD, neighbourhood("sma_cross", dict(SPEC.params)), COSTS)
        fields = fold_result_fields(result)
        body = roundtrip({"status": "ok", "metrics": result.test_metrics, **fields})
        back = parse_fold_result(body)
        assert isinstance(back, FoldResult)
        assert back.fold == result.fold
        assert (back.status, back.params, back.train_sharpe, back.test_sharpe) == (
            "ok",
            result.params,
            result.train_sharpe,
            result.test_sharpe,
        )
        assert (back.test_trades, back.test_pnl_pips, back.candidates) == (
            result.test_trades,
            result.test_pnl_pips,
            result.candidates,
        )
        assert back.test_metrics == result.test_metrics
        np.testing.assert_allclose(back.test_returns, result.test_returns, rtol=1e-9, atol=0)
        # The stitched verdict is the same whichever side of the wire computes it.
        a = summarize([result], periods_per_year=H1)
        b = summarize([back], periods_per_year=H1)
        assert b.wf_sharpe == pytest.approx(a.wf_sharpe, rel=1e-8)
        assert b.wf_psr == pytest.approx(a.wf_psr, rel=1e-8)

    def test_error_result_roundtrip(self) -> None:
        result = run_fold(SPEC, BARS, FOLD, [])
        back = parse_fold_result(roundtrip(fold_result_fields(result)))
        assert isinstance(back, FoldResult)
        assert (back.status, back.error, back.params, len(back.test_returns)) == ("error", result.error, None, 0)

    @pytest.mark.parametrize(
        ("change", "match"),
        [
            ({"status": "maybe"}, "status"),
            ({"params": None}, "params"),  # an ok fold must name its choice
            ({"params": {"fast": "x"}}, "params"),
            ({"train_sharpe": "1.2"}, "train_sharpe"),
            ({"test_sharpe": float("inf")}, "test_sharpe"),
            ({"test_returns": [0.1, None]}, "test_returns"),
            ({"test_returns": "0.1"}, "test_returns"),
            ({"test_trades": -1}, "test_trades"),
            ({"test_pnl_pips": None}, "test_pnl_pips"),
            ({"candidates": 1.5}, "candidates"),
            ({"error": 3}, "error"),
            ({"test_end_ts": 0}, "fold"),
        ],
    )
    def test_result_refused(self, change: dict[str, Any], match: str) -> None:
        fields = fold_result_fields(fold_result(0, np.array([0.01, -0.02]), 1.0))
        problem = parse_fold_result({"fold": {**fields["fold"], **change}})
        assert isinstance(problem, str)
        assert match in problem

    @pytest.mark.parametrize("body", [None, [], "x", 3, {"fold": None}, {"fold": "x"}, {"grid": {}}])
    def test_parsers_never_raise(self, body: Any) -> None:
        assert isinstance(parse_fold_request(body), str)
        assert isinstance(parse_fold_result(body), str)
