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
- v3 (current): `strategies.wfv_decision` (the latest WFV verdict, so "no WFV
  result yet" is an indexed column, not a scan of `wfv_runs`) and two partial
  indexes in candidate order for the school's OOS and WFV queries.

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
import sqlite3
from collections.abc import Collection, Iterator, Mapping
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
)

BUSY_TIMEOUT_MS: Final = 5000

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

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3)
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
    oos_sharpe: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    wfv_decision: str | None = None

    @property
    def is_metrics(self) -> dict[str, float | int | None]:
        """The IS metrics keyed as in a BACKTEST_RESULT (`sharpe`, `trades`, ...)."""
        return {key: getattr(self, f"is_{key}") for key in IS_METRIC_KEYS}


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

    def set_rank(self, name: str, rank: str, now: float) -> None:
        """Move a strategy to `rank`."""
        _check(rank, RANKS, "rank")
        self._update_strategy(name, "rank = ?, updated_at = ?", [rank, now])

    def set_oos_sharpe(self, name: str, oos_sharpe: float | None, now: float) -> None:
        """Store (or forget, with None) a strategy's OOS Sharpe."""
        self._update_strategy(name, "oos_sharpe = ?, updated_at = ?", [_finite(oos_sharpe), now])

    def set_wfv_decision(self, name: str, decision: str | None, now: float) -> None:
        """Store a strategy's latest WFV verdict (validated / overfit / weak / error)."""
        self._update_strategy(name, "wfv_decision = ?, updated_at = ?", [decision, now])

    def oos_candidates(self, *, min_trades: int, sharpe: float, profit_factor: float, win_rate: float,
                       max_drawdown: float, limit: int) -> list[StrategyRow]:
        """Ranked strategies that meet the A base criteria and have no OOS Sharpe yet, best IS Sharpe first."""
        # INDEXED BY: without statistics the planner prefers the rank index and sorts every B/A/S row.
        sql = (
            _select("strategies INDEXED BY strategies_oos_candidates", _STRATEGY_COLUMNS)
            + " WHERE rank IN ('B', 'A', 'S') AND oos_sharpe IS NULL AND is_trades >= ? AND is_sharpe >= ?"
            " AND is_profit_factor >= ? AND is_win_rate >= ? AND is_max_drawdown < ?"
            " ORDER BY is_sharpe DESC, name LIMIT ?"
        )
        return [_strategy(r) for r in self._read(sql, (min_trades, sharpe, profit_factor, win_rate, max_drawdown,
                                                       limit))]

    def wfv_candidates(self, limit: int, exclude: Collection[str] = ()) -> list[StrategyRow]:
        """Strategies ranked B, A or S without a WFV result and not in `exclude`, best IS Sharpe first."""
        skip = f" AND name NOT IN ({', '.join('?' * len(exclude))})" if exclude else ""
        sql = (
            _select("strategies INDEXED BY strategies_wfv_candidates", _STRATEGY_COLUMNS)
            + f" WHERE rank IN ('B', 'A', 'S') AND wfv_decision IS NULL{skip} ORDER BY is_sharpe DESC, name LIMIT ?"
        )
        return [_strategy(r) for r in self._read(sql, (*exclude, limit))]

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
        *(_finite(v) for v in row.is_metrics.values()),
        _finite(row.oos_sharpe),
        row.created_at,
        row.updated_at,
        row.wfv_decision,
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
