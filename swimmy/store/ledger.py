"""The trials ledger, the holdout splits and their looks, the honest gates' figures and the PBO audits.

The gates' figures (`set_is_dsr`, `set_oos_verdict`, `count_ranked`) are columns of `strategies`, written
here beside the ledger and audits they come from.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Final

from swimmy.store.connection import StoreBase
from swimmy.store.rows import TrialRow, finite

TRIAL_HASH_CHARS: Final = 16


class LedgerQueries(StoreBase):
    """The queries on `trials`, `trial_totals`, `holdout_splits` and `audits` (a part of Store)."""

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
                                         finite(r.sharpe_per_bar), finite(r.skew), finite(r.kurtosis), r.bars,
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
                         " aggregate = excluded.aggregate", (universe, n_eff, finite(rho_bar), now, aggregate))

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
        self._update_strategy(name, "is_dsr = ?, updated_at = ?", [finite(dsr), now])

    def set_oos_verdict(self, name: str, *, sharpe: float | None, psr: float | None, trades: int | None,
                        decision: str, now: float) -> None:
        """Store a strategy's holdout figures and verdict (pass / fail)."""
        self._update_strategy(name, "oos_sharpe = ?, oos_psr = ?, oos_trades = ?, oos_decision = ?, updated_at = ?",
                              [finite(sharpe), finite(psr), trades, decision, now])

    def set_oos_data_hash(self, name: str, data_hash: str) -> None:
        """Record which data's holdout a strategy's counted look was on (a report shows that holdout only)."""
        self._update_strategy(name, "oos_data_hash = ?", [data_hash])

    def add_audit(self, universe: str, at: float, strategies: int, pbo: float | None, trials: int,
                  n_eff: float | None, sr0: float | None) -> None:
        """Record one PBO audit."""
        with self._write(f"record an audit of {universe}") as conn:
            conn.execute("INSERT INTO audits (universe, at, strategies, pbo, trials, n_eff, sr0) VALUES"
                         " (?, ?, ?, ?, ?, ?, ?)", (universe, at, strategies, finite(pbo), trials, finite(n_eff),
                                                    finite(sr0)))

    def last_audits(self) -> dict[str, dict[str, Any]]:
        """The latest audit per universe."""
        rows = self._read("SELECT universe, MAX(at), strategies, pbo, trials, n_eff, sr0 FROM audits GROUP BY universe")
        return {str(r[0]): {"at": r[1], "strategies": r[2], "pbo": r[3], "trials": r[4], "n_eff": r[5], "sr0": r[6]}
                for r in rows}

    def count_ranked(self, symbol: str, timeframe: str) -> int:
        """How many strategies of a universe are ranked B, A or S."""
        return int(self._read("SELECT COUNT(*) FROM strategies WHERE rank IN ('B', 'A', 'S') AND symbol = ?"
                              " AND timeframe = ?", (symbol, timeframe))[0][0])
