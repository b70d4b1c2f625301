"""The strategy store: real SQLite files in tmp_path, no mocks."""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swimmy.errors import StoreError
from swimmy.store import SCHEMA_VERSION, OosRow, Store, StrategyRow, WfvRow

# The v1 schema exactly as v1 shipped it; never edit it (files in the field were made by it).
V1_SCHEMA = """
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
);
CREATE INDEX strategies_rank ON strategies (rank);
CREATE INDEX strategies_is_sharpe ON strategies (is_sharpe);
CREATE TABLE oos_queue (
    strategy TEXT PRIMARY KEY REFERENCES strategies (name) ON DELETE CASCADE,
    request_id TEXT NOT NULL,
    requested_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sent', 'retry', 'error', 'done')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NULL
);
PRAGMA user_version = 1;
"""


def strategy(n: int, *, sharpe: float | None = None, rank: str = "incubator", rules: str | None = None) -> StrategyRow:
    """A strategy whose rules differ by `n` unless `rules` says otherwise."""
    rules_hash = rules or f"{n:08x}" * 8
    return StrategyRow(
        name=f"sma_cross-EURUSD-H1-{rules_hash[:8]}",
        rules_hash=rules_hash,
        family="sma_cross",
        params={"fast": 5 + n, "slow": 50},
        symbol="EURUSD",
        timeframe="H1",
        sl_pips=20.0,
        tp_pips=40.0,
        generation=n % 3,
        parent=None,
        rank=rank,
        is_sharpe=sharpe,
        created_at=1000.0 + n,
        updated_at=1000.0 + n,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "school.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store.open(db)
    yield s
    s.close()


class TestOpening:
    def test_fresh_file_gets_current_version_and_wal(self, db: Path) -> None:
        """A new file is created at the current schema version, in WAL mode."""
        with Store.open(db) as s:
            assert s.schema_version == SCHEMA_VERSION == 5
            assert s.journal_mode == "wal"
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        finally:
            conn.close()
        assert {"strategies", "oos_queue", "wfv_runs"} <= tables
        assert {"strategies_rank", "strategies_is_sharpe", "wfv_runs_status_started"} <= indexes

    def test_reopen_read_write_sees_data(self, db: Path) -> None:
        """Data written before close is there when the file is opened read-write again."""
        with Store.open(db) as s:
            assert s.add_strategy(strategy(1, sharpe=0.5))
        with Store.open(db) as s:
            got = s.get_strategy(strategy(1).name)
            assert got == strategy(1, sharpe=0.5)
            assert s.schema_version == SCHEMA_VERSION

    def test_readonly_sees_writes_while_writer_holds_the_file(self, db: Path) -> None:
        """A read-only store opened while the writer is open sees every committed write (WAL)."""
        with Store.open(db) as rw:
            rw.add_strategy(strategy(1, sharpe=0.1))
            with Store.open_readonly(db) as ro:
                assert ro.readonly
                assert [r.name for r in ro.list_strategies()] == [strategy(1).name]
                rw.add_strategy(strategy(2, sharpe=0.9))
                rw.set_rank(strategy(1).name, "B", now=2000.0)
                assert [r.name for r in ro.list_strategies()] == [strategy(2).name, strategy(1).name]
                assert ro.count_by_rank()["B"] == 1

    def test_readonly_after_writer_closed(self, db: Path) -> None:
        """A read-only store opens a file no writer has open."""
        with Store.open(db) as rw:
            rw.add_strategy(strategy(1))
        with Store.open_readonly(db) as ro:
            assert ro.get_strategy(strategy(1).name) is not None

    def test_readonly_missing_file_is_refused(self, db: Path) -> None:
        """A read-only open of a file that does not exist is a StoreError naming it, and creates nothing."""
        with pytest.raises(StoreError, match="does not exist") as info:
            Store.open_readonly(db)
        assert str(db) in str(info.value)
        assert not db.exists()

    def test_readonly_needing_migration_is_refused(self, db: Path) -> None:
        """A read-only open of an older file is a StoreError; it never migrates."""
        make_v1(db)
        with pytest.raises(StoreError, match="needs a migration"):
            Store.open_readonly(db)
        assert user_version(db) == 1

    def test_newer_version_is_refused_and_untouched(self, db: Path) -> None:
        """A file from a newer swimmy is refused by both opens and left byte-for-byte unchanged."""
        conn = sqlite3.connect(db)
        conn.executescript("CREATE TABLE future (x INTEGER); INSERT INTO future VALUES (1); PRAGMA user_version = 7;")
        conn.close()
        before = db.read_bytes()
        with pytest.raises(StoreError, match=r"made by a newer swimmy: schema 7 > 5"):
            Store.open(db)
        with pytest.raises(StoreError, match=r"made by a newer swimmy: schema 7 > 5"):
            Store.open_readonly(db)
        assert db.read_bytes() == before
        assert not Path(f"{db}-wal").exists()

    def test_not_a_database_is_a_store_error(self, db: Path) -> None:
        """A file that is not SQLite is a StoreError, not a crash."""
        db.write_bytes(b"this is not a database, it is a text file of some length" * 20)
        with pytest.raises(StoreError, match=r"not a swimmy store|not a database"):
            Store.open(db)

    def test_missing_directory_is_a_store_error(self, tmp_path: Path) -> None:
        """A path whose directory does not exist is a StoreError naming the path."""
        path = tmp_path / "nope" / "school.db"
        with pytest.raises(StoreError, match="cannot open the store"):
            Store.open(path)

    def test_close_is_idempotent_and_closed_store_refuses(self, db: Path) -> None:
        """close() twice is fine; using a closed store is a StoreError."""
        s = Store.open(db)
        s.close()
        s.close()
        with pytest.raises(StoreError, match="closed"):
            s.list_strategies()


def make_v1(db: Path) -> None:
    """A version-1 file with two strategies and an OOS row, as v1 would have left it."""
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    conn.execute(
        "INSERT INTO strategies (name, rules_hash, family, params_json, symbol, timeframe, rank, is_trades, "
        "is_sharpe, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            "sma_cross-EURUSD-H1-aaaaaaaa",
            "a" * 64,
            "sma_cross",
            '{"fast": 5, "slow": 20}',
            "EURUSD",
            "H1",
            "A",
            40,
            0.6,
            1.0,
            2.0,
        ),
    )
    conn.execute(
        "INSERT INTO strategies (name, rules_hash, family, params_json, symbol, timeframe, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ("ema_cross-EURUSD-H1-bbbbbbbb", "b" * 64, "ema_cross", '{"fast": 8, "slow": 21}', "EURUSD", "H1", 3.0, 3.0),
    )
    conn.execute(
        "INSERT INTO oos_queue VALUES (?, ?, ?, ?, ?, ?)",
        ("sma_cross-EURUSD-H1-aaaaaaaa", "req-1", 100.0, "error", 2, "no worker"),
    )
    conn.commit()
    conn.close()


def user_version(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


class TestMigration:
    def test_v1_file_is_migrated_and_rows_survive(self, db: Path) -> None:
        """A v1 file is migrated to the current version; its strategies and OOS rows survive."""
        make_v1(db)
        with Store.open(db) as s:
            assert s.schema_version == SCHEMA_VERSION
            a = s.get_strategy("sma_cross-EURUSD-H1-aaaaaaaa")
            assert a is not None
            assert (a.rank, a.is_trades, a.is_sharpe, a.params) == ("A", 40, 0.6, {"fast": 5, "slow": 20})
            assert a.is_profit_factor is None
            b = s.get_strategy("ema_cross-EURUSD-H1-bbbbbbbb")
            assert b is not None
            assert (b.rank, b.is_sharpe, b.generation) == ("incubator", None, 0)
            assert s.list_oos_rows() == [
                OosRow("sma_cross-EURUSD-H1-aaaaaaaa", "req-1", 100.0, "error", 2, "no worker", backoff_sec=None)
            ]
        assert user_version(db) == SCHEMA_VERSION

    def test_migrated_file_has_the_v2_parts(self, db: Path) -> None:
        """After migrating from v1 the new column (oos_queue.backoff_sec) and table (wfv_runs) work."""
        make_v1(db)
        with Store.open(db) as s:
            s.put_oos_row(OosRow("sma_cross-EURUSD-H1-aaaaaaaa", "req-2", 200.0, "error", 3, "timeout", 20.0))
            assert s.get_oos_row("sma_cross-EURUSD-H1-aaaaaaaa") == OosRow(
                "sma_cross-EURUSD-H1-aaaaaaaa", "req-2", 200.0, "error", 3, "timeout", 20.0
            )
            run = WfvRow("w-1", "sma_cross-EURUSD-H1-aaaaaaaa", 300.0, "manual", 0.2)
            s.add_wfv_run(run)
            assert s.list_wfv_runs("pending") == [run]
        with Store.open_readonly(db) as ro:
            assert ro.get_wfv_run("w-1") == run

    def test_failed_migration_leaves_the_old_version(self, db: Path) -> None:
        """A migration that fails half-way is rolled back whole: version and schema stay as they were."""
        make_v1(db)
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE wfv_runs (squatter INTEGER)")  # makes v2's CREATE TABLE fail after its ALTER
        conn.commit()
        conn.close()
        with pytest.raises(StoreError, match="wfv_runs already exists"):
            Store.open(db)
        assert user_version(db) == 1
        conn = sqlite3.connect(db)
        try:
            columns = [r[1] for r in conn.execute("PRAGMA table_info(oos_queue)")]
        finally:
            conn.close()
        assert "backoff_sec" not in columns

    def test_v3_file_keeps_its_single_split_runs_readable_and_marked(self, db: Path) -> None:
        """v3 -> v4: old single-split WFV runs stay readable, marked `single_split`; their verdicts are cleared
        from the strategies so that each gets a real walk-forward; the new tables work."""
        from swimmy.store import _MIGRATIONS

        conn = sqlite3.connect(db)
        for version in range(3):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            "INSERT INTO strategies (name, rules_hash, family, params_json, symbol, timeframe, rank, is_sharpe,"
            " created_at, updated_at, wfv_decision) VALUES ('s1', 'h1', 'sma_cross', '{}', 'EURUSD', 'H1', 'S', 1.5,"
            " 1.0, 1.0, 'validated')")
        conn.execute("INSERT INTO wfv_runs (wfv_id, strategy, started_at, trigger, split_ratio, is_sharpe, oos_sharpe,"
                     " is_status, oos_status, status, decision) VALUES ('w-old', 's1', 5.0, 'scheduled', 0.2, 1.4, 1.1,"
                     " 'ok', 'ok', 'done', 'validated')")
        conn.commit()
        conn.close()
        with Store.open(db) as s:
            assert s.schema_version == SCHEMA_VERSION
            run = s.get_wfv_run("w-old")
            assert run is not None and run.kind == "single_split" and run.decision == "validated"
            assert (run.is_sharpe, run.oos_sharpe) == (1.4, 1.1)
            row = s.get_strategy("s1")
            assert row is not None and row.wfv_decision is None and row.rank == "S" and row.is_dsr is None
            s.add_wfv_run(WfvRow("w-new", "s1", 6.0, "manual", 0.2))
            assert s.get_wfv_run("w-new").kind == "folds"  # type: ignore[union-attr]

    def test_migration_is_idempotent(self, db: Path) -> None:
        """Opening an already-current file changes nothing in its schema."""
        make_v1(db)
        Store.open(db).close()
        schema = sqlite_schema(db)
        Store.open(db).close()
        assert sqlite_schema(db) == schema

    def test_fresh_and_migrated_schemas_match(self, tmp_path: Path, db: Path) -> None:
        """A migrated v1 file ends with exactly the schema of a fresh file."""
        fresh = tmp_path / "fresh.db"
        Store.open(fresh).close()
        make_v1(db)
        Store.open(db).close()
        assert sqlite_schema(db) == sqlite_schema(fresh)


def sqlite_schema(db: Path) -> list[tuple[str, str]]:
    """Every table and index with its SQL, whitespace normalised (the migrations are indented differently)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    finally:
        conn.close()
    return sorted((name, re.sub(r"\s+([,)])", r"\1", " ".join(sql.split()))) for name, sql in rows)


class TestStrategies:
    def test_identical_rules_never_coexist(self, store: Store) -> None:
        """A second strategy with the same rules_hash is not written and add_strategy says False."""
        first = strategy(1, rules="c" * 64)
        assert store.add_strategy(first)
        twin = StrategyRow(**{**first.__dict__, "name": "other-name", "generation": 5})
        assert not store.add_strategy(twin)
        assert not store.add_strategy(first)
        assert [r.name for r in store.list_strategies()] == [first.name]
        assert store.get_strategy("other-name") is None

    def test_same_name_different_rules_is_an_error(self, store: Store) -> None:
        """A name clash with different rules (a hash8 collision) is a StoreError, not a silent skip."""
        store.add_strategy(strategy(1))
        clash = StrategyRow(**{**strategy(1).__dict__, "rules_hash": "f" * 64})
        with pytest.raises(StoreError, match="same name, different rules"):
            store.add_strategy(clash)

    def test_a_clash_in_a_batch_names_it_and_writes_none_of_the_batch(self, store: Store) -> None:
        """Batches go in with one executemany; a clash still names its strategy and the batch is all or nothing."""
        store.add_strategy(strategy(1))
        clash = StrategyRow(**{**strategy(1).__dict__, "rules_hash": "f" * 64})
        with pytest.raises(StoreError, match=f"cannot add strategy {clash.name}: .*same name, different rules"):
            store.add_strategies([strategy(2), clash, strategy(3)])
        assert [r.name for r in store.list_strategies()] == [strategy(1).name]
        assert store.add_strategies([strategy(2), strategy(1), strategy(3)]) == 2  # rules that exist: skipped

    def test_a_transaction_commits_its_writes_together_and_an_error_rolls_all_back(self, store: Store, db: Path
                                                                                    ) -> None:
        """Store.transaction: the writes inside are one transaction (a reader sees none of them before the end);
        an error in the last undoes the first (the school's flush: trials, N_eff and ranks together)."""
        with pytest.raises(StoreError, match="unknown rank 'no-such-rank'"), store.transaction("three writes"):
            store.add_strategy(strategy(1))
            store.set_n_eff("EURUSD_H1", 3.0, 0.1, 5.0)
            store.record_is_results([(strategy(1).name, {"sharpe": 1.0}, "no-such-rank")], 5.0)
        assert store.list_strategies() == [] and store.trial_totals("EURUSD_H1") == (0, None, None)
        with store.transaction("two writes"):
            store.add_strategy(strategy(1))
            with Store.open_readonly(db) as ro:
                assert ro.list_strategies() == []  # not committed yet
            with store.transaction("nested: joins the outer one"):
                store.add_strategy(strategy(2))
        with Store.open_readonly(db) as ro:
            assert len(ro.list_strategies()) == 2

    def test_null_metrics_stay_null(self, store: Store) -> None:
        """Unknown metrics are NULL and read back as None; an errored backtest never becomes 0.0."""
        row = strategy(1)
        store.add_strategy(row)
        store.record_is_result(row.name, {"trades": 0, "sharpe": None, "profit_factor": None}, "graveyard", 5.0)
        got = store.get_strategy(row.name)
        assert got is not None
        assert got.is_trades == 0
        assert got.is_metrics == {
            "trades": 0,
            "sharpe": None,
            "profit_factor": None,
            "win_rate": None,
            "max_drawdown": None,
            "sortino": None,
            "psr": None,
            "pnl_pips": None,
            "skew": None,
            "kurtosis": None,
            "sharpe_per_bar": None,
            "dsr": None,
        }
        assert got.oos_sharpe is None
        assert (got.rank, got.updated_at) == ("graveyard", 5.0)

    def test_non_finite_metrics_are_stored_as_null(self, store: Store) -> None:
        """NaN and infinities are not numbers anyone can rank on: they are stored as NULL."""
        row = strategy(1)
        store.add_strategy(row)
        store.record_is_result(row.name, {"sharpe": math.nan, "profit_factor": math.inf, "trades": 3}, "B", 5.0)
        store.set_oos_sharpe(row.name, -math.inf, 6.0)
        got = store.get_strategy(row.name)
        assert got is not None
        assert (got.is_sharpe, got.is_profit_factor, got.is_trades, got.oos_sharpe) == (None, None, 3, None)

    def test_record_is_result_round_trip(self, store: Store) -> None:
        """Every IS metric, the rank and updated_at are stored as given; extra keys are ignored."""
        row = strategy(1)
        store.add_strategy(row)
        metrics = {
            "trades": 42,
            "wins": 20,
            "sharpe": 0.8,
            "profit_factor": 1.9,
            "win_rate": 0.52,
            "max_drawdown": 0.08,
            "sortino": 1.1,
            "psr": 0.97,
            "pnl_pips": 312.5,
            "skew": -0.2,
            "kurtosis": 4.5,
            "sharpe_per_bar": 0.02,
        }
        store.record_is_result(row.name, metrics, "A", 10.0)
        got = store.get_strategy(row.name)
        assert got is not None
        assert got.is_metrics == {**{k: v for k, v in metrics.items() if k != "wins"}, "dsr": None}
        assert (got.rank, got.created_at, got.updated_at) == ("A", row.created_at, 10.0)

    def test_oos_sharpe_set_and_cleared(self, store: Store) -> None:
        """set_oos_sharpe stores a value and None clears it."""
        row = strategy(1)
        store.add_strategy(row)
        store.set_oos_sharpe(row.name, 0.4, 7.0)
        assert store.get_strategy(row.name).oos_sharpe == 0.4  # type: ignore[union-attr]
        store.set_oos_sharpe(row.name, None, 8.0)
        assert store.get_strategy(row.name).oos_sharpe is None  # type: ignore[union-attr]

    def test_list_orders_best_sharpe_first_nulls_last(self, store: Store) -> None:
        """list_strategies gives best IS Sharpe first, unknown Sharpe last, and honours rank and limit."""
        store.add_strategy(strategy(1, sharpe=None, rank="B"))
        store.add_strategy(strategy(2, sharpe=-0.3, rank="B"))
        store.add_strategy(strategy(3, sharpe=1.2, rank="A"))
        store.add_strategy(strategy(4, sharpe=0.4, rank="B"))
        names = [r.name for r in store.list_strategies()]
        assert names == [strategy(n).name for n in (3, 4, 2, 1)]
        assert [r.name for r in store.list_strategies(rank="B")] == [strategy(n).name for n in (4, 2, 1)]
        assert [r.name for r in store.list_strategies(limit=2)] == [strategy(n).name for n in (3, 4)]
        assert store.list_strategies(rank="S") == []

    def test_count_by_rank_lists_every_rank(self, store: Store) -> None:
        """count_by_rank has every rank, zero when empty."""
        store.add_strategy(strategy(1, rank="B"))
        store.add_strategy(strategy(2, rank="B"))
        store.add_strategy(strategy(3))
        assert store.count_by_rank() == {"incubator": 1, "B": 2, "A": 0, "S": 0, "graveyard": 0}

    @pytest.mark.parametrize("bad", ["C", "a", "", "Graveyard"])
    def test_unknown_rank_is_refused(self, store: Store, bad: str) -> None:
        """A rank outside incubator/B/A/S/graveyard is a StoreError and nothing is written."""
        store.add_strategy(strategy(1))
        with pytest.raises(StoreError, match="unknown rank"):
            store.set_rank(strategy(1).name, bad, 2.0)
        with pytest.raises(StoreError, match="unknown rank"):
            store.add_strategy(strategy(2, rank=bad))
        assert store.get_strategy(strategy(1).name).rank == "incubator"  # type: ignore[union-attr]
        assert store.get_strategy(strategy(2).name) is None

    def test_updating_an_unknown_strategy_is_an_error(self, store: Store) -> None:
        """set_rank / record_is_result / set_oos_sharpe on an unknown name is a StoreError naming it."""
        with pytest.raises(StoreError, match="no strategy named 'ghost'"):
            store.set_rank("ghost", "B", 1.0)
        with pytest.raises(StoreError, match="ghost"):
            store.record_is_result("ghost", {}, "B", 1.0)
        with pytest.raises(StoreError, match="ghost"):
            store.set_oos_sharpe("ghost", 0.1, 1.0)


class TestOosQueue:
    def test_round_trip_and_upsert(self, store: Store) -> None:
        """put_oos_row inserts, then replaces the one row of that strategy; get and list read it back."""
        store.add_strategy(strategy(1))
        name = strategy(1).name
        first = OosRow(name, "req-1", 100.0, "sent", 1)
        store.put_oos_row(first)
        assert store.get_oos_row(name) == first
        second = OosRow(name, "req-2", 200.0, "error", 2, last_error="no worker", backoff_sec=20.0)
        store.put_oos_row(second)
        assert store.list_oos_rows() == [second]

    def test_list_oldest_first_and_delete(self, store: Store) -> None:
        """list_oos_rows is ordered by requested_at; delete removes one row and tolerates a missing one."""
        for n, at in ((1, 300.0), (2, 100.0), (3, 200.0)):
            store.add_strategy(strategy(n))
            store.put_oos_row(OosRow(strategy(n).name, f"req-{n}", at, "sent", 1))
        assert [r.request_id for r in store.list_oos_rows()] == ["req-2", "req-3", "req-1"]
        store.delete_oos_row(strategy(3).name)
        store.delete_oos_row("ghost")
        assert [r.request_id for r in store.list_oos_rows()] == ["req-2", "req-1"]
        assert store.get_oos_row(strategy(3).name) is None

    def test_row_for_unknown_strategy_is_refused(self, store: Store) -> None:
        """An OOS row must belong to a stored strategy (foreign key)."""
        with pytest.raises(StoreError, match="FOREIGN KEY"):
            store.put_oos_row(OosRow("ghost", "req-1", 1.0, "sent", 1))
        assert store.list_oos_rows() == []

    def test_unknown_status_is_refused(self, store: Store) -> None:
        """An OOS status outside sent/retry/error/done is a StoreError."""
        store.add_strategy(strategy(1))
        with pytest.raises(StoreError, match="unknown OOS status"):
            store.put_oos_row(OosRow(strategy(1).name, "req-1", 1.0, "throttled", 1))


class TestWfvRuns:
    def test_round_trip(self, store: Store) -> None:
        """A run is added pending, updated to done with every field, and read back as written."""
        store.add_strategy(strategy(1))
        run = WfvRow("w-1", strategy(1).name, 100.0, "scheduled", 0.2, is_request_id="r-is", oos_request_id="r-oos")
        store.add_wfv_run(run)
        assert store.get_wfv_run("w-1") == run
        done = WfvRow(
            "w-1",
            strategy(1).name,
            100.0,
            "scheduled",
            0.2,
            "r-is",
            "r-oos",
            is_sharpe=0.9,
            oos_sharpe=0.6,
            is_status="ok",
            oos_status="ok",
            status="done",
            decision="weak",
            required_oos=0.05,
            degradation=1 / 3,
            finished_at=160.0,
        )
        store.update_wfv_run(done)
        assert store.get_wfv_run("w-1") == done
        assert store.get_wfv_run("w-2") is None

    def test_list_by_status_oldest_first(self, store: Store) -> None:
        """list_wfv_runs filters by status and orders by started_at."""
        for n in (1, 2, 3):
            store.add_strategy(strategy(n))
        store.add_wfv_run(WfvRow("w-late", strategy(1).name, 300.0, "scheduled", 0.2))
        store.add_wfv_run(WfvRow("w-early", strategy(2).name, 100.0, "manual", 0.2))
        store.add_wfv_run(WfvRow("w-gone", strategy(3).name, 200.0, "scheduled", 0.2, status="timeout"))
        assert [r.wfv_id for r in store.list_wfv_runs("pending")] == ["w-early", "w-late"]
        assert [r.wfv_id for r in store.list_wfv_runs()] == ["w-early", "w-gone", "w-late"]
        assert [r.wfv_id for r in store.list_wfv_runs("timeout")] == ["w-gone"]

    def test_update_of_unknown_run_is_an_error(self, store: Store) -> None:
        """Updating a run that was never added is a StoreError naming it."""
        store.add_strategy(strategy(1))
        with pytest.raises(StoreError, match="w-9"):
            store.update_wfv_run(WfvRow("w-9", strategy(1).name, 1.0, "manual", 0.2))

    def test_duplicate_id_and_bad_status_are_refused(self, store: Store) -> None:
        """A wfv_id is added once; a status outside pending/done/timeout/error is refused."""
        store.add_strategy(strategy(1))
        run = WfvRow("w-1", strategy(1).name, 1.0, "manual", 0.2)
        store.add_wfv_run(run)
        with pytest.raises(StoreError, match="UNIQUE"):
            store.add_wfv_run(run)
        with pytest.raises(StoreError, match="unknown WFV status"):
            store.update_wfv_run(WfvRow("w-1", strategy(1).name, 1.0, "manual", 0.2, status="running"))
        assert store.get_wfv_run("w-1") == run


class TestReadOnly:
    def test_every_write_through_readonly_is_refused(self, db: Path) -> None:
        """Every write method of a read-only store raises StoreError and nothing changes."""
        with Store.open(db) as rw:
            rw.add_strategy(strategy(1))
            rw.add_wfv_run(WfvRow("w-1", strategy(1).name, 1.0, "manual", 0.2))
        name = strategy(1).name
        with Store.open_readonly(db) as ro:
            writes: list[Callable[[], object]] = [
                lambda: ro.add_strategy(strategy(2)),
                lambda: ro.record_is_result(name, {"sharpe": 1.0}, "A", 2.0),
                lambda: ro.set_rank(name, "A", 2.0),
                lambda: ro.set_oos_sharpe(name, 1.0, 2.0),
                lambda: ro.put_oos_row(OosRow(name, "r", 1.0, "sent", 1)),
                lambda: ro.delete_oos_row(name),
                lambda: ro.add_wfv_run(WfvRow("w-2", name, 1.0, "manual", 0.2)),
                lambda: ro.update_wfv_run(WfvRow("w-1", name, 1.0, "manual", 0.2, status="done")),
            ]
            for write in writes:
                with pytest.raises(StoreError, match="read-only"):
                    write()
        with Store.open(db) as rw:
            assert rw.list_strategies() == [strategy(1)]
            assert rw.list_oos_rows() == []
            assert [r.status for r in rw.list_wfv_runs()] == ["pending"]


class TestCascade:
    def test_deleting_a_strategy_removes_its_queue_rows(self, db: Path) -> None:
        """oos_queue and wfv_runs rows go with their strategy (ON DELETE CASCADE, foreign keys on)."""
        with Store.open(db) as s:
            s.add_strategy(strategy(1))
            s.put_oos_row(OosRow(strategy(1).name, "r", 1.0, "sent", 1))
            s.add_wfv_run(WfvRow("w-1", strategy(1).name, 1.0, "manual", 0.2))
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM strategies")
        conn.commit()
        conn.close()
        with Store.open_readonly(db) as ro:
            assert ro.list_oos_rows() == []
            assert ro.list_wfv_runs() == []


class TestSchoolQueries:
    """The indexed queries the school runs every cycle (v3)."""

    def _add(self, store: Store, name: str, rank: str, sharpe: float | None, **kw: object) -> None:
        row = StrategyRow(name=name, rules_hash=name, family="sma_cross", params={"fast": 1, "slow": 2},
                          symbol="EURUSD", timeframe="H1", rank=rank, is_sharpe=sharpe, is_trades=40,
                          is_profit_factor=1.5, is_win_rate=0.5, is_max_drawdown=0.05, **kw)  # type: ignore[arg-type]
        assert store.add_strategy(row)

    def test_oos_and_wfv_candidates(self, db: Path) -> None:
        """OOS: meets A base, ranked, no OOS Sharpe; WFV: B/A/S without a verdict; both best IS Sharpe first."""
        with Store.open(db) as s:
            self._add(s, "a", "B", 0.9)
            self._add(s, "b", "B", 0.5)
            self._add(s, "c", "B", 0.2)  # below A base sharpe
            self._add(s, "d", "A", 0.8, oos_sharpe=0.4)  # OOS known
            self._add(s, "e", "graveyard", 1.5)
            self._add(s, "f", "incubator", None)
            s.set_wfv_decision("a", "validated", 1.0)
            oos = s.oos_candidates(min_trades=30, sharpe=0.45, profit_factor=1.3, win_rate=0.43, max_drawdown=0.16,
                                   limit=10)
            assert [r.name for r in oos] == ["a", "b"]
            assert [r.name for r in s.wfv_candidates(10)] == ["d", "b", "c"]
            assert [r.name for r in s.awaiting_is(10)] == ["f"]
            assert s.rules_hashes() == {"a", "b", "c", "d", "e", "f"}
            assert s.get_strategy("a").wfv_decision == "validated"  # type: ignore[union-attr]
            assert sorted(r.name for r in s.live_strategies()) == ["a", "b", "c", "d", "f"]

    def test_the_graveyard_is_pruned_oldest_first(self, db: Path) -> None:
        """prune_graveyard keeps the newest `keep` graveyard rows and never touches live ones."""
        with Store.open(db) as s:
            for i in range(5):
                self._add(s, f"g{i}", "graveyard", 0.1)
                s.set_rank(f"g{i}", "graveyard", float(i))
            self._add(s, "alive", "B", 0.9)
            assert s.prune_graveyard(keep=2) == 3
            assert sorted(r.name for r in s.list_strategies()) == ["alive", "g3", "g4"]
