"""Breeding (SPEC §5): random and mutated specs, duplicate-free batches, exhaustion, retirement, and
parents drawn from the best live strategies (by DSR, then IS Sharpe) whatever their insertion order."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from schoolkit import make_kit

from swimmy.backtest.strategies import CROSS_FAMILIES, FAMILIES, StrategySpec, validate
from swimmy.errors import BacktestError
from swimmy.school.breeding import PARAM_SPACE, STOP_PIPS, Child, ParamRange, breed, mutate, random_spec, to_retire
from swimmy.school.loop import DataWindow, School
from swimmy.store import Store, StrategyRow

SEEDS = [0, 1, 2, 3, 7]
NON_CROSS = [f for f in FAMILIES if f not in CROSS_FAMILIES]


def is_valid(spec: StrategySpec) -> bool:
    """True when validate() accepts `spec`."""
    try:
        validate(spec)
    except BacktestError:
        return False
    return True


def on_grid(value: float, r: ParamRange) -> bool:
    """True when `value` is one of the range's grid points."""
    steps = (value - r.low) / r.step
    return r.low <= value <= r.high and abs(steps - round(steps)) < 1e-9


def in_space(spec: StrategySpec) -> bool:
    """True when every param and stop of `spec` lies on the PARAM_SPACE / STOP_PIPS grid."""
    space = PARAM_SPACE[spec.family]
    params_ok = set(spec.params) == set(space) and all(on_grid(v, space[k]) for k, v in spec.params.items())
    return params_ok and spec.sl_pips in STOP_PIPS and spec.tp_pips in STOP_PIPS


def row_of(spec: StrategySpec, *, generation: int = 0, rank: str = "A", sharpe: float | None = 1.0) -> StrategyRow:
    """The store row of `spec`, named and hashed as the school would."""
    return StrategyRow(
        spec.name(),
        spec.rules_hash(),
        spec.family,
        dict(spec.params),
        spec.symbol,
        spec.timeframe,
        spec.sl_pips,
        spec.tp_pips,
        generation=generation,
        rank=rank,
        is_sharpe=sharpe,
    )


DONCHIAN = StrategySpec("donchian_breakout", {"period": 50}, "EURUSD", "H1")
# Every donchian spec for EURUSD H1 on the grid: the whole space a donchian parent's mutants can reach.
ALL_DONCHIAN_BY_RULES = {
    (p, sl, tp): StrategySpec("donchian_breakout", {"period": p}, "EURUSD", "H1", sl, tp).rules_hash()
    for p in range(10, 101)
    for sl in STOP_PIPS
    for tp in STOP_PIPS
}
ALL_DONCHIAN = set(ALL_DONCHIAN_BY_RULES.values())


class TestRandomSpec:
    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_valid_and_in_space(self, family: str, seed: int) -> None:
        """Random specs pass validate(), lie on the PARAM_SPACE grid and keep the requested market."""
        rng = random.Random(seed)
        specs = [random_spec(rng, family, "USDJPY", "H1") for _ in range(200)]
        assert all(is_valid(s) and in_space(s) for s in specs)
        assert {(s.family, s.symbol, s.timeframe) for s in specs} == {(family, "USDJPY", "H1")}

    @pytest.mark.parametrize("family", sorted(CROSS_FAMILIES))
    def test_cross_fast_below_slow(self, family: str) -> None:
        """A cross family always draws fast < slow."""
        rng = random.Random(5)
        assert all(
            s.params["fast"] < s.params["slow"] for s in (random_spec(rng, family, "EURUSD", "H1") for _ in range(500))
        )

    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_deterministic(self, family: str) -> None:
        """The same seed draws the same spec."""
        assert random_spec(random.Random(11), family, "EURUSD", "H1") == random_spec(
            random.Random(11), family, "EURUSD", "H1"
        )

    def test_unknown_family(self) -> None:
        """An unknown family is refused with the known ones named."""
        with pytest.raises(ValueError, match="unknown strategy family 'macd'"):
            random_spec(random.Random(0), "macd", "EURUSD", "H1")


class TestMutate:
    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_valid_in_space_and_changed(self, family: str, seed: int) -> None:
        """A mutant of an in-space parent is valid, stays in the space and market, and differs from its parent."""
        rng = random.Random(seed)
        parent = random_spec(rng, family, "EURUSD", "H1")
        children = [mutate(rng, parent) for _ in range(200)]
        assert all(is_valid(c) and in_space(c) for c in children)
        assert all(c.rules_hash() != parent.rules_hash() for c in children)
        assert {(c.family, c.symbol, c.timeframe) for c in children} == {(family, "EURUSD", "H1")}

    @pytest.mark.parametrize(
        ("family", "params"),
        [
            ("sma_cross", {"fast": 49, "slow": 50}),
            ("sma_cross", {"fast": 3, "slow": 10}),
            ("ema_cross", {"fast": 50, "slow": 51}),
            ("ema_cross", {"fast": 9, "slow": 10}),
        ],
        ids=["sma-adjacent", "sma-at-lows", "ema-fast-at-high", "ema-slow-at-low"],
    )
    def test_cross_keeps_fast_below_slow(self, family: str, params: dict[str, float]) -> None:
        """From a tight fast/slow pair at the range ends, every mutant keeps fast < slow within the ranges."""
        rng = random.Random(3)
        parent = StrategySpec(family, params, "EURUSD", "H1")
        children = [mutate(rng, parent) for _ in range(300)]
        assert all(c.params["fast"] < c.params["slow"] and in_space(c) for c in children)

    @pytest.mark.parametrize("family", NON_CROSS)
    def test_small_steps(self, family: str) -> None:
        """A param moves by at most a tenth of its range (one grid step minimum); a stop moves to a neighbour."""
        rng = random.Random(8)
        space = PARAM_SPACE[family]
        parent = StrategySpec(family, {k: r.low + 4 * r.step for k, r in space.items()}, "EURUSD", "H1", 30.0, 30.0)
        children = [mutate(rng, parent) for _ in range(300)]
        limit = {k: max(1, round((r.high - r.low) / r.step + 1) // 10) * r.step for k, r in space.items()}
        assert all(abs(c.params[k] - parent.params[k]) <= limit[k] + 1e-9 for c in children for k in space)
        assert {c.sl_pips for c in children} <= {20.0, 30.0, 50.0}
        assert {c.tp_pips for c in children} <= {20.0, 30.0, 50.0}

    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_one_or_two_genes(self, family: str) -> None:
        """Outside a fast/slow repair, a mutant differs from its parent in one or two genes."""
        rng = random.Random(4)
        parent = random_spec(random.Random(1), family, "EURUSD", "H1")
        children = [mutate(rng, parent) for _ in range(300)]
        changed = Counter(
            sum(c.params[k] != parent.params[k] for k in c.params)
            + (c.sl_pips != parent.sl_pips)
            + (c.tp_pips != parent.tp_pips)
            for c in children
        )
        assert {1, 2} <= set(changed)
        assert set(changed) <= ({1, 2, 3} if family in CROSS_FAMILIES else {1, 2})

    @pytest.mark.parametrize(
        ("family", "params", "sl", "tp"),
        [
            ("sma_cross", {"fast": 1, "slow": 2}, 0.0, 0.0),
            ("ema_cross", {"fast": 250, "slow": 300}, 0.0, 0.0),
            ("rsi_reversion", {"period": 2, "lower": 45, "upper": 50}, 25.0, 200.0),
            ("bollinger_breakout", {"period": 200, "k": 0.1}, 5.0, 0.0),
            ("donchian_breakout", {"period": 500}, 0.0, 1000.0),
        ],
        ids=["sma-below-ranges", "ema-above-ranges", "rsi-off-grid", "bollinger-off-grid", "donchian-huge"],
    )
    def test_hand_written_parent(self, family: str, params: dict[str, float], sl: float, tp: float) -> None:
        """A hand-written parent outside PARAM_SPACE still yields valid mutants."""
        rng = random.Random(6)
        parent = StrategySpec(family, params, "EURUSD", "H1", sl, tp)
        assert all(is_valid(mutate(rng, parent)) for _ in range(200))


PARENTS = [
    row_of(random_spec(random.Random(100 + i), family, "EURUSD", "H1"), generation=i, sharpe=2.0 - i / 10)
    for i, family in enumerate([*FAMILIES, *FAMILIES])
]
PARENT_BY_NAME = {p.name: p for p in PARENTS}
EXISTING = {p.rules_hash for p in PARENTS}


def run_breed(seed: int, **kwargs: object) -> list[Child]:
    """breed() with PARENTS, one market (EURUSD/GBPUSD H1) and `kwargs` overriding the rest."""
    args: dict[str, object] = {
        "parents": PARENTS,
        "existing_hashes": EXISTING,
        "count": 40,
        "symbols": ("EURUSD", "GBPUSD"),
        "timeframe": "H1",
    }
    args.update(kwargs)
    return breed(random.Random(seed), **args)  # type: ignore[arg-type]


class TestBreedChildren:
    @pytest.mark.parametrize("seed", SEEDS)
    def test_deterministic(self, seed: int) -> None:
        """A seeded Random reproduces the batch exactly."""
        assert run_breed(seed) == run_breed(seed)

    @pytest.mark.parametrize("seed", SEEDS)
    @pytest.mark.parametrize(("share", "mutants"), [(0.0, 0), (0.5, 20), (0.25, 10), (1.0, 40)])
    def test_lineage(self, seed: int, share: float, mutants: int) -> None:
        """round(count x share) children are mutants (parent's generation + 1), the rest random (generation 0)."""
        children = run_breed(seed, mutate_share=share)
        assert len(children) == 40
        assert all(is_valid(c.spec) for c in children)
        bred = [c for c in children if c.parent is not None]
        assert len(bred) == mutants
        assert all(c.generation == PARENT_BY_NAME[c.parent].generation + 1 for c in bred if c.parent)
        assert all(c.generation == 0 for c in children if c.parent is None)

    @pytest.mark.parametrize("seed", SEEDS)
    def test_mutants_keep_their_parents_market_and_family(self, seed: int) -> None:
        """A mutant has its parent's family, symbol and timeframe."""
        bred = [c for c in run_breed(seed, mutate_share=1.0) if c.parent]
        assert all(
            (c.spec.family, c.spec.symbol, c.spec.timeframe)
            == (PARENT_BY_NAME[c.parent].family, PARENT_BY_NAME[c.parent].symbol, "H1")
            for c in bred
            if c.parent
        )

    @pytest.mark.parametrize("seed", SEEDS)
    def test_random_children_span_the_market(self, seed: int) -> None:
        """Random children use the configured symbols and timeframe, and several families."""
        children = run_breed(seed, mutate_share=0.0, count=100)
        assert {c.spec.symbol for c in children} == {"EURUSD", "GBPUSD"}
        assert {c.spec.timeframe for c in children} == {"H1"}
        assert len({c.spec.family for c in children}) >= 3

    @pytest.mark.parametrize(
        "parents",
        [
            [],
            [row_of(StrategySpec("donchian_breakout", {"period": 20}, "AUDUSD", "H1"))],
            [row_of(StrategySpec("donchian_breakout", {"period": 20}, "EURUSD", "H4"))],
        ],
        ids=["no-parents", "other-symbol", "other-timeframe"],
    )
    def test_no_usable_parent_means_all_random(self, parents: list[StrategyRow]) -> None:
        """Without a parent on the configured market every child is random, even with mutate_share 1."""
        children = run_breed(1, parents=parents, mutate_share=1.0, count=10)
        assert len(children) == 10
        assert all(c.parent is None and c.generation == 0 for c in children)

    def test_bias_to_the_best(self) -> None:
        """Parents come best first and the top ones are picked more often than the bottom ones."""
        picks = Counter(c.parent for c in run_breed(9, mutate_share=1.0, count=300))
        top, bottom = PARENTS[0].name, PARENTS[-1].name
        assert picks[top] > 3 * picks[bottom]

    def test_zero_count(self) -> None:
        """count 0 breeds nothing."""
        assert run_breed(0, count=0) == []

    @pytest.mark.parametrize(
        "kwargs",
        [{"count": -1}, {"max_tries": 0}, {"mutate_share": 1.5}, {"mutate_share": -0.1}, {"symbols": ()}],
        ids=["negative-count", "no-tries", "share-above-1", "share-below-0", "no-symbols"],
    )
    def test_bad_arguments(self, kwargs: dict[str, object]) -> None:
        """Nonsense arguments are refused rather than silently bred around."""
        with pytest.raises(ValueError, match="breed"):
            run_breed(0, **kwargs)


class TestBreedDuplicates:
    @pytest.mark.parametrize("seed", SEEDS)
    def test_never_repeats_existing(self, seed: int) -> None:
        """With thousands of existing strategies, every child's rules are new."""
        draws = random.Random(seed + 100)
        crowd = {
            random_spec(draws, draws.choice(list(FAMILIES)), draws.choice(("EURUSD", "GBPUSD")), "H1").rules_hash()
            for _ in range(5000)
        }
        existing = EXISTING | crowd
        children = run_breed(seed, count=100, existing_hashes=existing)
        hashes = [c.spec.rules_hash() for c in children]
        assert len(children) == 100
        assert not set(hashes) & existing
        assert len(set(hashes)) == len(hashes)

    @pytest.mark.parametrize("seed", SEEDS)
    def test_skips_existing_in_a_crowded_space(self, seed: int) -> None:
        """When most of a parent's neighbours exist (every even donchian period), children take only the free ones."""
        parent = row_of(DONCHIAN)
        taken = {rules for rules in ALL_DONCHIAN_BY_RULES if rules[0] % 2 == 0}
        existing = {ALL_DONCHIAN_BY_RULES[k] for k in taken}
        children = run_breed(
            seed, parents=[parent], existing_hashes=existing, count=20, mutate_share=1.0, max_tries=200
        )
        assert len(children) == 20
        assert all(c.spec.params["period"] % 2 == 1 for c in children)
        assert all(c.parent == parent.name and c.generation == 1 for c in children)

    @pytest.mark.parametrize("seed", SEEDS)
    def test_no_repeat_within_a_batch(self, seed: int) -> None:
        """In a small space (one donchian parent's mutants) siblings still never share rules."""
        parent = row_of(DONCHIAN)
        children = run_breed(seed, parents=[parent], existing_hashes={parent.rules_hash}, count=30, mutate_share=1.0)
        hashes = [c.spec.rules_hash() for c in children]
        assert len(children) == 30
        assert len(set(hashes)) == 30
        assert parent.rules_hash not in hashes


class TestBreedExhaustion:
    @pytest.mark.parametrize("seed", SEEDS)
    def test_exhausted_space_yields_nothing(self, seed: int) -> None:
        """When every rule a mutant could have exists, breed gives up after max_tries per child."""
        children = run_breed(
            seed, parents=[row_of(DONCHIAN)], existing_hashes=ALL_DONCHIAN, count=5, mutate_share=1.0, max_tries=50
        )
        assert children == []

    @pytest.mark.parametrize("seed", SEEDS[:2])  # each seed walks ~3,000 tries per slot: two are enough
    def test_nearly_exhausted_space_yields_fewer(self, seed: int) -> None:
        """With one free rule left in the space, a batch of 5 returns exactly that one child."""
        free = StrategySpec("donchian_breakout", {"period": 51}, "EURUSD", "H1")
        children = run_breed(
            seed,
            parents=[row_of(DONCHIAN)],
            existing_hashes=ALL_DONCHIAN - {free.rules_hash()},
            count=5,
            mutate_share=1.0,
            max_tries=3000,
        )
        assert [c.spec for c in children] == [free]


def live(name: str, rank: str, sharpe: float | None = 0.5) -> StrategyRow:
    """A strategy row with just what retirement looks at."""
    return StrategyRow(name, name, "donchian_breakout", {"period": 20}, "EURUSD", "H1", rank=rank, is_sharpe=sharpe)


MIXED = [
    live("i1", "incubator", None),
    live("i2", "incubator", None),
    live("b1", "B", 0.9),
    live("b2", "B", 0.2),
    live("b3", "B", None),
    live("a1", "A", 0.5),
    live("a2", "A", 1.5),
    live("s1", "S", 0.8),
    live("s2", "S", 2.0),
    live("g1", "graveyard", -1.0),
    live("g2", "graveyard", 3.0),
]


class TestToRetire:
    @pytest.mark.parametrize(
        ("rows", "population_max", "incoming", "expected"),
        [
            ([live("b", "B"), live("a", "A"), live("s", "S")], 5, 1, []),
            ([live("b", "B"), live("a", "A"), live("s", "S")], 4, 1, []),
            (
                [live("b1", "B", 0.5), live("b2", "B", 0.2), live("a", "A", 0.1), live("s", "S", 0.1)],
                3,
                1,
                ["b2", "b1"],
            ),
            ([live("g1", "graveyard"), live("g2", "graveyard"), live("g3", "graveyard"), live("b", "B")], 2, 1, []),
            ([live("i1", "incubator"), live("i2", "incubator"), live("i3", "incubator"), live("b", "B")], 3, 1, ["b"]),
            ([live("s", "S", 0.1), live("b", "B", 5.0)], 1, 0, ["b"]),
            ([live("i", "incubator"), live("b", "B"), live("a", "A"), live("s", "S")], 2, 3, ["b", "a", "s"]),
            ([live("b1", "B", 0.2), live("b2", "B", None)], 1, 0, ["b2"]),
            (MIXED, 7, 0, ["b3", "b2"]),
            (MIXED, 5, 2, ["b3", "b2", "b1", "a1", "a2", "s1"]),
        ],
        ids=[
            "room-left",
            "exactly-full",
            "weakest-B-first",
            "graveyard-not-counted",
            "incubator-never",
            "S-kept-over-B",
            "incoming-over-max",
            "null-sharpe-first",
            "mixed-two-over",
            "mixed-six-over",
        ],
    )
    def test_retires_weakest_first(
        self, rows: list[StrategyRow], population_max: int, incoming: int, expected: list[str]
    ) -> None:
        """Retirement takes B before A before S, lowest IS Sharpe first, and never an incubator row."""
        assert to_retire(rows, population_max=population_max, incoming=incoming) == expected

    @pytest.mark.parametrize(("population_max", "incoming"), [(9, 0), (9, 5), (7, 3), (4, 2), (3, 1), (2, 0)])
    def test_population_stays_bounded(self, population_max: int, incoming: int) -> None:
        """While ranked rows remain, live rows minus the retired plus incoming fit in population_max."""
        retired = to_retire(MIXED, population_max=population_max, incoming=incoming)
        live_count = sum(r.rank != "graveyard" for r in MIXED)
        assert live_count - len(retired) + incoming <= population_max
        assert not {"i1", "i2", "g1", "g2"} & set(retired)


# -- parents from the store (issue 11: `live_strategies()` had no ORDER BY while breed() assumed best first;
#    with 20 parents inserted worst first, the worst got 66 children and the best none) ----------------------


def ranked_parents(count: int = 20) -> list[StrategyRow]:
    """`count` ranked strategies of EURUSD H1, WORST first: DSR and IS Sharpe ascend with the index.

    One family with a roomy parameter space, so that no parent's mutants run out of fresh rules.
    """
    return [
        dataclasses.replace(
            row_of(random_spec(random.Random(200 + i), "sma_cross", "EURUSD", "H1"), rank="B",
                   sharpe=0.2 + 0.05 * i),
            is_dsr=0.50 + 0.02 * i, is_trades=50, is_profit_factor=1.3, is_win_rate=0.4, is_max_drawdown=0.1,
        )
        for i in range(count)
    ]


def store_worst_first(path: Path) -> tuple[Store, list[StrategyRow]]:
    store = Store.open(path)
    rows = ranked_parents()
    for row in rows:  # worst first: the insertion order is the opposite of the merit order
        assert store.add_strategy(row)
    return store, rows


def assert_children_favour_the_best(picks: Counter[str | None], rows: list[StrategyRow]) -> None:
    """Most mutants come from the top five by DSR; the worst parents get almost none."""
    by_merit = [r.name for r in sorted(rows, key=lambda r: -(r.is_dsr or 0.0))]  # best first
    total = sum(picks[name] for name in by_merit)
    top5 = sum(picks[name] for name in by_merit[:5])
    bottom5 = sum(picks[name] for name in by_merit[-5:])
    assert total >= 100
    assert top5 >= 0.45 * total, (top5, total)
    assert bottom5 <= 0.05 * total, (bottom5, total)
    assert picks[by_merit[0]] >= 0.08 * total  # the best parent breeds (the old bug gave it none)
    assert picks[by_merit[-1]] <= 2  # the worst hardly ever (the old bug gave it 66)


class TestParentsFromTheStore:
    def test_best_live_orders_by_dsr_then_sharpe(self, tmp_path: Path) -> None:
        """Ranked strategies of one universe, by DSR, then IS Sharpe; null DSR last; nothing else."""
        store = Store.open(tmp_path / "school.db")
        spec = StrategySpec("donchian_breakout", {"period": 20}, "EURUSD", "H1")

        def add(name: str, rank: str, dsr: float | None, sharpe: float | None, symbol: str = "EURUSD") -> None:
            row = dataclasses.replace(row_of(spec, rank=rank, sharpe=sharpe), name=name, rules_hash=f"h-{name}",
                                      symbol=symbol, is_dsr=dsr)
            assert store.add_strategy(row)

        add("oldest-worst", "B", 0.10, 0.3)
        add("no-dsr", "S", None, 9.0)
        add("tie-low-sharpe", "A", 0.90, 0.5)
        add("tie-high-sharpe", "B", 0.90, 1.5)
        add("best", "A", 0.99, 0.2)
        add("dead", "graveyard", 0.999, 5.0)
        add("new", "incubator", 0.999, 5.0)
        add("other-universe", "S", 0.999, 5.0, symbol="GBPUSD")
        names = [r.name for r in store.best_live("EURUSD", "H1", 50)]
        assert names == ["best", "tie-high-sharpe", "tie-low-sharpe", "oldest-worst", "no-dsr"]
        assert [r.name for r in store.best_live("EURUSD", "H1", 2)] == ["best", "tie-high-sharpe"]

    @pytest.mark.parametrize("seed", SEEDS)
    def test_parents_inserted_worst_first_breed_from_the_best(self, tmp_path: Path, seed: int) -> None:
        """breed() with store.best_live's parents: the top by DSR get most children, the worst few or none."""
        store, rows = store_worst_first(tmp_path / "school.db")
        parents = store.best_live("EURUSD", "H1", 50)
        assert [p.name for p in parents] == [r.name for r in reversed(rows)]
        children = breed(random.Random(seed), parents=parents, existing_hashes={r.rules_hash for r in rows},
                         count=300, mutate_share=1.0, symbols=("EURUSD",), timeframe="H1")
        assert len(children) == 300
        assert_children_favour_the_best(Counter(c.parent for c in children), rows)

    @pytest.mark.parametrize("seed", [0, 1])
    def test_the_school_breeds_from_the_best(self, tmp_path: Path, seed: int) -> None:
        """A School cycle on that store: the children it stores (parent column) descend mostly from the best."""
        kit = make_kit(tmp_path, {"school": {"breed_per_cycle": 400, "population_max": 5000}})
        rows = ranked_parents()
        for row in rows:
            assert kit.store.add_strategy(row)
        school = School(kit.cfg, kit.store, kit.client, kit.emit, kit.clock, rng=random.Random(seed),
                        workers_ready=lambda: True)
        ts = np.arange(1_700_000_000, 1_700_000_000 + 3000 * 3600, 3600, dtype=np.int64)
        school._windows[("EURUSD", "H1")] = DataWindow(int(ts[2000]), ts[:2000])
        school.cycle()
        children = [r for r in kit.store.live_strategies() if r.rank == "incubator"]
        assert len(children) == 400
        assert {r.name for r in kit.store.live_strategies()} >= {r.name for r in rows}  # no parent was retired
        picks = Counter(r.parent for r in children if r.parent is not None)
        assert 150 <= sum(picks.values()) <= 250  # about half mutants (the school's mutate_share)
        assert_children_favour_the_best(picks, rows)
