"""The store's plumbing: one connection, its reads and its short write transactions.

`StoreBase` is what every query group (strategies, ledger, validation) builds on: `_read` and `_write`
turn sqlite3 errors into StoreError naming what was attempted, and refuse writes on a read-only store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swimmy.errors import StoreError


class StoreBase:
    """The connection behind a Store and the reads and transactions every query group runs on it."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool, schema_version: int) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self.readonly = readonly
        self.schema_version = schema_version
        self._joined = False  # inside `transaction`: each _write joins the open transaction

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
        if self._joined:
            try:
                yield conn
            except sqlite3.Error as exc:  # the outer transaction rolls everything back
                raise StoreError(f"cannot {what} in {self.path}: {exc}") from exc
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {what} in {self.path}: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            rollback(conn)
            raise StoreError(f"cannot {what} in {self.path}: {exc}") from exc
        except BaseException:
            rollback(conn)
            raise

    @contextmanager
    def transaction(self, what: str) -> Iterator[None]:
        """Several writes as one transaction (one commit): every write inside joins it; any error rolls all back."""
        if self._joined:
            yield
            return
        with self._write(what):
            self._joined = True
            try:
                yield
            finally:
                self._joined = False

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from exc

    def _read_one(self, sql: str) -> tuple[Any, ...]:
        return self._read(sql)[0]

    # Here, not in StrategyQueries: the ledger's gates and verdicts update strategies too.
    def _update_strategy(self, name: str, sets: str, values: list[object]) -> None:
        with self._write(f"update strategy {name}") as conn:
            cur = conn.execute(f"UPDATE strategies SET {sets} WHERE name = ?", [*values, name])
            if cur.rowcount == 0:
                raise StoreError(f"no strategy named {name!r}")


def select(table: str, columns: tuple[str, ...]) -> str:
    """`SELECT columns FROM table`."""
    return f"SELECT {', '.join(columns)} FROM {table}"


def rollback(conn: sqlite3.Connection) -> None:
    """Roll the open transaction back, if there still is one."""
    # SQLite rolls some failures back by itself (SQLITE_FULL, ...); a second ROLLBACK would raise.
    if conn.in_transaction:
        conn.execute("ROLLBACK")
