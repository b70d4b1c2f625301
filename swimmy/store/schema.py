"""The store's schema: its migrations, and the pragmas and checks that open a file.

Schema history (`PRAGMA user_version`):

- v1: `strategies` and `oos_queue`. An errored OOS request was retried after a
  backoff the daemon derived from `attempts` alone.
- v2: adds the `wfv_runs` table (walk-forward runs persisted with
  `started_at`, so pending entries survive a restart and can expire) and the
  `oos_queue.backoff_sec` column (the backoff in force is stored, not guessed).
- v3: `strategies.wfv_decision` (the latest WFV verdict, so "no WFV
  result yet" is an indexed column, not a scan of `wfv_runs`) and two partial
  indexes in candidate order for the school's OOS and WFV queries.
- v4: the trials ledger (`trials`, `trial_totals`), the holdout split per
  data hash with its looks (`holdout_splits`), walk-forward folds (`wfv_folds`; `wfv_runs`
  gains `kind`, old rows stay readable as `single_split`), the PBO audits (`audits`),
  and the figures the honest gates need (`is_dsr`, `is_skew`, `is_kurtosis`,
  `is_sharpe_per_bar`, `is_bars`, `oos_psr`, `oos_trades`, `oos_decision`). The old
  single-split WFV verdicts are cleared from `strategies.wfv_decision` (their runs stay),
  so every ranked strategy gets a real walk-forward.
- v5 (current): `population_samples`, the population by rank every 30 s (the dashboard's chart),
  so the history survives a restart; the daemon keeps the newest 7 days. `strategies.oos_data_hash`:
  the data whose holdout a counted OOS look was on, so a report never draws another data's holdout.

A migration is one entry of `_MIGRATIONS` (index i takes a file from version i
to i + 1) and runs in one transaction together with its `user_version` bump,
so a crash mid-migration leaves the file at the old version. Migrations are
append-only: an existing entry is never edited, since files in the field were
made by it. A file whose version is newer than this code knows is refused and
never touched.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from swimmy.errors import StoreError
from swimmy.store.connection import rollback

BUSY_TIMEOUT_MS: Final = 5000
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

_V5: Final = (
    """
    CREATE TABLE population_samples (
        at REAL NOT NULL PRIMARY KEY,
        incubator INTEGER NOT NULL,
        b INTEGER NOT NULL,
        a INTEGER NOT NULL,
        s INTEGER NOT NULL,
        graveyard INTEGER NOT NULL
    )
    """,
    "ALTER TABLE strategies ADD COLUMN oos_data_hash TEXT NULL",
)

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


def prepare_readwrite(conn: sqlite3.Connection, path: Path) -> int:
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


def prepare_readonly(conn: sqlite3.Connection, path: Path) -> int:
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
            rollback(conn)
            raise
