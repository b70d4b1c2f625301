"""backtest/synth.py: synthetic universes whose answer is known (a random walk: no edge; a planted trend: slow trend).

Fixed seeds throughout; the thresholds sit several standard errors away from what the generators give, so a
test fails when a generator breaks, not by bad luck. The Sharpe tests run the repo's own engine with the
config's default costs (spread 0.8 + slippage 0.2 pips, pip 0.0001).
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from swimmy.backtest import synth
from swimmy.backtest.data import data_path, load_bars, read_csv
from swimmy.backtest.engine import Bars, Costs, run_backtest
from swimmy.backtest.strategies import BARS_PER_YEAR, StrategySpec

COSTS = Costs(spread_pips=0.8, slippage_pips=0.2, pip=0.0001)
N = 30_000  # ~4.8 years of H1 bars
SMA_GRID = list(itertools.product((5, 10, 20, 30), (50, 100, 150, 200)))


def best_sharpe(bars: Bars, family: str, grid: list[dict[str, float]]) -> tuple[float, dict[str, float]]:
    """The best annualised Sharpe over `grid` (an undefined Sharpe counts as -inf) and the params that got it."""
    best: tuple[float, dict[str, float]] = (-math.inf, {})
    for params in grid:
        sharpe = run_backtest(StrategySpec(family, params, "SYNTH", "H1"), bars, costs=COSTS).metrics["sharpe"]
        value = -math.inf if sharpe is None else float(sharpe)
        if value > best[0]:
            best = (value, params)
    return best


def best_sma(bars: Bars) -> tuple[float, dict[str, float]]:
    return best_sharpe(bars, "sma_cross", [{"fast": f, "slow": s} for f, s in SMA_GRID])


def all_series(n: int = 5_000, seed: int = 3, timeframe: str = "H1") -> list[synth.SynthSeries]:
    return [
        synth.random_walk(n, seed, timeframe=timeframe),
        synth.random_walk(n, seed, timeframe=timeframe, kind="garch"),
        synth.planted_trend(n, seed, timeframe=timeframe),
        synth.planted_trend(n, seed, timeframe=timeframe, kind="garch"),
    ]


def arrays(s: synth.SynthSeries | Bars) -> list[np.ndarray]:
    return [s.timestamps, s.open, s.high, s.low, s.close]


# --- determinism ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: synth.random_walk(3_000, seed),
        lambda seed: synth.random_walk(3_000, seed, kind="garch"),
        lambda seed: synth.planted_trend(3_000, seed),
        lambda seed: synth.planted_trend(3_000, seed, kind="garch", timeframe="M5"),
    ],
)
def test_same_seed_same_bars_other_seed_other_bars(make) -> None:
    a, b, c = make(11), make(11), make(12)
    for x, y in zip([*arrays(a), a.volume, a.drift], [*arrays(b), b.volume, b.drift], strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.timestamps, c.timestamps)  # the clock is not random
    for x, z in zip(arrays(a)[1:], arrays(c)[1:], strict=True):
        assert not np.array_equal(x, z)


def test_kinds_differ_for_one_seed() -> None:
    rw, garch, trend = (s.close for s in all_series()[:3])
    assert not np.array_equal(rw, garch)
    assert not np.array_equal(rw, trend)


# --- bars ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", list(BARS_PER_YEAR))
def test_ohlc_consistent_and_gapless(timeframe: str) -> None:
    for s in all_series(4_000, timeframe=timeframe):
        for b in (s, synth.to_bars(s)):
            assert (b.low > 0).all()
            assert (b.low <= np.minimum(b.open, b.close)).all()
            assert (b.high >= np.maximum(b.open, b.close)).all()
            np.testing.assert_array_equal(b.open[1:], b.close[:-1])  # the next bar opens at the previous close
        assert s.open[0] == synth.DEFAULT_START_PRICE
        # high/low come from a real intrabar path: most bars reach beyond their open and close.
        assert np.mean(s.high > np.maximum(s.open, s.close)) > 0.5
        assert np.mean(s.low < np.minimum(s.open, s.close)) > 0.5
        assert (s.volume >= 1).all()


def test_intrabar_range_is_a_fair_path() -> None:
    """The range is a continuous path's (stops get no edge from a short range), with no side favoured."""
    for s in all_series(30_000)[:2]:
        log_range = np.log(s.high / s.low)
        ratio = float(np.mean(log_range / s.sigma))
        assert 1.55 < ratio < 1.65  # E[range] of Brownian motion over the bar: sqrt(8 / pi) sigma = 1.596 sigma
        up = np.log(s.high / np.maximum(s.open, s.close))
        down = np.log(np.minimum(s.open, s.close) / s.low)
        assert abs(up.mean() / down.mean() - 1.0) < 0.05
        assert 0.48 < np.mean(s.close > s.open) < 0.52


def test_a_stop_loss_has_no_edge_on_a_random_walk() -> None:
    """Paired on 30 walks: the same rule with a 15-pip stop does not beat it without (the bug a short range gave)."""
    from swimmy.backtest.engine import Costs, run_backtest
    from swimmy.backtest.strategies import StrategySpec

    diffs = []
    for seed in range(30):
        bars = synth.to_bars(synth.random_walk(12_000, 500 + seed))
        rule = {"period": 14, "lower": 30, "upper": 70}
        with_stop = run_backtest(StrategySpec("rsi_reversion", rule, "EURUSD", "H1", 15, 0), bars,
                                 costs=Costs(0.8, 0.2)).metrics["sharpe"] or 0.0
        without = run_backtest(StrategySpec("rsi_reversion", rule, "EURUSD", "H1", 0, 0), bars,
                               costs=Costs(0.8, 0.2)).metrics["sharpe"] or 0.0
        diffs.append(float(with_stop) - float(without))
    assert np.mean(diffs) < 2 * np.std(diffs) / np.sqrt(len(diffs))  # no significant gain from the stop


@pytest.mark.parametrize("timeframe", list(BARS_PER_YEAR))
def test_timestamps_weekdays_only_at_the_step(timeframe: str) -> None:
    step = synth.TIMEFRAME_SECONDS[timeframe]
    per_week = 5 * 86_400 // step
    n = max(3 * per_week + 7, 200)
    ts = synth.random_walk(n, 0, timeframe=timeframe).timestamps
    assert datetime.fromtimestamp(int(ts[0]), tz=UTC) == datetime(2015, 1, 5, tzinfo=UTC)
    days = (ts // 86_400 + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    assert (days < 5).all()
    gaps = np.diff(ts)
    assert set(gaps.tolist()) == {step, step + 2 * 86_400}
    weekend = np.flatnonzero(gaps != step)
    assert (days[weekend] == 4).all()  # Friday's last bar, then Monday 00:00
    assert ((ts[weekend + 1] % 86_400) == 0).all()
    # One year of bars spans 52 weeks exactly: BARS_PER_YEAR annualises this clock.
    year = synth.timestamps(BARS_PER_YEAR[timeframe] + 1, timeframe)
    assert int(year[-1] - year[0]) == 52 * 7 * 86_400


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="timeframe"):
        synth.random_walk(10, 0, timeframe="H2")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_bars"):
            synth.random_walk(bad, 0)  # type: ignore[arg-type]
    assert len(synth.random_walk(np.int64(7), 0)) == 7
    with pytest.raises(ValueError, match="noise kind"):
        synth.random_walk(10, 0, kind="cauchy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vol_per_year"):
        synth.random_walk(10, 0, vol_per_year=0.0)
    with pytest.raises(ValueError, match="strength"):
        synth.planted_trend(10, 0, strength=-1.0)
    with pytest.raises(ValueError, match="half_life"):
        synth.planted_trend(10, 0, half_life=0.0)


# --- the random walk -----------------------------------------------------------------------------------------------


def _stats(r: np.ndarray) -> dict[str, float]:
    d = r - r.mean()
    sq = r * r
    return {
        "t": float(r.mean() / r.std(ddof=1) * math.sqrt(len(r))),
        "acf1": float(np.corrcoef(r[1:], r[:-1])[0, 1]),
        "excess_kurtosis": float((d**4).mean() / (d**2).mean() ** 2 - 3.0),
        "acf_squared": float(np.corrcoef(sq[1:], sq[:-1])[0, 1]),
        "vol_per_year": float(r.std(ddof=1) * math.sqrt(BARS_PER_YEAR["H1"])),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_random_walk_is_noise(seed: int) -> None:
    s = _stats(synth.random_walk(N, seed).log_returns)
    assert abs(s["t"]) < 3.5  # zero drift
    assert abs(s["acf1"]) < 0.03  # no serial correlation (1 / sqrt(N) ~ 0.006)
    assert abs(s["excess_kurtosis"]) < 0.2  # Gaussian tails (sd ~ sqrt(24 / N) ~ 0.03)
    assert abs(s["acf_squared"]) < 0.03  # no volatility clustering
    assert 0.075 < s["vol_per_year"] < 0.085


@pytest.mark.parametrize("seed", [0, 1])
def test_garch_random_walk_has_fat_tails_and_clusters_but_no_direction(seed: int) -> None:
    s = _stats(synth.random_walk(N, seed, kind="garch").log_returns)
    assert abs(s["t"]) < 3.5
    assert abs(s["acf1"]) < 0.03
    assert s["excess_kurtosis"] > 1.0
    assert s["acf_squared"] > 0.05
    assert 0.07 < s["vol_per_year"] < 0.09


@pytest.mark.parametrize(("seed", "kind"), [(0, "gaussian"), (1, "gaussian"), (0, "garch")])
def test_no_sma_cross_earns_on_a_random_walk(seed: int, kind: synth.NoiseKind) -> None:
    sharpe, params = best_sma(synth.to_bars(synth.random_walk(N, seed, kind=kind)))
    assert sharpe < 1.5, params


# --- the planted trend ---------------------------------------------------------------------------------------------


def test_planted_trend_volatility_and_drift() -> None:
    s = synth.planted_trend(N, 5)
    r = s.log_returns
    assert 0.075 < r.std(ddof=1) * math.sqrt(BARS_PER_YEAR["H1"]) < 0.085  # drift included
    noise_vol = synth.DEFAULT_VOL_PER_YEAR / math.sqrt(BARS_PER_YEAR["H1"] * (1 + synth.PLANTED_TREND_STRENGTH**2))
    ratio = s.drift.std() / noise_vol / synth.PLANTED_TREND_STRENGTH
    assert 0.6 < ratio < 1.4  # ~60 half-lives in the sample: a loose band
    lag = int(synth.PLANTED_TREND_HALF_LIFE)
    acf = float(np.corrcoef(s.drift[lag:], s.drift[:-lag])[0, 1])
    assert 0.3 < acf < 0.7  # one half-life apart: 0.5
    assert np.all(synth.random_walk(100, 5).drift == 0.0)


def test_variance_ratio() -> None:
    assert synth.variance_ratio(1) == pytest.approx(1.0)
    assert synth.variance_ratio(6_240, strength=0.0) == pytest.approx(1.0)
    ratios = [synth.variance_ratio(h) for h in (10, 120, 520, 6_240)]
    assert ratios == sorted(ratios)
    assert 1.0 < ratios[0] < ratios[-1] < 10.0
    # Against the process: uncentred second moments of 120-bar returns over many short series.
    h = 120
    num = den = 0.0
    for seed in range(100):
        lc = np.log(synth.planted_trend(3_000, 100 + seed).close)
        num += float(np.mean((lc[h:] - lc[:-h]) ** 2))
        den += h * float(np.mean(np.diff(lc) ** 2))
    assert num / den == pytest.approx(synth.variance_ratio(h), rel=0.1)


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_slow_sma_cross_earns_the_planted_trend(seed: int) -> None:
    bars = synth.to_bars(synth.planted_trend(N, seed))
    sharpe, params = best_sma(bars)
    assert 2.0 < sharpe < 4.5, params
    assert params["slow"] >= 100
    rsi_grid = [{"period": p, "lower": lo, "upper": up} for p in (7, 14) for lo, up in ((20.0, 80.0), (30.0, 70.0))]
    rsi_sharpe, rsi_params = best_sharpe(bars, "rsi_reversion", rsi_grid)
    assert rsi_sharpe < 0.5, rsi_params
    donchian, donchian_params = best_sharpe(bars, "donchian_breakout", [{"period": p} for p in (100, 200)])
    assert donchian > 1.5, donchian_params


def test_strength_overrides_the_default() -> None:
    flat = synth.planted_trend(N, 0, strength=0.0)
    assert np.all(flat.drift == 0.0)
    assert best_sma(synth.to_bars(flat))[0] < 1.5
    strong = best_sma(synth.to_bars(synth.planted_trend(N, 0, strength=2 * synth.PLANTED_TREND_STRENGTH)))[0]
    assert strong > best_sma(synth.to_bars(synth.planted_trend(N, 0)))[0] + 1.0


# --- files ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "garch"])
def test_csv_round_trip(tmp_path: Path, kind: synth.NoiseKind) -> None:
    series = synth.planted_trend(5_000, 4, kind=kind)
    path = synth.write_csv(tmp_path / "SYNTH_TREND_H1.csv", series)
    assert path.read_text().splitlines()[0] == "timestamp,open,high,low,close,volume"
    back = read_csv(path)
    expected = synth.to_bars(series)
    for got, want in zip(arrays(back), arrays(expected), strict=True):
        np.testing.assert_array_equal(got, want)  # bit for bit: the rounding is the one %.6f prints
    for got, raw in zip(arrays(back)[1:], arrays(series)[1:], strict=True):
        np.testing.assert_allclose(got, raw, rtol=0, atol=5.1e-7)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    assert path.stat().st_mode & 0o777 == 0o644
    # Plain Bars (e.g. already rounded) go out and come back unchanged too, with a zero volume.
    again = synth.write_csv(tmp_path / "again.csv", back)
    for got, want in zip(arrays(read_csv(again)), arrays(back), strict=True):
        np.testing.assert_array_equal(got, want)
    assert again.read_text().splitlines()[1].endswith(",0")


def test_write_csv_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "X_H1.csv"
    path.write_text("old\n")
    synth.write_csv(path, synth.random_walk(100, 0))
    assert len(read_csv(path)) == 100


@pytest.mark.parametrize("kind", ["random_walk", "planted_trend"])
def test_generate_writes_the_universe_file(tmp_path: Path, kind: synth.GenerateKind) -> None:
    path = synth.generate(kind, "SYNTH_X", "H4", 2_000, 9, data_dir=tmp_path)
    assert path == data_path(tmp_path, "SYNTH_X", "H4") == tmp_path / "SYNTH_X_H4.csv"
    bars = load_bars(tmp_path, "SYNTH_X", "H4")
    maker = synth.random_walk if kind == "random_walk" else synth.planted_trend
    expected = synth.to_bars(maker(2_000, 9, timeframe="H4"))
    for got, want in zip(arrays(bars), arrays(expected), strict=True):
        np.testing.assert_array_equal(got, want)


def test_generate_refuses_bad_names_and_kinds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="symbol"):
        synth.generate("random_walk", "../evil", "H1", 10, 0, data_dir=tmp_path)
    with pytest.raises(ValueError, match="kind"):
        synth.generate("sine", "SYNTH", "H1", 10, 0, data_dir=tmp_path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
