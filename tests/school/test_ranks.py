"""Rank decisions (SPEC §5): thresholds, the A candidate and OOS, S and WFV, errors, retirement order."""

from __future__ import annotations

import pytest

from swimmy.config import RankCriteria, RanksConfig
from swimmy.school.ranks import RankDecision, decide_rank, meets, worst_first_key
from swimmy.store import StrategyRow

RANKS_CFG = RanksConfig()
B = RANKS_CFG.B  # sharpe 0.15, pf 1.05, win 0.35, dd < 0.25, trades 20
S = RANKS_CFG.S  # sharpe 0.75, pf 1.70, win 0.50, dd < 0.10, trades 30, psr 0.95

# Figures that meet exactly one rank's IS criteria each (SPEC §5 defaults).
BELOW_B = {"trades": 50, "sharpe": 0.10, "profit_factor": 1.2, "win_rate": 0.4, "max_drawdown": 0.1, "psr": 0.5}
B_ONLY = {"trades": 25, "sharpe": 0.30, "profit_factor": 1.2, "win_rate": 0.40, "max_drawdown": 0.20, "psr": 0.6}
A_BASE = {"trades": 40, "sharpe": 0.50, "profit_factor": 1.4, "win_rate": 0.45, "max_drawdown": 0.15, "psr": 0.8}
S_LEVEL = {"trades": 100, "sharpe": 0.80, "profit_factor": 1.8, "win_rate": 0.55, "max_drawdown": 0.08, "psr": 0.97}


def at_b(**changes: float | None) -> dict[str, float | int | None]:
    """Figures exactly at every B threshold (drawdown just under), with `changes` applied."""
    base: dict[str, float | int | None] = {
        "trades": 20,
        "sharpe": 0.15,
        "profit_factor": 1.05,
        "win_rate": 0.35,
        "max_drawdown": 0.2499,
        "psr": None,
    }
    return {**base, **changes}


def with_(figures: dict[str, float | int], **changes: float | None) -> dict[str, float | int | None]:
    """A copy of `figures` with `changes` applied."""
    return {**figures, **changes}


class TestMeets:
    @pytest.mark.parametrize(
        ("metrics", "expected"),
        [
            (at_b(), True),
            (at_b(sharpe=0.1499), False),
            (at_b(profit_factor=1.0499), False),
            (at_b(win_rate=0.3499), False),
            (at_b(max_drawdown=0.25), False),
            (at_b(max_drawdown=0.0), True),
            (at_b(trades=19), False),
            (at_b(trades=1000), True),
        ],
        ids=[
            "all-at-threshold",
            "sharpe-just-below",
            "pf-just-below",
            "win-just-below",
            "dd-at-threshold",
            "dd-zero",
            "trades-one-short",
            "many-trades",
        ],
    )
    def test_boundaries(self, metrics: dict[str, float | int | None], expected: bool) -> None:
        """A figure exactly at its threshold meets it, except max_drawdown, which must stay strictly below."""
        assert meets(B, metrics) is expected

    @pytest.mark.parametrize("key", ["trades", "sharpe", "profit_factor", "win_rate", "max_drawdown"])
    def test_null_figure_never_meets(self, key: str) -> None:
        """A null figure fails its threshold, never reads as 0 or as a pass."""
        assert not meets(B, at_b(**{key: None}))

    @pytest.mark.parametrize("key", ["trades", "sharpe", "profit_factor", "win_rate", "max_drawdown"])
    def test_missing_figure_never_meets(self, key: str) -> None:
        """A figure absent from the mapping fails like a null one."""
        metrics = at_b()
        del metrics[key]
        assert not meets(B, metrics)

    def test_nan_never_meets(self) -> None:
        """A NaN figure (which compares false both ways) fails its threshold."""
        assert not meets(B, at_b(max_drawdown=float("nan")))

    @pytest.mark.parametrize(
        ("criteria", "psr", "expected"),
        [
            (B, None, True),
            (B, 0.0, True),
            (S, None, False),
            (S, 0.9499, False),
            (S, 0.95, True),
        ],
        ids=["B-ignores-null-psr", "B-ignores-zero-psr", "S-null-psr", "S-psr-below", "S-psr-at"],
    )
    def test_psr_checked_only_when_asked(self, criteria: RankCriteria, psr: float | None, expected: bool) -> None:
        """psr is a threshold only when the criteria's psr > 0; then a null psr fails."""
        assert meets(criteria, with_(S_LEVEL, psr=psr)) is expected


def decide(
    metrics: dict[str, float | int | None] | dict[str, float | int],
    oos: float | None = None,
    wfv: str | None = None,
    affects: bool = False,
) -> RankDecision:
    """decide_rank with the SPEC defaults (OOS min 0.35)."""
    return decide_rank(
        metrics, oos_sharpe=oos, wfv_decision=wfv, ranks=RANKS_CFG, oos_min_sharpe=0.35, wfv_affects_rank=affects
    )


class TestIsBacktest:
    @pytest.mark.parametrize(
        ("metrics", "expected"),
        [
            (BELOW_B, RankDecision("graveyard", "below B: sharpe 0.10 < 0.15")),
            (with_(S_LEVEL, trades=19), RankDecision("graveyard", "below B: trades 19 < 20")),
            (with_(S_LEVEL, max_drawdown=0.25), RankDecision("graveyard", "below B: max_drawdown 0.25 >= 0.25")),
            (with_(S_LEVEL, profit_factor=None), RankDecision("graveyard", "below B: profit_factor null")),
            (B_ONLY, RankDecision("B", "meets B")),
            (with_(A_BASE, trades=29), RankDecision("B", "meets B")),
            (with_(A_BASE, sharpe=0.4499), RankDecision("B", "meets B")),
        ],
        ids=[
            "below-B",
            "too-few-trades",
            "dd-at-B-limit",
            "null-pf",
            "B-only",
            "A-figures-few-trades",
            "A-sharpe-short",
        ],
    )
    def test_is_ranks(self, metrics: dict[str, float | int | None], expected: RankDecision) -> None:
        """Below B goes to the graveyard with the first missed threshold; B met without the A base stays B."""
        assert decide(metrics, oos=0.9) == expected

    @pytest.mark.parametrize("oos", [None, 0.0, 0.9])
    def test_graveyard_whatever_the_oos(self, oos: float | None) -> None:
        """The IS figures gate everything: a good OOS Sharpe cannot lift a strategy below B."""
        assert decide(BELOW_B, oos=oos).rank == "graveyard"


class TestOos:
    @pytest.mark.parametrize(
        ("metrics", "oos", "expected"),
        [
            (A_BASE, None, RankDecision("B", "A base met, OOS pending", wants_oos=True)),
            (S_LEVEL, None, RankDecision("B", "A base met, OOS pending", wants_oos=True)),
            (A_BASE, 0.35, RankDecision("A", "meets A; below S: sharpe 0.50 < 0.75")),
            (A_BASE, 0.3499, RankDecision("B", "OOS 0.3499 < 0.35")),
            (A_BASE, 0.20, RankDecision("B", "OOS 0.20 < 0.35")),
            (S_LEVEL, 0.10, RankDecision("B", "OOS 0.10 < 0.35")),
            (B_ONLY, None, RankDecision("B", "meets B")),
        ],
        ids=[
            "A-candidate",
            "S-figures-candidate",
            "oos-at-min",
            "oos-just-below",
            "oos-below",
            "S-oos-below",
            "B-only",
        ],
    )
    def test_a_needs_oos(self, metrics: dict[str, float | int], oos: float | None, expected: RankDecision) -> None:
        """The A base plus an unknown OOS wants OOS; A needs OOS >= min, else it stays B and says why."""
        assert decide(metrics, oos=oos) == expected

    @pytest.mark.parametrize(("oos", "wants_oos"), [(None, True), (-0.5, False), (0.0, False), (1.0, False)])
    def test_only_an_unknown_oos_is_wanted(self, oos: float | None, wants_oos: bool) -> None:
        """wants_oos is False once the OOS Sharpe is known, whatever it is (0.0 is a known figure)."""
        assert decide(A_BASE, oos=oos).wants_oos is wants_oos


class TestS:
    @pytest.mark.parametrize(
        ("metrics", "expected"),
        [
            (S_LEVEL, RankDecision("S", "S")),
            (with_(S_LEVEL, psr=0.94), RankDecision("A", "meets A; below S: psr 0.94 < 0.95")),
            (with_(S_LEVEL, psr=None), RankDecision("A", "meets A; below S: psr null")),
            (with_(S_LEVEL, sharpe=0.70), RankDecision("A", "meets A; below S: sharpe 0.70 < 0.75")),
            (with_(S_LEVEL, max_drawdown=0.10), RankDecision("A", "meets A; below S: max_drawdown 0.10 >= 0.10")),
        ],
        ids=["S", "psr-below", "psr-null", "sharpe-below", "dd-at-limit"],
    )
    def test_s_criteria(self, metrics: dict[str, float | int | None], expected: RankDecision) -> None:
        """S is A plus the S criteria, psr included; short of them the strategy stays A."""
        assert decide(metrics, oos=0.5) == expected


class TestWfv:
    @pytest.mark.parametrize(
        ("metrics", "wfv", "expected"),
        [
            (S_LEVEL, "validated", RankDecision("S", "S")),
            (S_LEVEL, None, RankDecision("A", "S criteria met, WFV pending: stays A")),
            (S_LEVEL, "weak", RankDecision("A", "S criteria met, WFV weak: stays A")),
            (S_LEVEL, "error", RankDecision("A", "S criteria met, WFV error: stays A")),
            (S_LEVEL, "overfit", RankDecision("B", "WFV overfit: demoted to B")),
            (A_BASE, "overfit", RankDecision("B", "WFV overfit: demoted to B")),
            (A_BASE, "validated", RankDecision("A", "meets A; below S: sharpe 0.50 < 0.75")),
            (B_ONLY, "overfit", RankDecision("B", "meets B")),
            (B_ONLY, "validated", RankDecision("B", "meets B")),
            (BELOW_B, "validated", RankDecision("graveyard", "below B: sharpe 0.10 < 0.15")),
        ],
        ids=[
            "S-validated",
            "S-no-wfv",
            "S-weak",
            "S-error",
            "S-overfit",
            "A-overfit",
            "A-validated",
            "B-overfit",
            "B-validated",
            "below-B-validated",
        ],
    )
    def test_wfv_affects_rank(self, metrics: dict[str, float | int], wfv: str | None, expected: RankDecision) -> None:
        """With wfv.affects_rank, S needs a validated WFV and an overfit one demotes A or S to B."""
        assert decide(metrics, oos=0.5, wfv=wfv, affects=True) == expected

    @pytest.mark.parametrize("wfv", [None, "validated", "weak", "overfit", "error"])
    @pytest.mark.parametrize(("metrics", "rank"), [(S_LEVEL, "S"), (A_BASE, "A"), (B_ONLY, "B")])
    def test_wfv_analysis_only(self, metrics: dict[str, float | int], rank: str, wfv: str | None) -> None:
        """Without wfv.affects_rank no WFV decision changes a rank."""
        assert decide(metrics, oos=0.5, wfv=wfv, affects=False).rank == rank

    def test_overfit_before_oos_keeps_the_a_candidate(self) -> None:
        """An A candidate still wants its OOS Sharpe (SPEC: A base met, OOS unknown) even with an overfit WFV."""
        assert decide(A_BASE, oos=None, wfv="overfit", affects=True) == RankDecision(
            "B", "A base met, OOS pending", wants_oos=True
        )


def row(name: str, rank: str, sharpe: float | None) -> StrategyRow:
    """A strategy row with just what retirement looks at."""
    return StrategyRow(name, name, "donchian_breakout", {"period": 20}, "EURUSD", "H1", rank=rank, is_sharpe=sharpe)


class TestWorstFirst:
    @pytest.mark.parametrize(
        ("weaker", "stronger"),
        [
            (row("b", "B", 2.0), row("a", "A", 0.5)),
            (row("a", "A", 2.0), row("s", "S", 0.8)),
            (row("b", "B", 2.0), row("s", "S", 0.1)),
            (row("b1", "B", 0.2), row("b2", "B", 0.3)),
            (row("a1", "A", -1.0), row("a2", "A", 0.0)),
            (row("b1", "B", None), row("b2", "B", -5.0)),
            (row("s1", "S", None), row("s2", "S", 0.9)),
            (row("b1", "B", 0.3), row("b2", "B", 0.3)),
            (row("s", "S", 3.0), row("i", "incubator", None)),
            (row("g", "graveyard", 9.0), row("b", "B", 0.1)),
        ],
        ids=[
            "B-before-A",
            "A-before-S",
            "B-before-S",
            "lower-sharpe-first",
            "negative-sharpe-first",
            "null-sharpe-first",
            "null-sharpe-first-in-S",
            "name-breaks-ties",
            "incubator-last",
            "graveyard-first",
        ],
    )
    def test_order(self, weaker: StrategyRow, stronger: StrategyRow) -> None:
        """Rank decides first (B < A < S), then a null IS Sharpe, then the lower Sharpe, then the name."""
        assert worst_first_key(weaker) < worst_first_key(stronger)
