"""The trials ledger (SPEC §5): counted once, never pruned away, N_eff from the trials' correlation, DSR."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from swimmy.school.ledger import Aggregate, Ledger, n_eff_from, sketch_blob
from swimmy.school.stats import expected_max_sharpe
from swimmy.store import Store, TrialRow

U = "EURUSD_H1"


def trial(i: int, sums: np.ndarray, universe: str = U, sharpe: float = 0.01) -> TrialRow:
    sketch = sketch_blob({"sums": [float(x) for x in sums], "sumsqs": [float(abs(x)) + 1.0 for x in sums]})
    return TrialRow(universe, f"hash-{i}", "sma_cross", 0, sharpe, 0.0, 3.0, 3200, float(i), sketch)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "school.db")
    yield s  # type: ignore[misc]
    s.close()


class TestCounting:
    def test_a_rule_set_is_one_trial_of_its_universe_however_often_it_is_tried(self, store: Store) -> None:
        ledger = Ledger(store)
        rng = np.random.default_rng(1)
        rows = [trial(i, rng.normal(size=32)) for i in range(10)]
        ledger.record(rows, 1.0)
        ledger.record(rows[:5], 2.0)  # the same rules again (bred anew after the graveyard forgot them)
        ledger.record([trial(0, rng.normal(size=32), universe="SYNTH_RW_H1")], 3.0)  # another universe
        assert ledger.counts(U)[0] == 10
        assert ledger.counts("SYNTH_RW_H1")[0] == 1

    def test_pruned_rows_still_count_and_the_aggregate_survives_a_restart(self, store: Store) -> None:
        """Per-trial rows are bounded; N and the running sums that give N_eff are not lost with them."""
        ledger = Ledger(store, keep_rows=50)
        rng = np.random.default_rng(2)
        for start in range(0, 400, 100):
            ledger.record([trial(i, rng.normal(size=32)) for i in range(start, start + 100)], float(start))
        n_before, n_eff_before = ledger.counts(U)
        assert store.prune_trials(U, 50) > 0
        assert len(store.recent_trials(U, 10_000)) == 50
        again = Ledger(store)  # a restart
        assert again.counts(U) == (n_before, n_eff_before) == (400, pytest.approx(n_eff_before))
        assert again.aggregate(U).n == 400


class TestNeff:
    def test_independent_trials_count_almost_fully(self) -> None:
        rng = np.random.default_rng(3)
        agg = Aggregate()
        agg.add(rng.normal(size=(2000, 32)))
        rho = agg.rho_bar
        assert rho is not None and abs(rho) < 0.01
        assert n_eff_from(2000, rho) == pytest.approx(2000, rel=0.03)

    def test_the_schools_n_eff_grows_with_independent_trials_and_not_with_copies(self) -> None:
        """The max-T N_eff (docs/statistics.md): copies of one trial are one; independent ones keep adding."""
        rng = np.random.default_rng(8)
        copies = Aggregate()
        copies.add(np.tile(rng.normal(size=32), (300, 1)))
        assert copies.n == 300 and copies.n_eff(0.95) < 1.5
        few, many = Aggregate(), Aggregate()
        few.add(rng.normal(size=(10, 32)))
        many.add(rng.normal(size=(1000, 32)))
        assert 3 < few.n_eff(0.95) <= 10 and many.n_eff(0.95) > 5 * few.n_eff(0.95)
        restored = Aggregate.from_bytes(many.to_bytes())
        assert restored.n == 1000 and restored.n_eff(0.95) == pytest.approx(many.n_eff(0.95))

    def test_copies_of_one_rule_count_as_one(self) -> None:
        base = np.random.default_rng(4).normal(size=32)
        agg = Aggregate()
        agg.add(np.tile(base, (500, 1)) * np.linspace(1, 2, 500)[:, None])  # scaled copies: correlation 1
        assert agg.rho_bar == pytest.approx(1.0)
        assert n_eff_from(500, agg.rho_bar) == pytest.approx(1.0)

    def test_the_mean_correlation_matches_a_direct_computation(self) -> None:
        """rho = (|sum z|^2 - n) / (n (n - 1)) equals the mean of the off-diagonal Pearson correlations."""
        rng = np.random.default_rng(5)
        common = rng.normal(size=32)
        x = 0.6 * common + rng.normal(size=(60, 32))
        agg = Aggregate()
        agg.add(x)
        c = np.corrcoef(x)
        direct = (c.sum() - 60) / (60 * 59)
        assert agg.rho_bar == pytest.approx(direct, rel=1e-9)

    def test_trials_without_variance_are_left_out(self) -> None:
        agg = Aggregate()
        agg.add(np.zeros((5, 32)))
        agg.add(np.full((3, 32), np.nan))
        assert agg.n == 0 and agg.rho_bar is None


class TestDeflation:
    def test_the_dsr_is_psr_against_the_expected_best_of_n_eff_lucky_trials(self, store: Store) -> None:
        """Checked against an independent computation with scipy (V = 1/(T-1), SPEC §5)."""
        ledger = Ledger(store)
        rng = np.random.default_rng(6)
        ledger.record([trial(i, rng.normal(size=32)) for i in range(300)], 1.0)
        n, n_eff = ledger.counts(U)
        t, sr, skew, kurt = 3200, 0.07, -0.3, 5.0
        got = ledger.deflate(U, sharpe_per_bar=sr, bars=t, skew=skew, kurtosis=kurt, bars_per_year=6240)
        v = 1 / (t - 1)
        g = 0.5772156649015329
        sr0 = math.sqrt(v) * ((1 - g) * norm.ppf(1 - 1 / n_eff) + g * norm.ppf(1 - 1 / (n_eff * math.e)))
        z = (sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr * sr)
        assert got.dsr == pytest.approx(norm.cdf(z), rel=1e-9)
        assert got.sr0 == pytest.approx(sr0 * math.sqrt(6240), rel=1e-9)
        assert got.trials == n == 300 and got.sr0 == pytest.approx(expected_max_sharpe(n_eff, v) * math.sqrt(6240))

    def test_more_trials_make_the_same_sharpe_worth_less(self, store: Store) -> None:
        ledger = Ledger(store)
        rng = np.random.default_rng(7)
        figures = {"sharpe_per_bar": 0.06, "bars": 3200, "skew": 0.0, "kurtosis": 3.0, "bars_per_year": 6240.0}
        ledger.record([trial(i, rng.normal(size=32)) for i in range(10)], 1.0)
        early = ledger.deflate(U, **figures)  # type: ignore[arg-type]
        ledger.record([trial(i, rng.normal(size=32)) for i in range(10, 5000)], 2.0)
        late = ledger.deflate(U, **figures)  # type: ignore[arg-type]
        assert early.dsr is not None and late.dsr is not None and late.dsr < early.dsr

    def test_no_figures_no_dsr(self, store: Store) -> None:
        got = Ledger(store).deflate(U, sharpe_per_bar=None, bars=100, skew=0.0, kurtosis=3.0, bars_per_year=6240)
        assert got.dsr is None
