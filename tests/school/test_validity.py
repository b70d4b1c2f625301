"""Proof on data whose answer is known (SPEC §5, issue 11): the real school, in one process, on generated universes.

Random walks (Gaussian, and GARCH(1,1) with Student-t shocks) must promote nothing; a planted trend of the
pinned strength (swimmy.backtest.synth.PLANTED_TREND_STRENGTH: the best slow SMA cross earns an annualised Sharpe of
about 3 over 30,000 H1 bars) must be found, confirmed on its holdout and by its walk-forward, by trend
followers only. Small fixed seeds keep each run well inside a minute; neither a school that promotes
nothing nor one that promotes everything can pass both halves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swimmy.school.validity import TREND_FOLLOWERS, run_school

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("seed", "noise"), [(11, "gaussian"), (12, "garch")])
def test_a_random_walk_promotes_nothing(tmp_path: Path, seed: int, noise: str) -> None:
    """Hundreds of rule sets tried on noise: the best is lucky, and the DSR says so; no A, no S."""
    v = run_school(tmp_path, "random_walk", seed, trials=700, noise=noise)
    assert v.trials >= 700 and 2 <= v.n_eff <= v.trials  # the ledger counted what was tried
    assert (v.a, v.s) == (0, 0), v.row()
    assert v.best_dsr is not None and v.best_dsr < 0.95
    validated, runs = v.wfv.get("validated", 0), sum(v.wfv.values())
    assert validated <= max(1, runs // 10), v.row()


@pytest.mark.parametrize("seed", [21, 22])
def test_a_planted_trend_is_found_by_trend_followers_and_confirmed(tmp_path: Path, seed: int) -> None:
    """Within 5,000 trials (the issue's bound): an A (holdout passed) and an S (walk-forward validated)."""
    v = run_school(tmp_path, "planted_trend", seed, trials=5000, stop_at_first_s=True)
    assert v.trials_to_first_a is not None and v.trials_to_first_a <= 5000, v.row()
    assert v.s >= 1 and v.a >= 1, v.row()
    assert set(v.families) <= TREND_FOLLOWERS, v.row()
