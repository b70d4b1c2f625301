"""Backtest metrics on hand-computed returns and trades; undefined metrics are null, never 0, NaN or inf."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swimmy.backtest.metrics import METRIC_KEYS, compute_metrics, probabilistic_sharpe_ratio
from swimmy.backtest.strategies import BARS_PER_YEAR
from swimmy.errors import BacktestError

# r = [0.01, -0.02, 0.03, 0, -0.01]
#   mean = 0.01 / 5 = 0.002
#   deviations d = [0.008, -0.022, 0.028, -0.002, -0.012]
#   Σd² = 6.4e-5 + 4.84e-4 + 7.84e-4 + 4e-6 + 1.44e-4 = 1.48e-3
#   std (ddof=1) = √(1.48e-3 / 4) = √3.7e-4 = 0.0192354
#   per-bar Sharpe = 0.002 / 0.0192354 = 0.1039750; H1: · √6240 (78.9937) = 8.213371
#   downside: mean(min(r,0)²) = (4e-4 + 1e-4) / 5 = 1e-4 -> √ = 0.01; Sortino = 0.002 / 0.01 · √6240 = 15.798734
#   equity E = [1.01, 0.9898, 1.019494, 1.019494, 1.00929906]; peaks [1.01, 1.01, 1.019494, 1.019494, 1.019494]
#   drawdowns [0, 1 - 0.9898/1.01 = 0.02, 0, 0, 1 - 1.00929906/1.019494 = 0.01] -> max 0.02
#   m2 = 1.48e-3 / 5 = 2.96e-4; m3 = Σd³/5 = 1.008e-5/5 = 2.016e-6; m4 = Σd⁴/5 = 8.7376e-7/5 = 1.74752e-7
#   skew = 2.016e-6 / 2.96e-4^1.5 = 0.395870; kurtosis = 1.74752e-7 / 2.96e-4² = 1.994522 (not excess)
#   PSR: z = 0.103975·√4 / √(1 - 0.395870·0.103975 + (1.994522 - 1)/4·0.103975²) = 0.207950 / 0.980574 = 0.212070
#        Φ(0.212070) = 0.583974
RETURNS = np.array([0.01, -0.02, 0.03, 0.0, -0.01])
# Trades: two wins (10, 20), one loss (-5), one at exactly 0 (neither): win_rate 2/4, profit factor 30/5 = 6.
PNLS = np.array([10.0, -5.0, 0.0, 20.0])


class TestHandComputed:
    def test_every_metric(self) -> None:
        """trades, wins, losses, win_rate, pnl_pips, profit_factor, sharpe, sortino, max_drawdown, psr as worked out."""
        m = compute_metrics(RETURNS, PNLS, "H1")
        assert list(m) == list(METRIC_KEYS)
        assert (m["trades"], m["wins"], m["losses"]) == (4, 2, 1)
        assert m["win_rate"] == 0.5
        assert m["pnl_pips"] == 25.0
        assert m["profit_factor"] == 6.0
        assert m["sharpe"] == pytest.approx(8.213371, abs=1e-6)
        assert m["sortino"] == pytest.approx(15.798734, abs=1e-6)
        assert m["max_drawdown"] == pytest.approx(0.02, abs=1e-12)
        assert m["psr"] == pytest.approx(0.583974, abs=1e-6)

    def test_types_are_plain_python(self) -> None:
        """Counts are int and ratios float (not numpy scalars), so any JSON encoder carries them."""
        m = compute_metrics(RETURNS, PNLS, "H1")
        assert all(type(m[k]) is int for k in ("trades", "wins", "losses"))
        assert all(type(m[k]) is float for k in METRIC_KEYS if k not in ("trades", "wins", "losses"))

    @pytest.mark.parametrize("timeframe", list(BARS_PER_YEAR))
    def test_annualisation_follows_the_timeframe(self, timeframe: str) -> None:
        """Sharpe and Sortino are the per-bar ratio · √bars_per_year of the timeframe; PSR is not annualised."""
        m = compute_metrics(RETURNS, PNLS, timeframe)
        assert m["sharpe"] == pytest.approx(0.1039750 * math.sqrt(BARS_PER_YEAR[timeframe]), rel=1e-6)
        assert m["sortino"] == pytest.approx(0.2 * math.sqrt(BARS_PER_YEAR[timeframe]), rel=1e-9)
        assert m["psr"] == pytest.approx(0.583974, abs=1e-6)

    def test_drawdown_counts_from_the_starting_equity(self) -> None:
        """Equity starts at 1 before the first bar: losing 10% twice is a drawdown of 1 - 0.9² = 0.19."""
        m = compute_metrics(np.array([-0.1, -0.1]), np.array([-20.0]), "H1")
        assert m["max_drawdown"] == pytest.approx(0.19)

    def test_ruin_is_a_drawdown_of_one(self) -> None:
        """A bar losing more than everything is total ruin: max_drawdown 1, and nothing is NaN or inf."""
        m = compute_metrics(np.array([0.1, -1.5, 0.2]), np.array([-100.0]), "H1")
        assert m["max_drawdown"] == 1.0
        assert all(v is None or math.isfinite(v) for v in m.values())


class TestPSR:
    def test_spec_test_vector(self) -> None:
        """SPEC §4: SR 0.10 per period, n 252, skew -1, kurtosis 6 (non-excess) gives 0.93346."""
        # z = 0.10·√251 / √(1 + 0.10 + 5/4·0.01) = 1.584298 / 1.054751 = 1.502058; Φ(z) = 0.933459
        assert round(probabilistic_sharpe_ratio(0.10, 252, -1.0, 6.0), 5) == 0.93346

    @pytest.mark.parametrize(
        ("sr", "benchmark", "skew", "kurtosis", "expected"),
        [
            (0.0, 0.0, -1.0, 6.0, 0.5),
            (0.1, 0.1, -1.0, 6.0, 0.5),
            # z = 0.1·√251 / √(1 + (3-1)/4·0.01) = 1.584298 / 1.002497 = 1.580352 -> Φ = 0.942987
            (0.1, 0.0, 0.0, 3.0, 0.942987),
            # normal returns: the same distance below the benchmark -> 1 - 0.942987
            (-0.1, 0.0, 0.0, 3.0, 0.057013),
            # z = (0.05 - 0.10)·√251 / √(1 + 0.05 + 5/4·0.0025) = -0.792149 / 1.026219 = -0.771910 -> Φ = 0.220084
            (0.05, 0.10, -1.0, 6.0, 0.220084),
        ],
    )
    def test_against_a_benchmark(
        self, sr: float, benchmark: float, skew: float, kurtosis: float, expected: float
    ) -> None:
        """PSR = Φ((SR - SR*)·√(n-1) / √(1 - skew·SR + (kurtosis-1)/4·SR²)): 0.5 at the benchmark."""
        psr = probabilistic_sharpe_ratio(sr, 252, skew, kurtosis, sr_benchmark=benchmark)
        assert psr == pytest.approx(expected, abs=1e-6)

    @pytest.mark.parametrize(("n", "skew", "kurtosis"), [(1, 0.0, 3.0), (100, 0.0, -100.0)])
    def test_undefined_inputs_raise(self, n: int, skew: float, kurtosis: float) -> None:
        """Fewer than 2 observations, or a non-positive variance term, is a ValueError rather than a made-up number."""
        with pytest.raises(ValueError, match="PSR"):
            probabilistic_sharpe_ratio(0.5, n, skew, kurtosis)


class TestUndefinedIsNull:
    def test_no_trades(self) -> None:
        """No trades: counts 0 and pnl 0.0; win_rate, profit_factor, sharpe, sortino, max_drawdown, psr are null."""
        m = compute_metrics(np.zeros(10), np.empty(0), "H1")
        assert m == {
            "trades": 0,
            "wins": 0,
            "losses": 0,
            "win_rate": None,
            "pnl_pips": 0.0,
            "profit_factor": None,
            "sharpe": None,
            "sortino": None,
            "max_drawdown": None,
            "psr": None,
            "skew": None,
            "kurtosis": None,
            "sharpe_per_bar": None,
        }

    def test_zero_variance(self) -> None:
        """Equal returns on every bar: sharpe and psr are null (not a huge number from rounding noise)."""
        # mean of five 0.1s is 0.10000000000000002 in floats, so a computed std is ~3e-17, not 0.
        m = compute_metrics(np.full(5, 0.1), np.array([12.0]), "H1")
        assert m["sharpe"] is None and m["psr"] is None
        assert m["max_drawdown"] == 0.0

    def test_no_losing_trade(self) -> None:
        """No losing trade: profit_factor is null (gross loss 0), not infinite; win_rate is still defined."""
        m = compute_metrics(RETURNS, np.array([10.0, 0.0, 5.0]), "H1")
        assert m["profit_factor"] is None
        assert m["win_rate"] == pytest.approx(2 / 3)

    def test_only_losing_trades(self) -> None:
        """Only losses: profit_factor is 0 (gross win 0 over a positive gross loss), a defined value."""
        m = compute_metrics(RETURNS, np.array([-10.0, -5.0]), "H1")
        assert m["profit_factor"] == 0.0
        assert (m["wins"], m["losses"], m["win_rate"]) == (0, 2, 0.0)

    def test_no_downside(self) -> None:
        """No bar below 0: sortino is null (no downside deviation), sharpe is defined."""
        m = compute_metrics(np.array([0.0, 0.01, 0.02, 0.0]), np.array([30.0]), "H1")
        assert m["sortino"] is None
        assert m["sharpe"] is not None and m["max_drawdown"] == 0.0

    def test_zero_pnl_trade_is_neither(self) -> None:
        """A trade at exactly 0 pips is neither a win nor a loss, but it is a trade (win_rate 0/1)."""
        m = compute_metrics(np.array([0.0, 0.0]), np.array([0.0]), "H1")
        assert (m["trades"], m["wins"], m["losses"], m["win_rate"]) == (1, 0, 0, 0.0)
        assert m["profit_factor"] is None and m["sharpe"] is None and m["sortino"] is None

    def test_unknown_timeframe(self) -> None:
        """A timeframe without a bars-per-year figure is a BacktestError, not a guessed annualisation."""
        with pytest.raises(BacktestError, match="unknown timeframe 'W1'"):
            compute_metrics(RETURNS, PNLS, "W1")
