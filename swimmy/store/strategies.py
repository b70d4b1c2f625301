"""The strategies table: adding, listing and ranking strategies, and the school's candidate queries.

`holdout_recorded_at` and `holdout_hashes` read `holdout_splits` but stay beside `reevaluate_universe`: the
school's universes (swimmy/school/universes.py) use the three when a universe's data changes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from swimmy.errors import StoreError
from swimmy.store.connection import StoreBase, select
from swimmy.store.rows import IS_METRIC_KEYS, RANKS, StrategyRow, check, finite

_SAMPLED_RANKS: Final = ("incubator", "B", "A", "S", "graveyard")  # population_samples columns, in order

_STRATEGY_COLUMNS: Final = (
    "name",
    "rules_hash",
    "family",
    "params_json",
    "symbol",
    "timeframe",
    "sl_pips",
    "tp_pips",
    "generation",
    "parent",
    "rank",
    *(f"is_{key}" for key in IS_METRIC_KEYS),
    "oos_sharpe",
    "created_at",
    "updated_at",
    "wfv_decision",
    "is_dsr",
    "is_bars",
    "oos_psr",
    "oos_trades",
    "oos_decision",
    "oos_data_hash",
)


class StrategyQueries(StoreBase):
    """The queries on `strategies` (a part of Store)."""

    # -- strategies ------------------------------------------------------------

    def add_strategy(self, row: StrategyRow) -> bool:
        """Insert a strategy; False (nothing written) when one with the same rules_hash exists."""
        return self.add_strategies([row]) == 1

    def add_strategies(self, rows: list[StrategyRow]) -> int:
        """Insert strategies in one transaction, skipping rules that exist; how many were added."""
        for row in rows:
            check(row.rank, RANKS, "rank")
        marks = ", ".join("?" * len(_STRATEGY_COLUMNS))
        sql = (
            f"INSERT INTO strategies ({', '.join(_STRATEGY_COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT (rules_hash) DO NOTHING"
        )
        with self._write(f"add {len(rows)} strategies") as conn:
            try:
                return int(conn.executemany(sql, [_strategy_values(row) for row in rows]).rowcount)
            except sqlite3.IntegrityError as exc:
                clash = exc
            # One at a time, to name the strategy that clashed; the StoreError rolls the whole batch back.
            for row in rows:
                try:
                    conn.execute(sql, _strategy_values(row))
                except sqlite3.IntegrityError as exc:
                    raise StoreError(f"cannot add strategy {row.name}: {exc} (same name, different rules?)") from exc
            raise StoreError(f"cannot add {len(rows)} strategies: {clash}") from clash

    def get_strategy(self, name: str) -> StrategyRow | None:
        """The strategy called `name`, or None."""
        rows = self._read(select("strategies", _STRATEGY_COLUMNS) + " WHERE name = ?", (name,))
        return _strategy(rows[0]) if rows else None

    def list_strategies(self, rank: str | None = None, limit: int | None = None) -> list[StrategyRow]:
        """Strategies (of one rank, when given), best IS Sharpe first, unknown Sharpe last."""
        sql = select("strategies", _STRATEGY_COLUMNS)
        params: list[object] = []
        if rank is not None:
            check(rank, RANKS, "rank")
            sql += " WHERE rank = ?"
            params.append(rank)
        sql += " ORDER BY is_sharpe IS NULL, is_sharpe DESC, name"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_strategy(r) for r in self._read(sql, params)]

    def best_ranked(self, limit: int) -> list[StrategyRow]:
        """The best live strategies: S, then A, then B; within a rank the highest DSR, then IS Sharpe, first."""
        sql = (select("strategies", _STRATEGY_COLUMNS) + " WHERE rank IN ('S', 'A', 'B') ORDER BY"
               " CASE rank WHEN 'S' THEN 0 WHEN 'A' THEN 1 ELSE 2 END, is_dsr IS NULL, is_dsr DESC,"
               " is_sharpe IS NULL, is_sharpe DESC, name LIMIT ?")
        return [_strategy(r) for r in self._read(sql, (limit,))]

    def add_population_sample(self, at: float, counts: Mapping[str, int], keep_sec: float) -> None:
        """Record the population by rank at `at`; forget samples older than `keep_sec` before it."""
        with self._write("record a population sample") as conn:
            conn.execute("INSERT OR REPLACE INTO population_samples (at, incubator, b, a, s, graveyard)"
                         " VALUES (?, ?, ?, ?, ?, ?)", (at, *(int(counts.get(r, 0)) for r in _SAMPLED_RANKS)))
            conn.execute("DELETE FROM population_samples WHERE at < ?", (at - keep_sec,))

    def population_samples(self, since: float) -> list[tuple[float, dict[str, int]]]:
        """The population samples from `since` on, oldest first: (at, counts by rank)."""
        rows = self._read("SELECT at, incubator, b, a, s, graveyard FROM population_samples WHERE at >= ?"
                          " ORDER BY at", (since,))
        return [(float(r[0]), dict(zip(_SAMPLED_RANKS, (int(n) for n in r[1:]), strict=True))) for r in rows]

    def count_by_rank(self) -> dict[str, int]:
        """How many strategies hold each rank (every rank present, 0 when empty)."""
        counts = dict.fromkeys(RANKS, 0)
        for rank, n in self._read("SELECT rank, COUNT(*) FROM strategies GROUP BY rank"):
            counts[str(rank)] = int(n)
        return counts

    def record_is_result(self, name: str, metrics: Mapping[str, float | int | None], rank: str, now: float) -> None:
        """Store an IS backtest's metrics (keys as in BACKTEST_RESULT; missing or non-finite = NULL) and the rank."""
        check(rank, RANKS, "rank")
        sets = ", ".join(f"is_{key} = ?" for key in IS_METRIC_KEYS)
        values = [finite(metrics.get(key)) for key in IS_METRIC_KEYS]
        self._update_strategy(name, f"{sets}, rank = ?, updated_at = ?", [*values, rank, now])

    def record_is_results(self, results: Sequence[tuple[str, Mapping[str, float | int | None], str]],
                          now: float) -> None:
        """Many IS results (name, metrics, rank) in one transaction: the school's writes at full pace."""
        if not results:
            return
        keys = (*IS_METRIC_KEYS, "dsr", "bars")  # the school adds `dsr` and `bars` to the worker's metrics
        sets = ", ".join(f"is_{key} = ?" for key in keys)
        # Only while still in the incubator: a late duplicate answer can't bring a retired strategy back.
        sql = f"UPDATE strategies SET {sets}, rank = ?, updated_at = ? WHERE name = ? AND rank = 'incubator'"
        for _, _, rank in results:
            check(rank, RANKS, "rank")
        with self._write(f"record {len(results)} IS results") as conn:
            conn.executemany(sql, [[*(finite(m.get(k)) for k in keys), rank, now, name]
                                   for name, m, rank in results])

    def set_ranks(self, changes: list[tuple[str, str]], now: float) -> None:
        """Move many strategies (name, rank) in one transaction."""
        if not changes:
            return
        for _, rank in changes:
            check(rank, RANKS, "rank")
        with self._write(f"set {len(changes)} ranks") as conn:
            conn.executemany("UPDATE strategies SET rank = ?, updated_at = ? WHERE name = ?",
                             [(rank, now, name) for name, rank in changes])

    def set_ranks_if(self, changes: list[tuple[str, str]], only_from: str, now: float) -> int:
        """Move many strategies (name, rank) in one transaction, each only if it still holds `only_from`; how many."""
        if not changes:
            return 0
        for _, rank in changes:
            check(rank, RANKS, "rank")
        with self._write(f"set {len(changes)} ranks") as conn:
            cur = conn.executemany("UPDATE strategies SET rank = ?, updated_at = ? WHERE name = ? AND rank = ?",
                                   [(rank, now, name, only_from) for name, rank in changes])
            return int(cur.rowcount)

    def awaiting_is_for(self, symbol: str, timeframe: str, limit: int,
                        exclude: Collection[str] = ()) -> list[StrategyRow]:
        """Incubator strategies of one universe not in `exclude`, oldest first."""
        rows = self._read(select("strategies", _STRATEGY_COLUMNS) + " WHERE rank = 'incubator' AND symbol = ?"
                          " AND timeframe = ? ORDER BY created_at, name LIMIT ?", (symbol, timeframe,
                                                                                  limit + len(exclude)))
        return [r for r in (_strategy(x) for x in rows) if r.name not in exclude][:limit]

    def incubator_outside(self, universes: Collection[tuple[str, str]], limit: int = 1000) -> list[StrategyRow]:
        """Incubator strategies whose (symbol, timeframe) is not one of `universes` (no usable data for them)."""
        sql = select("strategies", _STRATEGY_COLUMNS) + " WHERE rank = 'incubator'"
        params: list[object] = []
        for symbol, timeframe in universes:
            sql += " AND NOT (symbol = ? AND timeframe = ?)"
            params += [symbol, timeframe]
        return [_strategy(r) for r in self._read(sql + " LIMIT ?", [*params, limit])]

    def best_live(self, symbol: str, timeframe: str, limit: int) -> list[StrategyRow]:
        """Ranked (B/A/S) strategies of one universe, best first: by DSR, then IS Sharpe (the breeding parents)."""
        sql = (select("strategies", _STRATEGY_COLUMNS) + " WHERE rank IN ('B', 'A', 'S') AND symbol = ?"
               " AND timeframe = ? ORDER BY is_dsr IS NULL, is_dsr DESC, is_sharpe IS NULL, is_sharpe DESC, name"
               " LIMIT ?")
        return [_strategy(r) for r in self._read(sql, (symbol, timeframe, limit))]

    def set_rank(self, name: str, rank: str, now: float) -> None:
        """Move a strategy to `rank`."""
        check(rank, RANKS, "rank")
        self._update_strategy(name, "rank = ?, updated_at = ?", [rank, now])

    def reevaluate_universe(self, symbol: str, timeframe: str, now: float) -> list[tuple[str, str]]:
        """New data: every ranked strategy of the universe goes back to the incubator, its verdicts cleared.

        Its IS figures, holdout verdict and walk-forward were measured on data that is no longer the
        universe's; the school runs it again on the new data and ranks it from there. Returns (name, old
        rank) of each, in one transaction.
        """
        with self._write(f"re-evaluate {symbol} {timeframe} on new data") as conn:
            rows = conn.execute("SELECT name, rank FROM strategies WHERE symbol = ? AND timeframe = ?"
                                " AND rank IN ('B', 'A', 'S')", (symbol, timeframe)).fetchall()
            names = [(str(r[0]),) for r in rows]
            conn.executemany("UPDATE strategies SET rank = 'incubator', oos_sharpe = NULL, oos_psr = NULL,"
                             " oos_trades = NULL, oos_decision = NULL, oos_data_hash = NULL, wfv_decision = NULL,"
                             " updated_at = ? WHERE name = ?", [(now, n) for (n,) in names])
            conn.executemany("DELETE FROM oos_queue WHERE strategy = ?", names)
        return [(str(r[0]), str(r[1])) for r in rows]

    def holdout_recorded_at(self, universe: str, data_hash: str) -> float | None:
        """When this data was first taken in for the universe (its split recorded), or None."""
        rows = self._read("SELECT recorded_at FROM holdout_splits WHERE universe = ? AND data_hash = ?",
                          (universe, data_hash))
        return float(rows[0][0]) if rows else None

    def holdout_hashes(self, universe: str) -> list[str]:
        """The data hashes whose holdout split was recorded for this universe (the data it has seen)."""
        return [str(r[0]) for r in self._read("SELECT data_hash FROM holdout_splits WHERE universe = ?",
                                              (universe,))]

    def set_oos_sharpe(self, name: str, oos_sharpe: float | None, now: float) -> None:
        """Store (or forget, with None) a strategy's OOS Sharpe."""
        self._update_strategy(name, "oos_sharpe = ?, updated_at = ?", [finite(oos_sharpe), now])

    def set_wfv_decision(self, name: str, decision: str | None, now: float) -> None:
        """Store a strategy's latest WFV verdict (validated / overfit / weak / error)."""
        self._update_strategy(name, "wfv_decision = ?, updated_at = ?", [decision, now])

    def oos_candidates(self, *, min_trades: int, sharpe: float, profit_factor: float, win_rate: float,
                       max_drawdown: float, limit: int, dsr: float = 0.0) -> list[StrategyRow]:
        """Ranked strategies that meet A's IS criteria (DSR as last stored) without a holdout verdict, best first."""
        # INDEXED BY: without statistics the planner prefers the rank index and sorts every B/A/S row.
        sql = (
            select("strategies INDEXED BY strategies_oos_candidates", _STRATEGY_COLUMNS)
            + " WHERE rank IN ('B', 'A', 'S') AND oos_sharpe IS NULL AND oos_decision IS NULL AND is_trades >= ?"
            " AND is_sharpe >= ? AND is_profit_factor >= ? AND is_win_rate >= ? AND is_max_drawdown < ?"
            + (" AND is_dsr >= ?" if dsr > 0 else "")
            + " ORDER BY is_dsr IS NULL, is_dsr DESC, is_sharpe DESC, name LIMIT ?"
        )
        params: list[object] = [min_trades, sharpe, profit_factor, win_rate, max_drawdown]
        if dsr > 0:
            params.append(dsr)
        return [_strategy(r) for r in self._read(sql, (*params, limit))]

    def wfv_candidates(self, limit: int, exclude: Collection[str] = (), min_dsr: float = 0.0,
                       holdout_passed: bool = False) -> list[StrategyRow]:
        """Strategies ranked B, A or S without a WFV result and not in `exclude`, best DSR (then IS Sharpe) first."""
        skip = f" AND name NOT IN ({', '.join('?' * len(exclude))})" if exclude else ""
        sql = (
            select("strategies INDEXED BY strategies_wfv_candidates", _STRATEGY_COLUMNS)
            + f" WHERE rank IN ('B', 'A', 'S') AND wfv_decision IS NULL{skip}"
            + (" AND is_dsr >= ?" if min_dsr > 0 else "")
            + (" AND oos_decision = 'pass'" if holdout_passed else "")
            + " ORDER BY is_dsr IS NULL, is_dsr DESC, is_sharpe DESC, name LIMIT ?"
        )
        params = [*exclude, *([min_dsr] if min_dsr > 0 else []), limit]
        return [_strategy(r) for r in self._read(sql, params)]

    def awaiting_is(self, limit: int) -> list[StrategyRow]:
        """Incubator strategies (no IS result yet), oldest first."""
        sql = select("strategies", _STRATEGY_COLUMNS) + " WHERE rank = 'incubator' ORDER BY created_at, name LIMIT ?"
        return [_strategy(r) for r in self._read(sql, (limit,))]

    def live_strategies(self) -> list[StrategyRow]:
        """Every strategy not in the graveyard (the population the school bounds)."""
        sql = select("strategies", _STRATEGY_COLUMNS) + " WHERE rank != 'graveyard'"
        return [_strategy(r) for r in self._read(sql)]

    def prune_graveyard(self, keep: int) -> int:
        """Delete the oldest graveyard strategies beyond `keep` (their queue rows and runs go with them)."""
        with self._write("prune the graveyard") as conn:
            cur = conn.execute(
                "DELETE FROM strategies WHERE name IN (SELECT name FROM strategies WHERE rank = 'graveyard'"
                " ORDER BY updated_at DESC, name LIMIT -1 OFFSET ?)",
                (keep,),
            )
            return int(cur.rowcount)

    def rules_hashes(self) -> set[str]:
        """Every rules_hash in the store (graveyard included): what breeding must not repeat."""
        return {str(r[0]) for r in self._read("SELECT rules_hash FROM strategies")}


def _strategy_values(row: StrategyRow) -> tuple[object, ...]:
    return (
        row.name,
        row.rules_hash,
        row.family,
        json.dumps(row.params, sort_keys=True),
        row.symbol,
        row.timeframe,
        row.sl_pips,
        row.tp_pips,
        row.generation,
        row.parent,
        row.rank,
        *(finite(getattr(row, f"is_{key}")) for key in IS_METRIC_KEYS),
        finite(row.oos_sharpe),
        row.created_at,
        row.updated_at,
        row.wfv_decision,
        finite(row.is_dsr),
        row.is_bars,
        finite(row.oos_psr),
        row.oos_trades,
        row.oos_decision,
        row.oos_data_hash,
    )


def _strategy(r: tuple[Any, ...]) -> StrategyRow:
    values = dict(zip(_STRATEGY_COLUMNS, r, strict=True))
    params = json.loads(values.pop("params_json"))
    return StrategyRow(params=params, **values)
