"""The strategy store: one SQLite file, schema migrations and typed queries.

This package holds the only modules that import sqlite3. The daemon is the only writer (it
holds `<db_path>.lock`, taken elsewhere); the CLI reads through read-only
connections, which WAL mode lets run while the daemon writes.

rows (the row types) and connection (reads, write transactions) are at the bottom; schema
(migrations), the query groups strategies, ledger and validation build on them, and handle's
`Store` is made of the groups.
"""

from swimmy.store.handle import Store
from swimmy.store.rows import OosRow, StrategyRow, TrialRow, WfvRow
from swimmy.store.schema import _MIGRATIONS, SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "_MIGRATIONS", "OosRow", "Store", "StrategyRow", "TrialRow", "WfvRow"]
