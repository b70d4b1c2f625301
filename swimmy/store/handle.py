"""`Store`: the handle callers hold on one store file, opened read-write (migrated) or read-only.

Its queries come from the groups it is made of (strategies, ledger, validation); this module opens and
closes the connection they share.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from swimmy.errors import StoreError
from swimmy.store.ledger import LedgerQueries
from swimmy.store.schema import prepare_readonly, prepare_readwrite
from swimmy.store.strategies import StrategyQueries
from swimmy.store.validation import ValidationQueries


class Store(StrategyQueries, LedgerQueries, ValidationQueries):
    """A connection to the strategy store; read-write (the daemon) or read-only (the CLI).

    Not safe for concurrent use from several threads; it may be handed from one thread to another.
    Build it with `Store.open` or `Store.open_readonly`.
    """

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
                version = prepare_readwrite(conn, path)
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
                version = prepare_readonly(conn, path)
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


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn a sqlite3 error into a StoreError that says what was being attempted."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from exc
