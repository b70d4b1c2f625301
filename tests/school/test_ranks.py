"""Rank decisions (SPEC §5): thresholds, the DSR gate, the holdout, the walk-forward, retirement order."""

from __future__ import annotations

import pytest

from swimmy.config import RankCriteria, RanksConfig
from swimmy.school.ranks import RankDecision, decide_rank, meets, shortfall, worst_first_key
from swimmy.store import StrategyRow

Figures = dict[str, float | int | None]

RANKS_CFG = RanksConfig()  # the SPEC §5 defaults
B = RANKS_CFG.B  # sharpe >= 0.15, pf >= 1.05, dd < 0.25, trades >= 20
A = RANKS_CFG.A  # sharpe >= 0.45, pf >= 1.20, dd < 0.20, trades >= 30, dsr >= 0.95
S = RANKS_CFG.S  # dd < 0.15

# Figures that meet exactly one rank's IS criteria each under the defaults.
BELOW_B: Figures = {"trades": 50, "sharpe": 0.10, "profit_factor": 1.2, "win_rate": 0.4, "max_drawdown": 0.1,
                    "psr": 0.5, "dsr": 0.2}
B_ONLY: Figures = {"trades": 35, "sharpe": 0.50, "profit_factor": 1.3, "win_rate": 0.40, "max_drawdown": 0.20,
                   "psr": 0.6, "dsr": 0.99}
A_LEVEL: Figures = {"trades": 40, "sharpe": 0.60, "profit_factor": 1.4, "win_rate": 0.45, "max_drawdown": 0.18,
                    "psr": 0.9, "dsr": 0.97}
S_LEVEL: Figures = {"trades": 100, "sharpe": 0.80, "profit_factor": 1.8, "win_rate": 0.55, "max_drawdown": 0.08,
                    "psr": 0.99, "dsr": 0.99}
# A slow trend follower: wins 38% of its trades, earns on the few long runs.
TREND_FOLLOWER: Figures = {"trades": 120, "sharpe": 1.1, "profit_factor": 1.6, "win_rate": 0.38,
                           "max_drawdown": 0.09, "psr": 0.99, "dsr": 0.98}


def with_(figures: Figures, **changes: float | None) -> Figures:
    """A copy of `figures` with `changes` applied."""
    return {**figures, **changes}


def at_b(**changes: float | None) -> Figures:
    """Figures exactly at every B threshold (drawdown just under), with `changes` applied."""
    base: Figures = {"trades": 20, "sharpe": 0.15, "profit_factor": 1.05, "win_rate": 0.35, "max_drawdown": 0.2499,
                     "psr": None, "dsr": None}
    return {**base, **changes}


def at_a(**changes: float | None) -> Figures:
    """Figures exactly at every A threshold (drawdown just under), with `changes` applied."""
    base: Figures = {"trades": 30, "sharpe": 0.45, "profit_factor": 1.20, "win_rate": 0.35, "max_drawdown": 0.1999,
                     "psr": None, "dsr": 0.95}
    return {**base, **changes}


def decide(metrics: Figures, oos: str | None = None, wfv: str | None = None, *, affects: bool = True,
           ranks: RanksConfig = RANKS_CFG) -> RankDecision:
    """decide_rank with the SPEC defaults (wfv.affects_rank true unless said otherwise)."""
    return decide_rank(metrics, oos_decision=oos, wfv_decision=wfv, ranks=ranks, wfv_affects_rank=affects)


class TestDefaults:
    def test_the_spec_defaults(self) -> None:
        """The defaults of SPEC §5: no win-rate gate anywhere, a DSR gate on A, S only adds a drawdown bound."""
        assert RankCriteria(sharpe=0.15, profit_factor=1.05, max_drawdown=0.25, min_trades=20) == B
        assert RankCriteria(sharpe=0.45, profit_factor=1.20, max_drawdown=0.20, min_trades=30, dsr=0.95) == A
        assert RankCriteria(max_drawdown=0.15) == S


class TestShortfall:
    @pytest.mark.parametrize(
        ("criteria", "metrics", "expected"),
        [
            (B, at_b(), None),
            (B, at_b(sharpe=0.1499), "sharpe 0.1499 < 0.15"),
            (B, at_b(profit_factor=1.0499), "profit_factor 1.0499 < 1.05"),
            (B, at_b(max_drawdown=0.25), "max_drawdown 0.25 >= 0.25"),
            (B, at_b(max_drawdown=0.0), None),
            (B, at_b(trades=19), "trades 19 < 20"),
            (B, at_b(win_rate=0.0), None),
            (B, at_b(dsr=0.0), None),
            (A, at_a(), None),
            (A, at_a(dsr=0.9499), "dsr 0.9499 < 0.95"),
            (A, at_a(dsr=None), "dsr null"),
            (A, at_a(max_drawdown=0.20), "max_drawdown 0.20 >= 0.20"),
            (A, at_a(trades=29), "trades 29 < 30"),
            (A, at_a(sharpe=0.4499), "sharpe 0.4499 < 0.45"),
            (S, at_a(max_drawdown=0.15), "max_drawdown 0.15 >= 0.15"),
            (S, at_a(max_drawdown=0.1499), None),
            (S, at_a(win_rate=0.01, psr=None, dsr=None, max_drawdown=0.1), None),
        ],
        ids=[
            "B-all-at-threshold",
            "B-sharpe-just-below",
            "B-pf-just-below",
            "B-dd-at-limit",
            "B-dd-zero",
            "B-trades-one-short",
            "B-no-win-rate-gate",
            "B-no-dsr-gate",
            "A-all-at-threshold",
            "A-dsr-just-below",
            "A-dsr-null",
            "A-dd-at-limit",
            "A-trades-one-short",
            "A-sharpe-just-below",
            "S-dd-at-limit",
            "S-dd-just-under",
            "S-asks-nothing-else",
        ],
    )
    def test_first_missed_threshold(self, criteria: RankCriteria, metrics: Figures, expected: str | None) -> None:
        """A figure at its threshold meets it, except max_drawdown (strictly below); the miss names the figure."""
        assert shortfall(criteria, metrics) == expected
        assert meets(criteria, metrics) is (expected is None)

    @pytest.mark.parametrize("key", ["trades", "sharpe", "profit_factor", "max_drawdown"])
    @pytest.mark.parametrize("how", ["null", "missing", "nan"])
    def test_an_unknown_figure_never_meets(self, key: str, how: str) -> None:
        """A null, absent or NaN figure fails its threshold: it never reads as 0 or as a pass."""
        metrics = at_b()
        if how == "missing":
            del metrics[key]
        else:
            metrics[key] = None if how == "null" else float("nan")
        assert shortfall(B, metrics) == f"{key} null"

    @pytest.mark.parametrize(
        ("criteria", "key", "value", "expected"),
        [
            (RankCriteria(psr=0.95), "psr", None, "psr null"),
            (RankCriteria(psr=0.95), "psr", 0.9499, "psr 0.9499 < 0.95"),
            (RankCriteria(psr=0.95), "psr", 0.95, None),
            (RankCriteria(win_rate=0.5), "win_rate", 0.38, "win_rate 0.38 < 0.50"),
            (RankCriteria(win_rate=0.5), "win_rate", 0.5, None),
            (RankCriteria(dsr=0.5), "dsr", 0.49, "dsr 0.49 < 0.50"),
        ],
        ids=["psr-null", "psr-below", "psr-at", "win-rate-below", "win-rate-at", "dsr-below"],
    )
    def test_optional_criteria_apply_when_configured(self, criteria: RankCriteria, key: str, value: float | None,
                                                     expected: str | None) -> None:
        """psr, win_rate and dsr are criteria once configured above 0."""
        assert shortfall(criteria, {"trades": 1, "sharpe": 1.0, "profit_factor": 2.0, "win_rate": 0.6,
                                    "max_drawdown": 0.0, key: value}) == expected

    def test_a_null_win_rate_is_no_shortfall_without_a_win_rate_gate(self) -> None:
        """SPEC §5: a win_rate of 0 is no criterion, so an unknown win rate cannot fail it."""
        assert shortfall(B, at_b(win_rate=None)) is None


# The decision table: (figures, holdout verdict, walk-forward verdict) -> rank, reason, wants_oos.
DECISIONS = [
    ("below-B", BELOW_B, None, None, RankDecision("graveyard", "below B: sharpe 0.10 < 0.15")),
    ("below-B-whatever-the-verdicts", BELOW_B, "pass", "validated",
     RankDecision("graveyard", "below B: sharpe 0.10 < 0.15")),
    ("below-B-dd-at-limit", with_(S_LEVEL, max_drawdown=0.25),
     "pass", "validated", RankDecision("graveyard", "below B: max_drawdown 0.25 >= 0.25")),
    ("below-B-null-pf", with_(S_LEVEL, profit_factor=None), None, None,
     RankDecision("graveyard", "below B: profit_factor null")),
    ("B-only", B_ONLY, None, None, RankDecision("B", "meets B; below A: max_drawdown 0.20 >= 0.20")),
    ("B-only-validated", B_ONLY, None, "validated", RankDecision("B", "meets B; below A: max_drawdown 0.20 >= 0.20")),
    ("B-only-overfit", B_ONLY, None, "overfit", RankDecision("B", "meets B; below A: max_drawdown 0.20 >= 0.20")),
    ("B-without-dsr-stays-B", with_(B_ONLY, dsr=None), None, None,
     RankDecision("B", "meets B; below A: max_drawdown 0.20 >= 0.20")),
    ("A-criteria-dsr-below-gate", with_(A_LEVEL, dsr=0.90), None, None,
     RankDecision("B", "meets B; below A: dsr 0.90 < 0.95")),
    ("A-criteria-dsr-null", with_(A_LEVEL, dsr=None), None, None, RankDecision("B", "meets B; below A: dsr null")),
    ("S-figures-dsr-below-gate", with_(S_LEVEL, dsr=0.5), None, "validated",
     RankDecision("B", "meets B; below A: dsr 0.50 < 0.95")),
    ("A-candidate", A_LEVEL, None, None, RankDecision("B", "meets A on IS; holdout pending", wants_oos=True)),
    ("S-figures-candidate", S_LEVEL, None, "validated",
     RankDecision("B", "meets A on IS; holdout pending", wants_oos=True)),
    ("holdout-fail", A_LEVEL, "fail", None, RankDecision("B", "holdout failed")),
    ("holdout-fail-S-figures", S_LEVEL, "fail", "validated", RankDecision("B", "holdout failed")),
    ("holdout-pass", A_LEVEL, "pass", None, RankDecision("A", "meets A (holdout passed); below S: max_drawdown "
                                                              "0.18 >= 0.15")),
    ("holdout-pass-dsr-fell", with_(A_LEVEL, dsr=0.10), "pass", None,
     RankDecision("A", "meets A (holdout passed); below S: max_drawdown 0.18 >= 0.15")),
    ("holdout-pass-dsr-null", with_(A_LEVEL, dsr=None), "pass", None,
     RankDecision("A", "meets A (holdout passed); below S: max_drawdown 0.18 >= 0.15")),
    ("holdout-pass-validated-but-S-dd", A_LEVEL, "pass", "validated",
     RankDecision("A", "meets A (holdout passed); below S: max_drawdown 0.18 >= 0.15")),
    ("S-validated", S_LEVEL, "pass", "validated", RankDecision("S", "S: holdout passed and walk-forward validated")),
    ("S-validated-dsr-fell", with_(S_LEVEL, dsr=0.10), "pass", "validated",
     RankDecision("S", "S: holdout passed and walk-forward validated")),
    ("S-no-wfv", S_LEVEL, "pass", None, RankDecision("A", "S criteria met, walk-forward pending: stays A")),
    ("S-weak", S_LEVEL, "pass", "weak", RankDecision("A", "S criteria met, walk-forward weak: stays A")),
    ("S-error", S_LEVEL, "pass", "error", RankDecision("A", "S criteria met, walk-forward error: stays A")),
    ("S-timeout", S_LEVEL, "pass", "timeout", RankDecision("A", "S criteria met, walk-forward timeout: stays A")),
    ("A-overfit", A_LEVEL, "pass", "overfit", RankDecision("B", "walk-forward overfit: demoted to B")),
    ("S-overfit", S_LEVEL, "pass", "overfit", RankDecision("B", "walk-forward overfit: demoted to B")),
    ("overfit-and-holdout-fail", S_LEVEL, "fail", "overfit", RankDecision("B", "holdout failed")),
    ("trend-follower-S", TREND_FOLLOWER, "pass", "validated",
     RankDecision("S", "S: holdout passed and walk-forward validated")),
]


class TestDecideRank:
    @pytest.mark.parametrize(("metrics", "oos", "wfv", "expected"), [d[1:] for d in DECISIONS],
                             ids=[d[0] for d in DECISIONS])
    def test_decision_table(self, metrics: Figures, oos: str | None, wfv: str | None, expected: RankDecision) -> None:
        """SPEC §5 with wfv.affects_rank: B, then A = A's criteria (DSR gate) + holdout pass, then S = S + validated."""
        assert decide(metrics, oos, wfv) == expected

    @pytest.mark.parametrize("dsr", [0.99, 0.95, 0.5, 0.0, None])
    def test_ledger_growth_never_demotes_after_the_holdout(self, dsr: float | None) -> None:
        """Once the holdout is passed, a DSR that fell (more trials elsewhere) keeps A, and S with validated."""
        assert decide(with_(A_LEVEL, dsr=dsr), "pass").rank == "A"
        assert decide(with_(S_LEVEL, dsr=dsr), "pass", "validated").rank == "S"

    @pytest.mark.parametrize("dsr", [0.9499, 0.5, 0.0, None])
    def test_the_dsr_gate_holds_before_the_holdout(self, dsr: float | None) -> None:
        """Before a holdout verdict, a DSR under the gate keeps the strategy B and asks no holdout look."""
        decision = decide(with_(S_LEVEL, dsr=dsr))
        assert (decision.rank, decision.wants_oos) == ("B", False)
        assert "dsr" in decision.reason

    @pytest.mark.parametrize(("oos", "wants_oos"), [(None, True), ("fail", False), ("pass", False)])
    def test_only_a_missing_holdout_verdict_is_wanted(self, oos: str | None, wants_oos: bool) -> None:
        """wants_oos only while the holdout has not spoken."""
        assert decide(A_LEVEL, oos).wants_oos is wants_oos

    def test_a_trend_follower_reaches_s_under_the_defaults(self) -> None:
        """Win rate 0.38 (a trend follower's 35-45%): no default gate stops it; a configured one would."""
        assert decide(TREND_FOLLOWER, "pass", "validated").rank == "S"
        gated = RanksConfig(S=RankCriteria(max_drawdown=0.15, win_rate=0.5))
        assert decide(TREND_FOLLOWER, "pass", "validated", ranks=gated) == RankDecision(
            "A", "meets A (holdout passed); below S: win_rate 0.38 < 0.50")


class TestWfvAnalysisOnly:
    @pytest.mark.parametrize("wfv", [None, "validated", "weak", "overfit", "error"])
    @pytest.mark.parametrize(("metrics", "rank"), [(S_LEVEL, "S"), (A_LEVEL, "A"), (B_ONLY, "B")])
    def test_no_walk_forward_verdict_changes_a_rank(self, metrics: Figures, rank: str, wfv: str | None) -> None:
        """With wfv.affects_rank false, S needs no walk-forward and overfit demotes nothing."""
        assert decide(metrics, "pass", wfv, affects=False).rank == rank

    def test_s_without_a_walk_forward(self) -> None:
        assert decide(S_LEVEL, "pass", None, affects=False) == RankDecision("S", "S")

    def test_the_holdout_still_gates_a(self) -> None:
        """affects_rank only concerns the walk-forward: a failed holdout still keeps S figures at B."""
        assert decide(S_LEVEL, "fail", "validated", affects=False) == RankDecision("B", "holdout failed")


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

    def test_sorting_a_mixed_population(self) -> None:
        """Sorted by the key, a population lists graveyard, B, A, S, incubator, weakest first within each."""
        rows = [row("s2", "S", 2.0), row("i", "incubator", None), row("b2", "B", 0.9), row("a1", "A", 0.5),
                row("g", "graveyard", 1.0), row("b1", "B", None), row("s1", "S", 0.8), row("b3", "B", 0.2)]
        assert [r.name for r in sorted(rows, key=worst_first_key)] == ["g", "b1", "b3", "b2", "a1", "s1", "s2", "i"]
