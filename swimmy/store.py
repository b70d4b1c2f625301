"""The strategy store: one SQLite file, schema migrations and typed queries.

This is the only module that imports sqlite3. The daemon is the only writer (it
holds `<db_path>.lock`, taken elsewhere); the CLI reads through read-only
connections, which WAL mode lets run while the daemon writes.

Schema history (`PRAGMA user_version`):

- v1: `strategies` and `oos_queue`. An errored OOS request was retried after a
  backoff the daemon derived from `attempts` alone.
- v2: adds the `wfv_runs` table (walk-forward runs persisted with
  `started_at`, so pending entries survive a restart and can expire) and the
  `oos_queue.backoff_sec` column (the backoff in force is stored, not guessed).
- v3: `strategies.wfv_decision` (the latest WFV verdict, so "no WFV
  result yet" is an indexed column, not a scan of `wfv_runs`) and two partial
  indexes in candidate order for the school's OOS and WFV queries.
- v4 (current): the trials ledger (`trials`, `trial_totals`), the holdout split per
  data hash with its looks (`holdout_splits`), walk-forward folds (`wfv_folds`; `wfv_runs`
  gains `kind`, old rows stay readable as `single_split`), the PBO audits (`audits`),
  and the figures the honest gates need (`is_dsr`, `is_skew`, `is_kurtosis`,
  `is_sharpe_per_bar`, `is_bars`, `oos_psr`, `oos_trades`, `oos_decision`). The old
  single-split WFV verdicts are cleared from `strategies.wfv_decision` (their runs stay),
  so every ranked strategy gets a real walk-forward.

A migration is one entry of `_MIGRATIONS` (index i takes a file from version i
to i + 1) and runs in one transaction together with its `user_version` bump,
so a crash mid-migration leaves the file at the old version. Migrations are
append-only: an existing entry is never edited, since files in the field were
made by it. A file whose version is newer than this code knows is refused and
never touched.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from swimmy.errors import StoreError

RANKS: Final = ("incubator", "B", "A", "S", "graveyard")
OOS_STATUSES: Final = ("sent", "retry", "error", "done")
WFV_STATUSES: Final = ("pending", "done", "timeout", "error")

# Keys of a BACKTEST_RESULT's `metrics` object, stored in `strategies.is_<key>`.
IS_METRIC_KEYS: Final = (
    "trades",
    "sharpe",
    "profit_factor",
    "win_rate",
    "max_drawdown",
    "sortino",
    "psr",
    "pnl_pips",
    "skew",
    "kurtosis",
    "sharpe_per_bar",
)

BUSY_TIMEOUT_MS: Final = 5000
TRIAL_HASH_CHARS: Final = 16
WAL_LIMIT_BYTES: Final = 64 * 1024 * 1024

_V1: Final = (
    """
    CREATE TABLE strategies (
        name TEXT PRIMARY KEY,
        rules_hash TEXT NOT NULL UNIQUE,
        family TEXT NOT NULL,
        params_json TEXT NOT NULL,
        symbol TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        sl_pips REAL NOT NULL DEFAULT 0,
        tp_pips REAL NOT NULL DEFAULT 0,
        generation INTEGER NOT NULL DEFAULT 0,
        parent TEXT NULL,
        rank TEXT NOT NULL DEFAULT 'incubator'
            CHECK (rank IN ('incubator', 'B', 'A', 'S', 'graveyard')),
        is_trades INTEGER NULL,
        is_sharpe REAL NULL,
        is_profit_factor REAL NULL,
        is_win_rate REAL NULL,
        is_max_drawdown REAL NULL,
        is_sortino REAL NULL,
        is_psr REAL NULL,
        is_pnl_pips REAL NULL,
        oos_sharpe REAL NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    "CREATE INDEX strategies_rank ON strategies (rank)",
    "CREATE INDEX strategies_is_sharpe ON strategies (is_sharpe)",
    """
    CREATE TABLE oos_queue (
        strategy TEXT PRIMARY KEY REFERENCES strategies (name) ON DELETE CASCADE,
        request_id TEXT NOT NULL,
        requested_at REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('sent', 'retry', 'error', 'done')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NULL
    )
    """,
)

_V2: Final = (
    "ALTER TABLE oos_queue ADD COLUMN backoff_sec REAL NULL",
    """
    CREATE TABLE wfv_runs (
        wfv_id TEXT PRIMARY KEY,
        strategy TEXT NOT NULL REFERENCES strategies (name) ON DELETE CASCADE,
        started_at REAL NOT NULL,
        trigger TEXT NOT NULL,
        split_ratio REAL NOT NULL,
        is_request_id TEXT NULL,
        oos_request_id TEXT NULL,
        is_sharpe REAL NULL,
        oos_sharpe REAL NULL,
        is_status TEXT NULL,
        oos_status TEXT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'timeout', 'error')),
        decision TEXT NULL,
        required_oos REAL NULL,
        degradation REAL NULL,
        finished_at REAL NULL
    )
    """,
    "CREATE INDEX wfv_runs_status_started ON wfv_runs (status, started_at)",
)

_V3: Final = (
    "ALTER TABLE strategies ADD COLUMN wfv_decision TEXT NULL",
    # Partial indexes in candidate order: the school's two queries walk them best first and stop at
    # their LIMIT, so a tick costs the same at 1,000 strategies as at 100,000 (bench/school_bench.py).
    "CREATE INDEX strategies_oos_candidates ON strategies (is_sharpe DESC, name)"
    " WHERE rank IN ('B', 'A', 'S') AND oos_sharpe IS NULL",
    "CREATE INDEX strategies_wfv_candidates ON strategies (is_sharpe DESC, name)"
    " WHERE rank IN ('B', 'A', 'S') AND wfv_decision IS NULL",
)

_V4: Final = (
    "ALTER TABLE strategies ADD COLUMN is_skew REAL NULL",
    "ALTER TABLE strategies ADD COLUMN is_kurtosis REAL NULL",
    "ALTER TABLE strategies ADD COLUMN is_sharpe_per_bar REAL NULL",
    "ALTER TABLE strategies ADD COLUMN is_dsr REAL NULL",
    "ALTER TABLE strategies ADD COLUMN is_bars INTEGER NULL",
    "ALTER TABLE strategies ADD COLUMN oos_psr REAL NULL",
    "ALTER TABLE strategies ADD COLUMN oos_trades INTEGER NULL",
    "ALTER TABLE strategies ADD COLUMN oos_decision TEXT NULL",
    "UPDATE strategies SET wfv_decision = NULL",
    # The old OOS Sharpe was measured on a 90-day window that is not the new holdout: a fresh look decides.
    "UPDATE strategies SET oos_sharpe = NULL",
    "CREATE INDEX strategies_parents ON strategies (symbol, timeframe, is_dsr DESC, is_sharpe DESC)"
    " WHERE rank IN ('B', 'A', 'S')",
    """
    CREATE TABLE trials (
        id INTEGER PRIMARY KEY,
        universe TEXT NOT NULL,
        rules_hash TEXT NOT NULL,
        family TEXT NOT NULL,
        generation INTEGER NOT NULL,
        sharpe_per_bar REAL NULL,
        skew REAL NULL,
        kurtosis REAL NULL,
        bars INTEGER NOT NULL,
        recorded_at REAL NOT NULL,
        sketch BLOB NULL
    )
    """,
    "CREATE UNIQUE INDEX trials_rules ON trials (universe, rules_hash)",
    """
    CREATE TABLE trial_totals (
        universe TEXT PRIMARY KEY,
        trials INTEGER NOT NULL DEFAULT 0,
        pruned INTEGER NOT NULL DEFAULT 0,
        n_eff REAL NULL,
        rho_bar REAL NULL,
        updated_at REAL NULL,
        aggregate BLOB NULL
    )
    """,
    """
    CREATE TABLE holdout_splits (
        universe TEXT NOT NULL,
        data_hash TEXT NOT NULL,
        oos_start INTEGER NOT NULL,
        window_fraction REAL NOT NULL,
        min_window_days INTEGER NOT NULL,
        looks INTEGER NOT NULL DEFAULT 0,
        worn_reported INTEGER NOT NULL DEFAULT 0,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (universe, data_hash)
    )
    """,
    "ALTER TABLE wfv_runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'single_split'",
    "ALTER TABLE wfv_runs ADD COLUMN summary_json TEXT NULL",
    """
    CREATE TABLE wfv_folds (
        wfv_id TEXT NOT NULL REFERENCES wfv_runs (wfv_id) ON DELETE CASCADE,
        fold INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        request_json TEXT NOT NULL,
        status TEXT NULL,
        result_json TEXT NULL,
        PRIMARY KEY (wfv_id, fold)
    )
    """,
    """
    CREATE TABLE audits (
        universe TEXT NOT NULL,
        at REAL NOT NULL,
        strategies INTEGER NOT NULL,
        pbo REAL NULL,
        trials INTEGER NOT NULL,
        n_eff REAL NULL,
        sr0 REAL NULL
    )
    """,
    "CREATE INDEX audits_universe_at ON audits (universe, at)",
)

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


@dataclass(frozen=True)
class StrategyRow:
    """One strategy: its rules, its rank and what its backtests measured (None = not known)."""

    name: str
    rules_hash: str
    family: str
    params: dict[str, Any]
    symbol: str
    timeframe: str
    sl_pips: float = 0.0
    tp_pips: float = 0.0
    generation: int = 0
    parent: str | None = None
    rank: str = "incubator"
    is_trades: int | None = None
    is_sharpe: float | None = None
    is_profit_factor: float | None = None
    is_win_rate: float | None = None
    is_max_drawdown: float | None = None
    is_sortino: float | None = None
    is_psr: float | None = None
    is_pnl_pips: float | None = None
    is_skew: float | None = None
    is_kurtosis: float | None = None
    is_sharpe_per_bar: float | None = None
    oos_sharpe: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    wfv_decision: str | None = None
    is_dsr: float | None = None
    is_bars: int | None = None
    oos_psr: float | None = None
    oos_trades: int | None = None
    oos_decision: str | None = None

    @property
    def is_metrics(self) -> dict[str, float | int | None]:
        """The IS metrics keyed as in a BACKTEST_RESULT (`sharpe`, `trades`, ...), plus `dsr`."""
        out = {key: getattr(self, f"is_{key}") for key in IS_METRIC_KEYS}
        out["dsr"] = self.is_dsr
        return out


@dataclass(frozen=True)
class TrialRow:
    """One trial of the ledger: a distinct rule set's IS figures and its returns sketch (float32 sums, sumsqs)."""

    universe: str
    rules_hash: str
    family: str
    generation: int
    sharpe_per_bar: float | None
    skew: float | None
    kurtosis: float | None
    bars: int
    recorded_at: float
    sketch: bytes | None = None  # float32 block sums then block sums of squares (swimmy/school/ledger.py)


@dataclass(frozen=True)
class OosRow:
    """The OOS queue entry of one strategy: its latest request and how it went."""

    strategy: str
    request_id: str
    requested_at: float
    status: str
    attempts: int = 0
    last_error: str | None = None
    backoff_sec: float | None = None


@dataclass(frozen=True)
class WfvRow:
    """One walk-forward run: its two parts, and the decision once both are in."""

    wfv_id: str
    strategy: str
    started_at: float
    trigger: str
    split_ratio: float
    is_request_id: str | None = None
    oos_request_id: str | None = None
    is_sharpe: float | None = None
    oos_sharpe: float | None = None
    is_status: str | None = None
    oos_status: str | None = None
    status: str = "pending"
    decision: str | None = None
    required_oos: float | None = None
    degradation: float | None = None
    finished_at: float | None = None
    kind: str = "folds"  # "single_split": a run of the old single split (schema < 4), kept readable
    summary_json: str | None = None  # the walk-forward's figures (wf_sharpe, wf_psr, wfe, folds, ...)


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
)
_OOS_COLUMNS: Final = ("strategy", "request_id", "requested_at", "status", "attempts", "last_error", "backoff_sec")
_WFV_COLUMNS: Final = tuple(f.name for f in fields(WfvRow))


def _select(table: str, columns: tuple[str, ...]) -> str:
    return f"SELECT {', '.join(columns)} FROM {table}"


def _finite(value: float | int | None) -> float | int | None:
    """A metric as stored: NaN and infinities are not numbers a reader can use, so they are NULL."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise StoreError(f"unknown {what} {value!r}: expected one of {', '.join(allowed)}")


class Store:
    """A connection to the strategy store; read-write (the daemon) or read-only (the CLI).

    Not safe for concurrent use from several threads; it may be handed from one thread to another.
    Build it with `Store.open` or `Store.open_readonly`.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool, schema_version: int) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self.readonly = readonly
        self.schema_version = schema_version

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"Store({str(self.path)!r}, {mode}, schema {self.schema_version})"

    # -- opening and closing -------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open read-write, creating the file or migrating it to the current schema."""
        with _errors(f"cannot open the store {path}"):
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            with _errors(f"cannot open the store {path}"):
                version = _prepare_readwrite(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, readonly=False, schema_version=version)

    @classmethod
    def open_readonly(cls, path: Path) -> Store:
        """Open for reading only; StoreError if the file is missing or not at the current schema."""
        if not path.is_file():
            raise StoreError(f"no store at {path}: the file does not exist (has the daemon run?)")
        uri = path.resolve().as_uri() + "?mode=ro"
        with _errors(f"cannot open the store {path} read-only"):
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            with _errors(f"cannot open the store {path} read-only"):
                version = _prepare_readonly(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, readonly=True, schema_version=version)

    def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        """The file's journal mode as SQLite reports it (`wal`)."""
        return str(self._read_one("PRAGMA journal_mode")[0])

    # -- strategies ------------------------------------------------------------

    def add_strategy(self, row: StrategyRow) -> bool:
        """Insert a strategy; False (nothing written) when one with the same rules_hash exists."""
        return self.add_strategies([row]) == 1

    def add_strategies(self, rows: list[StrategyRow]) -> int:
        """Insert strategies in one transaction, skipping rules that exist; how many were added."""
        for row in rows:
            _check(row.rank, RANKS, "rank")
        marks = ", ".join("?" * len(_STRATEGY_COLUMNS))
        sql = (
            f"INSERT INTO strategies ({', '.join(_STRATEGY_COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT (rules_hash) DO NOTHING"
        )
        added = 0
        with self._write(f"add {len(rows)} strategies") as conn:
            for row in rows:
                try:
                    added += conn.execute(sql, _strategy_values(row)).rowcount
                except sqlite3.IntegrityError as exc:
                    raise StoreError(f"cannot add strategy {row.name}: {exc} (same name, different rules?)") from exc
        return added

    def get_strategy(self, name: str) -> StrategyRow | None:
        """The strategy called `name`, or None."""
        rows = self._read(_select("strategies", _STRATEGY_COLUMNS) + " WHERE name = ?", (name,))
        return _strategy(rows[0]) if rows else None

    def list_strategies(self, rank: str | None = None, limit: int | None = None) -> list[StrategyRow]:
        """Strategies (of one rank, when given), best IS Sharpe first, unknown Sharpe last."""
        sql = _select("strategies", _STRATEGY_COLUMNS)
        params: list[object] = []
        if rank is not None:
            _check(rank, RANKS, "rank")
            sql += " WHERE rank = ?"
            params.append(rank)
        sql += " ORDER BY is_sharpe IS NULL, is_sharpe DESC, name"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_strategy(r) for r in self._read(sql, params)]

    def count_by_rank(self) -> dict[str, int]:
        """How many strategies hold each rank (every rank present, 0 when empty)."""
        counts = dict.fromkeys(RANKS, 0)
        for rank, n in self._read("SELECT rank, COUNT(*) FROM strategies GROUP BY rank"):
            counts[str(rank)] = int(n)
        return counts

    def record_is_result(self, name: str, metrics: Mapping[str, float | int | None], rank: str, now: float) -> None:
        """Store an IS backtest's metrics (keys as in BACKTEST_RESULT; missing or non-finite = NULL) and the rank."""
        _check(rank, RANKS, "rank")
        sets = ", ".join(f"is_{key} = ?" for key in IS_METRIC_KEYS)
        values = [_finite(metrics.get(key)) for key in IS_METRIC_KEYS]
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
            _check(rank, RANKS, "rank")
        with self._write(f"record {len(results)} IS results") as conn:
            conn.executemany(sql, [[*(_finite(m.get(k)) for k in keys), rank, now, name]
                                   for name, m, rank in results])

    def set_ranks(self, changes: list[tuple[str, str]], now: float) -> None:
        """Move many strategies (name, rank) in one transaction."""
        if not changes:
            return
        for _, rank in changes:
            _check(rank, RANKS, "rank")
        with self._write(f"set {len(changes)} ranks") as conn:
            conn.executemany("UPDATE strategies SET rank = ?, updated_at = ? WHERE name = ?",
                             [(rank, now, name) for name, rank in changes])

    def set_ranks_if(self, changes: list[tuple[str, str]], only_from: str, now: float) -> int:
        """Move many strategies (name, rank) in one transaction, each only if it still holds `only_from`; how many."""
        if not changes:
            return 0
        for _, rank in changes:
            _check(rank, RANKS, "rank")
        with self._write(f"set {len(changes)} ranks") as conn:
            cur = conn.executemany("UPDATE strategies SET rank = ?, updated_at = ? WHERE name = ? AND rank = ?",
                                   [(rank, now, name, only_from) for name, rank in changes])
            return int(cur.rowcount)

    def awaiting_is_for(self, symbol: str, timeframe: str, limit: int,
                        exclude: Collection[str] = ()) -> list[StrategyRow]:
        """Incubator strategies of one universe not in `exclude`, oldest first."""
        rows = self._read(_select("strategies", _STRATEGY_COLUMNS) + " WHERE rank = 'incubator' AND symbol = ?"
                          " AND timeframe = ? ORDER BY created_at, name LIMIT ?", (symbol, timeframe,
                                                                                  limit + len(exclude)))
        return [r for r in (_strategy(x) for x in rows) if r.name not in exclude][:limit]

    def incubator_outside(self, universes: Collection[tuple[str, str]], limit: int = 1000) -> list[StrategyRow]:
        """Incubator strategies whose (symbol, timeframe) is not one of `universes` (no usable data for them)."""
        sql = _select("strategies", _STRATEGY_COLUMNS) + " WHERE rank = 'incubator'"
        params: list[object] = []
        for symbol, timeframe in universes:
            sql += " AND NOT (symbol = ? AND timeframe = ?)"
            params += [symbol, timeframe]
        return [_strategy(r) for r in self._read(sql + " LIMIT ?", [*params, limit])]

    def best_live(self, symbol: str, timeframe: str, limit: int) -> list[StrategyRow]:
        """Ranked (B/A/S) strategies of one universe, best first: by DSR, then IS Sharpe (the breeding parents)."""
        sql = (_select("strategies", _STRATEGY_COLUMNS) + " WHERE rank IN ('B', 'A', 'S') AND symbol = ?"
               " AND timeframe = ? ORDER BY is_dsr IS NULL, is_dsr DESC, is_sharpe IS NULL, is_sharpe DESC, name"
               " LIMIT ?")
        return [_strategy(r) for r in self._read(sql, (symbol, timeframe, limit))]

    def set_rank(self, name: str, rank: str, now: float) -> None:
        """Move a strategy to `rank`."""
        _check(rank, RANKS, "rank")
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
                             " oos_trades = NULL, oos_decision = NULL, wfv_decision = NULL, updated_at = ?"
                             " WHERE name = ?", [(now, n) for (n,) in names])
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
        self._update_strategy(name, "oos_sharpe = ?, updated_at = ?", [_finite(oos_sharpe), now])

    def set_wfv_decision(self, name: str, decision: str | None, now: float) -> None:
        """Store a strategy's latest WFV verdict (validated / overfit / weak / error)."""
        self._update_strategy(name, "wfv_decision = ?, updated_at = ?", [decision, now])

    def oos_candidates(self, *, min_trades: int, sharpe: float, profit_factor: float, win_rate: float,
                       max_drawdown: float, limit: int, dsr: float = 0.0) -> list[StrategyRow]:
        """Ranked strategies that meet A's IS criteria (DSR as last stored) without a holdout verdict, best first."""
        # INDEXED BY: without statistics the planner prefers the rank index and sorts every B/A/S row.
        sql = (
            _select("strategies INDEXED BY strategies_oos_candidates", _STRATEGY_COLUMNS)
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
            _select("strategies INDEXED BY strategies_wfv_candidates", _STRATEGY_COLUMNS)
            + f" WHERE rank IN ('B', 'A', 'S') AND wfv_decision IS NULL{skip}"
            + (" AND is_dsr >= ?" if min_dsr > 0 else "")
            + (" AND oos_decision = 'pass'" if holdout_passed else "")
            + " ORDER BY is_dsr IS NULL, is_dsr DESC, is_sharpe DESC, name LIMIT ?"
        )
        params = [*exclude, *([min_dsr] if min_dsr > 0 else []), limit]
        return [_strategy(r) for r in self._read(sql, params)]

    def awaiting_is(self, limit: int) -> list[StrategyRow]:
        """Incubator strategies (no IS result yet), oldest first."""
        sql = _select("strategies", _STRATEGY_COLUMNS) + " WHERE rank = 'incubator' ORDER BY created_at, name LIMIT ?"
        return [_strategy(r) for r in self._read(sql, (limit,))]

    def live_strategies(self) -> list[StrategyRow]:
        """Every strategy not in the graveyard (the population the school bounds)."""
        sql = _select("strategies", _STRATEGY_COLUMNS) + " WHERE rank != 'graveyard'"
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

    def _update_strategy(self, name: str, sets: str, values: list[object]) -> None:
        with self._write(f"update strategy {name}") as conn:
            cur = conn.execute(f"UPDATE strategies SET {sets} WHERE name = ?", [*values, name])
            if cur.rowcount == 0:
                raise StoreError(f"no strategy named {name!r}")

    # -- the trials ledger ---------------------------------------------------------

    def add_trials(self, rows: Sequence[TrialRow]) -> int:
        """Record IS results as trials of their universe, once per rules hash; how many were new.

        The universe's total moves by the new ones only: a rule set tried again is not a new trial.
        """
        if not rows:
            return 0
        sql = ("INSERT INTO trials (universe, rules_hash, family, generation, sharpe_per_bar, skew, kurtosis, bars,"
               " recorded_at, sketch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
               " ON CONFLICT (universe, rules_hash) DO NOTHING")
        added: dict[str, int] = {}
        with self._write(f"record {len(rows)} trials") as conn:
            for r in rows:
                # 16 hex digits (64 bits) of the rules hash: a collision among 10^7 trials has odds of ~10^-5.
                cur = conn.execute(sql, (r.universe, r.rules_hash[:TRIAL_HASH_CHARS], r.family, r.generation,
                                         _finite(r.sharpe_per_bar), _finite(r.skew), _finite(r.kurtosis), r.bars,
                                         r.recorded_at, r.sketch))
                if cur.rowcount:
                    added[r.universe] = added.get(r.universe, 0) + 1
            for universe, n in added.items():
                conn.execute("INSERT INTO trial_totals (universe, trials) VALUES (?, ?) ON CONFLICT (universe)"
                             " DO UPDATE SET trials = trials + excluded.trials", (universe, n))
        return sum(added.values())

    def trial_totals(self, universe: str) -> tuple[int, float | None, float | None]:
        """(N trials counted, N_eff, mean correlation) of a universe; (0, None, None) before the first."""
        rows = self._read("SELECT trials, n_eff, rho_bar FROM trial_totals WHERE universe = ?", (universe,))
        if not rows:
            return 0, None, None
        return int(rows[0][0]), rows[0][1], rows[0][2]

    def set_n_eff(self, universe: str, n_eff: float, rho_bar: float | None, now: float,
                  aggregate: bytes | None = None) -> None:
        """Store a universe's latest N_eff estimate and the running aggregate it came from."""
        with self._write(f"set N_eff of {universe}") as conn:
            conn.execute("INSERT INTO trial_totals (universe, n_eff, rho_bar, updated_at, aggregate)"
                         " VALUES (?, ?, ?, ?, ?) ON CONFLICT (universe) DO UPDATE SET n_eff = excluded.n_eff,"
                         " rho_bar = excluded.rho_bar, updated_at = excluded.updated_at,"
                         " aggregate = excluded.aggregate", (universe, n_eff, _finite(rho_bar), now, aggregate))

    def trial_aggregate(self, universe: str) -> bytes | None:
        """The running aggregate of a universe's trials (swimmy/school/ledger.py), or None."""
        rows = self._read("SELECT aggregate FROM trial_totals WHERE universe = ?", (universe,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    def recent_trials(self, universe: str, limit: int) -> list[TrialRow]:
        """The newest trials of a universe (the recent window), newest first."""
        rows = self._read("SELECT universe, rules_hash, family, generation, sharpe_per_bar, skew, kurtosis, bars,"
                          " recorded_at, sketch FROM trials WHERE universe = ? ORDER BY id DESC LIMIT ?",
                          (universe, limit))
        return [TrialRow(*r) for r in rows]

    def sample_trials(self, universe: str, count: int, seed: int) -> list[TrialRow]:
        """`count` trials drawn at random from the universe's recent window (by id, reproducible by seed)."""
        # The first and last ids of the universe, read from each end of the rowid order (a few rows, not a scan).
        first = self._read("SELECT id FROM trials WHERE universe = ? ORDER BY id LIMIT 1", (universe,))
        last = self._read("SELECT id FROM trials WHERE universe = ? ORDER BY id DESC LIMIT 1", (universe,))
        if not first or not last:
            return []
        low, high = int(first[0][0]), int(last[0][0])
        rng = random.Random(seed)
        want = min(count, high - low + 1)
        chosen: dict[int, TrialRow] = {}
        # Ids of one universe's window are nearly contiguous (prunes cut the oldest): draw in the id range and
        # keep the ones that exist, so a draw costs O(count) rows, not a read of the whole window.
        for _ in range(20):
            if len(chosen) >= want:
                break
            ids = [rng.randint(int(low), int(high)) for _ in range(2 * (want - len(chosen)) + 8)]
            marks = ", ".join("?" * len(ids))
            for r in self._read("SELECT id, universe, rules_hash, family, generation, sharpe_per_bar, skew, kurtosis,"
                                f" bars, recorded_at, sketch FROM trials WHERE universe = ? AND id IN ({marks})",
                                (universe, *ids)):
                if len(chosen) < want:
                    chosen.setdefault(int(r[0]), TrialRow(*r[1:]))
        return list(chosen.values())

    def prune_trials(self, universe: str, keep: int) -> int:
        """Delete a universe's per-trial rows beyond the newest `keep`; the totals keep counting them."""
        with self._write(f"prune the trials of {universe}") as conn:
            cur = conn.execute("DELETE FROM trials WHERE universe = ? AND id <= (SELECT id FROM trials WHERE"
                               " universe = ? ORDER BY id DESC LIMIT 1 OFFSET ?)", (universe, universe, keep))
            if cur.rowcount:
                conn.execute("UPDATE trial_totals SET pruned = pruned + ? WHERE universe = ?",
                             (cur.rowcount, universe))
            return int(cur.rowcount)

    # -- the holdout -----------------------------------------------------------------

    def holdout_split(self, universe: str, data_hash: str) -> tuple[int, int, int] | None:
        """(oos_start, looks, worn_reported) recorded for this universe's data, or None."""
        rows = self._read("SELECT oos_start, looks, worn_reported FROM holdout_splits WHERE universe = ?"
                          " AND data_hash = ?", (universe, data_hash))
        return (int(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else None

    def record_holdout_split(self, universe: str, data_hash: str, oos_start: int, window_fraction: float,
                             min_window_days: int, now: float) -> None:
        """Record the split of a universe's data (once per data hash: it never moves for that data)."""
        with self._write(f"record the holdout of {universe}") as conn:
            conn.execute("INSERT INTO holdout_splits (universe, data_hash, oos_start, window_fraction,"
                         " min_window_days, recorded_at) VALUES (?, ?, ?, ?, ?, ?)"
                         " ON CONFLICT (universe, data_hash) DO NOTHING",
                         (universe, data_hash, oos_start, window_fraction, min_window_days, now))

    def add_holdout_look(self, universe: str, data_hash: str) -> int:
        """Count one look at a universe's holdout (an OOS verdict); the looks so far."""
        with self._write(f"count a look at the holdout of {universe}") as conn:
            conn.execute("UPDATE holdout_splits SET looks = looks + 1 WHERE universe = ? AND data_hash = ?",
                         (universe, data_hash))
            row = conn.execute("SELECT looks FROM holdout_splits WHERE universe = ? AND data_hash = ?",
                               (universe, data_hash)).fetchone()
        return int(row[0]) if row else 0

    def mark_holdout_worn(self, universe: str, data_hash: str) -> None:
        """school.holdout_worn was said for this data: once."""
        with self._write(f"mark the holdout of {universe} worn") as conn:
            conn.execute("UPDATE holdout_splits SET worn_reported = 1 WHERE universe = ? AND data_hash = ?",
                         (universe, data_hash))

    # -- gates and verdicts ------------------------------------------------------------

    def set_is_dsr(self, name: str, dsr: float | None, now: float) -> None:
        """Store a strategy's DSR (recomputed against the ledger as it is now)."""
        self._update_strategy(name, "is_dsr = ?, updated_at = ?", [_finite(dsr), now])

    def set_oos_verdict(self, name: str, *, sharpe: float | None, psr: float | None, trades: int | None,
                        decision: str, now: float) -> None:
        """Store a strategy's holdout figures and verdict (pass / fail)."""
        self._update_strategy(name, "oos_sharpe = ?, oos_psr = ?, oos_trades = ?, oos_decision = ?, updated_at = ?",
                              [_finite(sharpe), _finite(psr), trades, decision, now])

    def add_audit(self, universe: str, at: float, strategies: int, pbo: float | None, trials: int,
                  n_eff: float | None, sr0: float | None) -> None:
        """Record one PBO audit."""
        with self._write(f"record an audit of {universe}") as conn:
            conn.execute("INSERT INTO audits (universe, at, strategies, pbo, trials, n_eff, sr0) VALUES"
                         " (?, ?, ?, ?, ?, ?, ?)", (universe, at, strategies, _finite(pbo), trials, _finite(n_eff),
                                                    _finite(sr0)))

    def last_audits(self) -> dict[str, dict[str, Any]]:
        """The latest audit per universe."""
        rows = self._read("SELECT universe, MAX(at), strategies, pbo, trials, n_eff, sr0 FROM audits GROUP BY universe")
        return {str(r[0]): {"at": r[1], "strategies": r[2], "pbo": r[3], "trials": r[4], "n_eff": r[5], "sr0": r[6]}
                for r in rows}

    def count_ranked(self, symbol: str, timeframe: str) -> int:
        """How many strategies of a universe are ranked B, A or S."""
        return int(self._read("SELECT COUNT(*) FROM strategies WHERE rank IN ('B', 'A', 'S') AND symbol = ?"
                              " AND timeframe = ?", (symbol, timeframe))[0][0])

    # -- wfv folds -------------------------------------------------------------------

    def add_wfv_folds(self, wfv_id: str, folds: Sequence[tuple[int, str, str]]) -> None:
        """The folds of a walk-forward: (fold, request_id, request_json), unanswered."""
        with self._write(f"add the folds of WFV run {wfv_id}") as conn:
            conn.executemany("INSERT INTO wfv_folds (wfv_id, fold, request_id, request_json) VALUES (?, ?, ?, ?)",
                             [(wfv_id, f, rid, body) for f, rid, body in folds])

    def set_wfv_fold(self, wfv_id: str, fold: int, status: str, result_json: str | None) -> None:
        """One fold's answer."""
        with self._write(f"update fold {fold} of WFV run {wfv_id}") as conn:
            conn.execute("UPDATE wfv_folds SET status = ?, result_json = ? WHERE wfv_id = ? AND fold = ?",
                         (status, result_json, wfv_id, fold))

    def wfv_folds(self, wfv_id: str) -> list[tuple[int, str, str, str | None, str | None]]:
        """(fold, request_id, request_json, status, result_json) of a walk-forward, in fold order."""
        rows = self._read("SELECT fold, request_id, request_json, status, result_json FROM wfv_folds"
                          " WHERE wfv_id = ? ORDER BY fold", (wfv_id,))
        return [(int(r[0]), str(r[1]), str(r[2]), r[3], r[4]) for r in rows]

    # -- oos_queue -------------------------------------------------------------

    def get_oos_row(self, strategy: str) -> OosRow | None:
        """The OOS queue row of `strategy`, or None."""
        rows = self._read(_select("oos_queue", _OOS_COLUMNS) + " WHERE strategy = ?", (strategy,))
        return OosRow(*rows[0]) if rows else None

    def put_oos_row(self, row: OosRow) -> None:
        """Insert or replace the OOS queue row of `row.strategy` (which must exist)."""
        _check(row.status, OOS_STATUSES, "OOS status")
        marks = ", ".join("?" * len(_OOS_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _OOS_COLUMNS[1:])
        sql = (
            f"INSERT INTO oos_queue ({', '.join(_OOS_COLUMNS)}) VALUES ({marks}) "
            f"ON CONFLICT (strategy) DO UPDATE SET {updates}"
        )
        values = (
            row.strategy,
            row.request_id,
            row.requested_at,
            row.status,
            row.attempts,
            row.last_error,
            row.backoff_sec,
        )
        with self._write(f"put the OOS row of {row.strategy}") as conn:
            conn.execute(sql, values)

    def list_oos_rows(self) -> list[OosRow]:
        """Every OOS queue row, oldest request first."""
        rows = self._read(_select("oos_queue", _OOS_COLUMNS) + " ORDER BY requested_at, strategy")
        return [OosRow(*r) for r in rows]

    def delete_oos_row(self, strategy: str) -> None:
        """Remove the OOS queue row of `strategy` (no error when there is none)."""
        with self._write(f"delete the OOS row of {strategy}") as conn:
            conn.execute("DELETE FROM oos_queue WHERE strategy = ?", (strategy,))

    # -- wfv_runs --------------------------------------------------------------

    def add_wfv_run(self, row: WfvRow) -> None:
        """Insert a new walk-forward run."""
        _check(row.status, WFV_STATUSES, "WFV status")
        marks = ", ".join("?" * len(_WFV_COLUMNS))
        with self._write(f"add WFV run {row.wfv_id}") as conn:
            conn.execute(f"INSERT INTO wfv_runs ({', '.join(_WFV_COLUMNS)}) VALUES ({marks})", _wfv_values(row))

    def update_wfv_run(self, row: WfvRow) -> None:
        """Replace every field of an existing walk-forward run."""
        _check(row.status, WFV_STATUSES, "WFV status")
        sets = ", ".join(f"{c} = ?" for c in _WFV_COLUMNS[1:])
        values = _wfv_values(row)
        with self._write(f"update WFV run {row.wfv_id}") as conn:
            cur = conn.execute(f"UPDATE wfv_runs SET {sets} WHERE wfv_id = ?", [*values[1:], values[0]])
            if cur.rowcount == 0:
                raise StoreError(f"no WFV run with id {row.wfv_id!r}")

    def get_wfv_run(self, wfv_id: str) -> WfvRow | None:
        """The walk-forward run `wfv_id`, or None."""
        rows = self._read(_select("wfv_runs", _WFV_COLUMNS) + " WHERE wfv_id = ?", (wfv_id,))
        return WfvRow(*rows[0]) if rows else None

    def list_wfv_runs(self, status: str | None = None) -> list[WfvRow]:
        """Walk-forward runs (of one status, when given), oldest first."""
        sql = _select("wfv_runs", _WFV_COLUMNS)
        params: list[object] = []
        if status is not None:
            _check(status, WFV_STATUSES, "WFV status")
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY started_at, wfv_id"
        return [WfvRow(*r) for r in self._read(sql, params)]

    # -- plumbing --------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One short write transaction; sqlite3 errors become StoreError naming what was attempted."""
        if self.readonly:
            raise StoreError(f"cannot {what}: the store {self.path} is open read-only")
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {what} in {self.path}: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise StoreError(f"cannot {what} in {self.path}: {exc}") from exc
        except BaseException:
            _rollback(conn)
            raise

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from exc

    def _read_one(self, sql: str) -> tuple[Any, ...]:
        return self._read(sql)[0]


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
        *(_finite(getattr(row, f"is_{key}")) for key in IS_METRIC_KEYS),
        _finite(row.oos_sharpe),
        row.created_at,
        row.updated_at,
        row.wfv_decision,
        _finite(row.is_dsr),
        row.is_bars,
        _finite(row.oos_psr),
        row.oos_trades,
        row.oos_decision,
    )


def _strategy(r: tuple[Any, ...]) -> StrategyRow:
    values = dict(zip(_STRATEGY_COLUMNS, r, strict=True))
    params = json.loads(values.pop("params_json"))
    return StrategyRow(params=params, **values)


def _wfv_values(row: WfvRow) -> tuple[object, ...]:
    return tuple(getattr(row, c) for c in _WFV_COLUMNS)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn a sqlite3 error into a StoreError that says what was being attempted."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from exc


def _prepare_readwrite(conn: sqlite3.Connection, path: Path) -> int:
    """Set the connection up for the daemon and migrate the file; return its schema version."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Read the version before anything writes: a newer file must stay byte-for-byte as it was.
    _refuse_newer(_user_version(conn, path), path)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot put the store {path} in WAL mode (journal_mode is {mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    # The WAL is truncated back to this after each checkpoint: a burst of writes (a prune, a migration) must
    # not leave a file as large as the database beside it for ever.
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    return _migrate(conn, path)


def _prepare_readonly(conn: sqlite3.Connection, path: Path) -> int:
    """Set a read-only connection up; the file must already be at the current schema."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")
    version = _user_version(conn, path)
    _refuse_newer(version, path)
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"the store {path} needs a migration (schema {version} < {SCHEMA_VERSION}); "
            "start the daemon once to migrate it"
        )
    return version


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls some failures back by itself (SQLITE_FULL, ...); a second ROLLBACK would raise.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _user_version(conn: sqlite3.Connection, path: Path) -> int:
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a swimmy store: {exc}") from exc


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {path} was made by a newer swimmy: schema {version} > {SCHEMA_VERSION}; "
            "it is left untouched (upgrade swimmy)"
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply every migration from the file's version up to SCHEMA_VERSION, one transaction each."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another opener may have migrated meanwhile.
            version = _user_version(conn, path)
            _refuse_newer(version, path)
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return version
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
