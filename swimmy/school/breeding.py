"""Breeding (SPEC §5): new strategies, random or mutated from the best, and who retires. Pure.

Every random draw comes from the `random.Random` the caller injects, so a seeded
generator reproduces a batch exactly. Children never repeat an existing strategy's
rules (SPEC §5: two strategies with identical rules never coexist).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from swimmy.backtest.strategies import (  # PARAM_SPACE: what breeding draws from, defined with the families
    CROSS_FAMILIES,
    FAMILIES,
    PARAM_SPACE,
    ParamRange,
    StrategySpec,
    spec_of,
    validate,
)
from swimmy.school.ranks import worst_first_key

if TYPE_CHECKING:  # the store imports sqlite3, which decision code must not load
    from swimmy.store import StrategyRow


# Stop-loss / take-profit choices in pips; 0 = none.
STOP_PIPS: Final = (0.0, 20.0, 30.0, 50.0, 80.0)
_STOPS: Final = ("sl_pips", "tp_pips")
# A mutation moves a param by up to a tenth of its range (at least one grid step).
_NUDGE_SHARE: Final = 10
# Parents are picked by a tournament of this size: the best of N uniform draws, so the top is favoured.
_TOURNAMENT: Final = 3


@dataclass(frozen=True)
class Child:
    """A new strategy: its rules, its generation (parent's + 1; 0 when random) and its parent's name."""

    spec: StrategySpec
    generation: int
    parent: str | None


def random_spec(rng: random.Random, family: str, symbol: str, timeframe: str) -> StrategySpec:
    """A valid spec of `family` with params drawn uniformly from PARAM_SPACE and stops from STOP_PIPS."""
    if family not in PARAM_SPACE:
        raise ValueError(f"unknown strategy family {family!r}; known: {', '.join(PARAM_SPACE)}")
    space = PARAM_SPACE[family]
    params: dict[str, float] = {}
    if family in CROSS_FAMILIES:
        # slow first, then fast below it: always feasible since slow's low (10) exceeds fast's (3).
        params["slow"] = _draw(rng, space["slow"])
        fast = space["fast"]
        params["fast"] = _draw(rng, fast._replace(high=min(fast.high, params["slow"] - 1)))
    else:
        params = {key: _draw(rng, r) for key, r in space.items()}
    spec = StrategySpec(family, params, symbol, timeframe, rng.choice(STOP_PIPS), rng.choice(STOP_PIPS))
    validate(spec)
    return spec


def mutate(rng: random.Random, parent: StrategySpec) -> StrategySpec:
    """The parent with one or two genes (params, sl_pips, tp_pips) nudged; same market, still valid.

    A param moves by a few grid steps, reflected at the range's ends and snapped to the grid;
    a stop moves to a neighbouring STOP_PIPS value. In a cross family the gene that was not
    mutated gives way so that fast < slow holds. Genes not chosen keep the parent's value,
    even one outside PARAM_SPACE (a hand-written strategy).
    """
    space = PARAM_SPACE[parent.family]
    genes = [*space, *_STOPS]
    chosen = rng.sample(genes, rng.choice((1, 2)))
    params = dict(parent.params)
    stops = {"sl_pips": parent.sl_pips, "tp_pips": parent.tp_pips}
    for gene in chosen:
        if gene in stops:
            stops[gene] = _nudge_stop(rng, stops[gene])
        else:
            params[gene] = _nudge(rng, params[gene], space[gene])
    if parent.family in CROSS_FAMILIES and params["fast"] >= params["slow"]:
        if "slow" in chosen and "fast" not in chosen:
            params["fast"] = params["slow"] - 1  # slow >= 10, so fast stays >= 9
        else:
            params["slow"] = params["fast"] + 1  # fast <= 50, so slow stays <= 51
    spec = StrategySpec(parent.family, params, parent.symbol, parent.timeframe, stops["sl_pips"], stops["tp_pips"])
    validate(spec)
    return spec


def breed(
    rng: random.Random,
    *,
    parents: Sequence[StrategyRow],
    existing_hashes: Collection[str],
    count: int,
    symbols: Sequence[str],
    timeframe: str,
    mutate_share: float = 0.5,
    max_tries: int = 50,
) -> list[Child]:
    """Up to `count` children whose rules match no existing strategy and no sibling.

    `parents` come best first; `round(count * mutate_share)` children are mutants of parents
    picked with a bias to the top, the rest random over FAMILIES and `symbols`. Only parents
    on the configured market (a symbol in `symbols`, `timeframe`) breed, since their data is
    the data the school has. Each child gets `max_tries` draws; a slot still colliding after
    that is dropped, so an exhausted space yields fewer children, never an endless loop.
    """
    if count < 0 or max_tries < 1 or not 0 <= mutate_share <= 1:
        raise ValueError(
            f"breed: need count >= 0, max_tries >= 1 and 0 <= mutate_share <= 1, "
            f"got {count}, {max_tries} and {mutate_share}"
        )
    if not symbols:
        raise ValueError("breed: no symbols to breed for")
    pool = [p for p in parents if p.symbol in symbols and p.timeframe == timeframe and p.family in PARAM_SPACE]
    mutants = round(count * mutate_share) if pool else 0
    families = list(FAMILIES)
    seen: set[str] = set()  # the siblings' hashes; existing_hashes is not copied (it grows with the graveyard)
    children: list[Child] = []
    for slot in range(count):
        for _ in range(max_tries):
            if slot < mutants:
                row = pool[min(rng.randrange(len(pool)) for _ in range(_TOURNAMENT))]
                child = Child(mutate(rng, spec_of(row)), row.generation + 1, row.name)
            else:
                spec = random_spec(rng, rng.choice(families), rng.choice(symbols), timeframe)
                child = Child(spec, 0, None)
            rules_hash = child.spec.rules_hash()
            if rules_hash not in seen and rules_hash not in existing_hashes:
                seen.add(rules_hash)
                children.append(child)
                break
    return children


def to_retire(rows: Sequence[StrategyRow], *, population_max: int, incoming: int) -> list[str]:
    """Names to move to the graveyard, weakest first, so that live rows + `incoming` <= `population_max`.

    Live means any rank but graveyard. Incubator rows still wait for their IS result and are
    never retired, so when they alone overflow the bound fewer names come back than needed:
    the caller should then breed no more than `population_max` minus what stays live.
    """
    live = [r for r in rows if r.rank != "graveyard"]
    excess = len(live) + incoming - population_max
    if excess <= 0:
        return []
    ranked = sorted((r for r in live if r.rank != "incubator"), key=worst_first_key)
    return [r.name for r in ranked[:excess]]


def _grid_size(r: ParamRange) -> int:
    return round((r.high - r.low) / r.step) + 1


def _on_grid(value: float, r: ParamRange) -> float:
    """`value` clamped into the range and snapped to its grid, as an int for an int param."""
    index = min(max(round((value - r.low) / r.step), 0), _grid_size(r) - 1)
    snapped = r.low + index * r.step
    return int(snapped) if r.kind == "int" else round(snapped, 10)


def _draw(rng: random.Random, r: ParamRange) -> float:
    return _on_grid(r.low + rng.randrange(_grid_size(r)) * r.step, r)


def _nudge(rng: random.Random, value: float, r: ParamRange) -> float:
    delta = rng.randint(1, max(1, _grid_size(r) // _NUDGE_SHARE)) * r.step * rng.choice((-1, 1))
    moved = value + delta
    if not r.low <= moved <= r.high:
        moved = value - delta  # reflect off the end so the gene still changes
    return _on_grid(moved, r)


def _nudge_stop(rng: random.Random, value: float) -> float:
    nearest = min(range(len(STOP_PIPS)), key=lambda i: abs(STOP_PIPS[i] - value))
    index = nearest + rng.choice((-1, 1))
    if not 0 <= index < len(STOP_PIPS):
        index = nearest - (index - nearest)
    return STOP_PIPS[index]
