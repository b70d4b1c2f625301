"""The school's pacing of IS work (SPEC §5): feed the fleet by its free credit, breed, make room.

IS work is paced by the workers' free credit: whenever credit frees (a result, a new worker), the queue is
topped up with incubator strategies, breeding more when none wait, so the fleet is never idle and never
flooded; the universes take turns. IS results are collected here and written in batches (`flush_results`,
swimmy/school/ranking.py). `SchoolFeeding` is the part of `School` (swimmy/school/loop.py) that does it;
School sets every attribute declared here in its constructor.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable

from swimmy.backtest.client import Outcome
from swimmy.backtest.data import universe_name
from swimmy.backtest.strategies import spec_of
from swimmy.school.breeding import breed
from swimmy.school.catalog import row_for
from swimmy.school.ranking import Progress, SchoolRanking
from swimmy.store import StrategyRow

FLUSH_AT = 256  # IS results written in one transaction at most this many at a time
FLUSH_SEC = 0.5  # one transaction and one N_eff update per half second of IS results (bench/fleet_bench.py)
BATCH = 64  # incubator strategies bred (one transaction) or read from the store at a time, per universe
STORE_RECHECK_SEC = 1.0  # a universe whose store had no incubator row to spare is asked again after this long


class SchoolFeeding(SchoolRanking):
    """School's IS work: requests sent while workers have credit, children bred, the weakest B retired for room."""

    _rng: random.Random
    _workers_ready: Callable[[], bool]
    _hashes: set[str] | None
    _is_inflight: dict[str, StrategyRow]
    _ready_rows: dict[tuple[str, str], deque[StrategyRow]]
    _bred_this_cycle: int
    _feed_scheduled: bool
    _flush_scheduled: bool
    _turn: int
    _flush_handle: asyncio.TimerHandle | None

    def schedule_feed(self) -> None:
        """Credit freed: top the queue up once this loop iteration is done (results arrive in batches)."""
        if self._feed_scheduled:
            return
        self._feed_scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self._scheduled_feed)
        except RuntimeError:  # no loop (a unit test driving the school by hand): feed now
            self._scheduled_feed()

    def _scheduled_feed(self) -> None:
        self._feed_scheduled = False
        if self._is_done and not self._flush_scheduled:
            # Results are written in one transaction every FLUSH_SEC, not one per loop iteration.
            self._flush_scheduled = True
            try:
                self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_SEC, self._scheduled_flush)
            except RuntimeError:
                self._scheduled_flush()
        if self._workers_ready() and self._hashes is not None:
            self.feed()

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush_handle = None
        self.flush_results()

    def feed(self) -> None:
        """Send incubator strategies while the workers have free credit, breeding more when none wait.

        The universes take turns, one request each per round (starting with a different one each time),
        so one universe never takes all the credit.
        """
        now = self._clock.time()
        keys = self.usable()
        if not keys:
            return
        self._turn = (self._turn + 1) % len(keys)
        active = keys[self._turn:] + keys[:self._turn]
        while active:
            for key in list(active):
                if not self._feed_one(key, now):
                    active.remove(key)

    def _feed_one(self, key: tuple[str, str], now: float) -> bool:
        """One IS request for this universe if a worker has credit for it; False when none was sent."""
        if self._client.free_credit(universe_name(*key)) <= 0:
            return False
        window = self._window(*key)
        row = self._next_row(key, now) if window is not None else None
        if row is None or window is None:
            return False
        # The IS backtest ends where the holdout starts: it never sees the holdout.
        rid = self._client.submit("is", spec_of(row).to_wire(row.name), start_ts=None, end_ts=window.oos_start,
                                  on_done=self._on_is_result)
        if rid is None:
            self._ready_rows.setdefault(key, deque()).appendleft(row)
            return False
        self._is_inflight[row.name] = row
        return True

    def _next_row(self, key: tuple[str, str], now: float) -> StrategyRow | None:
        """The next incubator strategy of a universe: from the buffer, the store, or a new batch of children.

        The store is asked for waiting rows (imported, re-evaluated, or left by an earlier run or a failed
        request) before breeding; when it had none to spare, not again for STORE_RECHECK_SEC unless
        `incubator_grew` (swimmy/school/universes.py). At full pace that read (its in-flight exclusions
        included) cost more than the breeding: about 80 µs a trial.
        """
        buffer = self._ready_rows.setdefault(key, deque())
        if not buffer and self._clock.monotonic() >= self._store_quiet_until.get(key, 0.0):
            waiting = self._store.awaiting_is_for(*key, BATCH, exclude=self._is_inflight.keys() | self._unflushed)
            buffer.extend(waiting)
            if len(waiting) < BATCH:
                self._store_quiet_until[key] = self._clock.monotonic() + STORE_RECHECK_SEC
        if not buffer:
            buffer.extend(self._breed(*key, BATCH, now))
        return buffer.popleft() if buffer else None

    def _breed(self, symbol: str, timeframe: str, wanted: int, now: float) -> list[StrategyRow]:
        if self._hashes is None or not self.cfg.school.breed:
            return []
        cap = self.cfg.school.breed_per_cycle
        if cap > 0:
            wanted = min(wanted, cap - self._bred_this_cycle)
        short = wanted - (self.cfg.school.population_max - self._live)
        if short > 0:
            self._retire_weakest(short, now)
        wanted = min(wanted, self.cfg.school.population_max - self._live)
        if wanted <= 0:
            return []
        children = breed(self._rng, parents=self._parents.get((symbol, timeframe), []), existing_hashes=self._hashes,
                         count=wanted, symbols=[symbol], timeframe=timeframe)
        rows = [row_for(c.spec, now, generation=c.generation, parent=c.parent) for c in children]
        self._store.add_strategies(rows)
        for row in rows:
            self._hashes.add(row.rules_hash)
        self._bred_this_cycle += len(rows)
        self._live += len(rows)
        return rows

    def _retire_weakest(self, count: int, now: float) -> None:
        """Make room: the weakest B strategies of the last cycle's list go to the graveyard, in one write.

        Counted in `school.progress` (`retired`), not one `strategy.ranked` each: at the paced rate the B
        pool turns over many times a minute (docs/school.md).
        """
        names: list[tuple[str, str]] = []
        while self._retire_queue and len(names) < count:
            row = self._retire_queue.popleft()
            names.append((row.name, "graveyard"))
            progress = self._progress.setdefault(universe_name(row.symbol, row.timeframe), Progress())
            progress.retired += 1
        self._live -= self._store.set_ranks_if(names, "B", now)

    def _on_is_result(self, outcome: Outcome) -> None:
        """Collected, then written in one transaction per loop iteration (the store's writes at full pace)."""
        row = self._is_inflight.pop(outcome.strategy, None)
        if row is not None:
            self._is_done.append((outcome, row))
            self._unflushed.add(row.name)  # answered, not yet written: still "incubator" in the store
        if len(self._is_done) >= FLUSH_AT:
            self.flush_results()
        else:
            self.schedule_feed()
