"""The OOS queue and the walk-forward runs with their folds: the validation requests in flight."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Final

from swimmy.errors import StoreError
from swimmy.store.connection import StoreBase, select
from swimmy.store.rows import OOS_STATUSES, WFV_STATUSES, OosRow, WfvRow, check

_OOS_COLUMNS: Final = ("strategy", "request_id", "requested_at", "status", "attempts", "last_error", "backoff_sec")
_WFV_COLUMNS: Final = tuple(f.name for f in fields(WfvRow))


class ValidationQueries(StoreBase):
    """The queries on `oos_queue`, `wfv_runs` and `wfv_folds` (a part of Store)."""

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
        rows = self._read(select("oos_queue", _OOS_COLUMNS) + " WHERE strategy = ?", (strategy,))
        return OosRow(*rows[0]) if rows else None

    def put_oos_row(self, row: OosRow) -> None:
        """Insert or replace the OOS queue row of `row.strategy` (which must exist)."""
        check(row.status, OOS_STATUSES, "OOS status")
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
        rows = self._read(select("oos_queue", _OOS_COLUMNS) + " ORDER BY requested_at, strategy")
        return [OosRow(*r) for r in rows]

    def delete_oos_row(self, strategy: str) -> None:
        """Remove the OOS queue row of `strategy` (no error when there is none)."""
        with self._write(f"delete the OOS row of {strategy}") as conn:
            conn.execute("DELETE FROM oos_queue WHERE strategy = ?", (strategy,))

    # -- wfv_runs --------------------------------------------------------------

    def add_wfv_run(self, row: WfvRow) -> None:
        """Insert a new walk-forward run."""
        check(row.status, WFV_STATUSES, "WFV status")
        marks = ", ".join("?" * len(_WFV_COLUMNS))
        with self._write(f"add WFV run {row.wfv_id}") as conn:
            conn.execute(f"INSERT INTO wfv_runs ({', '.join(_WFV_COLUMNS)}) VALUES ({marks})", _wfv_values(row))

    def update_wfv_run(self, row: WfvRow) -> None:
        """Replace every field of an existing walk-forward run."""
        check(row.status, WFV_STATUSES, "WFV status")
        sets = ", ".join(f"{c} = ?" for c in _WFV_COLUMNS[1:])
        values = _wfv_values(row)
        with self._write(f"update WFV run {row.wfv_id}") as conn:
            cur = conn.execute(f"UPDATE wfv_runs SET {sets} WHERE wfv_id = ?", [*values[1:], values[0]])
            if cur.rowcount == 0:
                raise StoreError(f"no WFV run with id {row.wfv_id!r}")

    def get_wfv_run(self, wfv_id: str) -> WfvRow | None:
        """The walk-forward run `wfv_id`, or None."""
        rows = self._read(select("wfv_runs", _WFV_COLUMNS) + " WHERE wfv_id = ?", (wfv_id,))
        return WfvRow(*rows[0]) if rows else None

    def latest_wfv_run(self, strategy: str) -> WfvRow | None:
        """The newest walk-forward run of one strategy (any status), or None."""
        rows = self._read(select("wfv_runs", _WFV_COLUMNS) + " WHERE strategy = ? ORDER BY started_at DESC,"
                          " wfv_id DESC LIMIT 1", (strategy,))
        return WfvRow(*rows[0]) if rows else None

    def list_wfv_runs(self, status: str | None = None) -> list[WfvRow]:
        """Walk-forward runs (of one status, when given), oldest first."""
        sql = select("wfv_runs", _WFV_COLUMNS)
        params: list[object] = []
        if status is not None:
            check(status, WFV_STATUSES, "WFV status")
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY started_at, wfv_id"
        return [WfvRow(*r) for r in self._read(sql, params)]


def _wfv_values(row: WfvRow) -> tuple[object, ...]:
    return tuple(getattr(row, c) for c in _WFV_COLUMNS)
