"""The school loop (SPEC §5): every `school.cycle_sec` breed, backtest IS, rank, request OOS, schedule WFV.

The market data only gives the windows: the IS range is everything before the
newest `oos.window_days` of the data (the IS backtest never sees the OOS window)
and the OOS range is that window.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import structlog

from swimmy.backtest.client import BacktestClient, Outcome
from swimmy.backtest.data import load_bars
from swimmy.backtest.strategies import spec_of
from swimmy.catalog import row_for
from swimmy.clock import Clock
from swimmy.config import Config
from swimmy.errors import DataError
from swimmy.school.breeding import breed, to_retire
from swimmy.school.oos import OosRequester
from swimmy.school.ranks import decide_rank
from swimmy.school.wfv import WfvScheduler
from swimmy.store import Store, StrategyRow
from swimmy.telemetry.queue import Emit

DAY_SEC = 86_400
GRAVEYARD_KEEP_FACTOR = 10  # the graveyard keeps the newest 10 x population_max strategies
GRAVEYARD_PRUNE_EVERY = 100  # cycles
TICK_SEC = 1.0

log = structlog.get_logger(logger_name="swimmy.school")


@dataclass(frozen=True)
class DataWindow:
    """One symbol/timeframe's bars split into the IS range and the OOS window."""

    oos_start: int
    is_timestamps: np.ndarray  # the IS range's bar timestamps (all bars before oos_start)


def data_window(timestamps: np.ndarray, window_days: int) -> DataWindow | None:
    """The OOS window is the newest `window_days` of the data; None when nothing is left for IS."""
    if len(timestamps) == 0:
        return None
    oos_start = int(timestamps[-1]) - window_days * DAY_SEC
    cut = int(np.searchsorted(timestamps, oos_start, side="left"))
    if cut < 2:
        return None
    return DataWindow(oos_start, timestamps[:cut])


class School:
    """Owns the population's cycle; the OOS requester and WFV scheduler hang off it."""

    def __init__(self, cfg: Config, store: Store, client: BacktestClient, emit: Emit, clock: Clock, *,
                 rng: random.Random | None = None, on_progress: Callable[[], None] | None = None,
                 workers_ready: Callable[[], bool] = lambda: True,
                 on_ranked: Callable[[str, str, str, str], None] | None = None) -> None:
        self.cfg = cfg
        self._store = store
        self._client = client
        self._emit = emit
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_progress = on_progress or (lambda: None)
        self._workers_ready = workers_ready
        self._waiting_logged = False
        self._on_ranked = on_ranked or (lambda name, old, new, reason: None)
        self._windows: dict[tuple[str, str], DataWindow | None] = {}
        self._hashes: set[str] | None = None
        self._is_inflight: set[str] = set()
        self.oos = OosRequester(cfg, store, client, emit, clock, oos_start=self._oos_start, rerank=self.rerank)
        self.wfv = WfvScheduler(cfg, store, client, emit, clock, is_timestamps=self._is_timestamps,
                                rerank=self.rerank)
        self.cycles = 0

    def update_config(self, cfg: Config) -> None:
        """SIGHUP: oos.*, wfv.* and ranks.* apply from the next cycle."""
        self.cfg = cfg
        self.oos.cfg = cfg
        self.wfv.cfg = cfg

    # -- data windows ------------------------------------------------------------------------

    async def refresh_windows(self) -> None:
        """Load (cached, in a thread) the bars of every configured symbol; note which have none."""
        for symbol in self.cfg.school.symbols:
            key = (symbol, self.cfg.school.timeframe)
            try:
                bars = await asyncio.to_thread(load_bars, self.cfg.school.data_dir, *key)
            except DataError as exc:
                if self._windows.get(key, ...) is not None:
                    log.warning("no usable data: the school skips this symbol", symbol=symbol, error=str(exc))
                self._windows[key] = None
                continue
            self._windows[key] = data_window(bars.timestamps, self.cfg.oos.window_days)

    def _window(self, symbol: str, timeframe: str) -> DataWindow | None:
        return self._windows.get((symbol, timeframe))

    def _oos_start(self, symbol: str, timeframe: str) -> int | None:
        window = self._window(symbol, timeframe)
        return window.oos_start if window else None

    def _is_timestamps(self, symbol: str, timeframe: str) -> Sequence[int] | None:
        window = self._window(symbol, timeframe)
        return window.is_timestamps.tolist() if window else None

    # -- the cycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Start-up, then a cycle every cycle_sec; wakes every second for progress."""
        await self.refresh_windows()
        self.oos.startup()
        self.wfv.startup()
        while True:
            await self.refresh_windows()
            self.cycle()
            waited = 0.0
            while waited < self.cfg.school.cycle_sec:
                self._on_progress()
                step = min(TICK_SEC, self.cfg.school.cycle_sec - waited)
                await self._clock.sleep(step)
                waited += step

    def cycle(self) -> None:
        """One school cycle."""
        self.cycles += 1
        self._breed()
        if not self._workers_ready():
            # Nothing would be accepted: sending now only makes refusals (dispatch_failed, error verdicts)
            # at every start-up, before the embedded workers have connected.
            if not self._waiting_logged:
                self._waiting_logged = True
                log.info("no backtest worker has answered a heartbeat yet; the school waits for one")
            return
        self._waiting_logged = False
        self._send_is()
        self.oos.tick()
        self.wfv.tick()

    def _breed(self) -> None:
        count = self.cfg.school.breed_per_cycle
        symbols = [s for s in self.cfg.school.symbols if self._window(s, self.cfg.school.timeframe) is not None]
        if count <= 0 or not symbols:
            return
        if self._hashes is None or self.cycles % GRAVEYARD_PRUNE_EVERY == 1:
            # The graveyard is bounded (a retired strategy's rules may be bred again once forgotten),
            # so neither the table nor this set grows for ever.
            self._store.prune_graveyard(GRAVEYARD_KEEP_FACTOR * self.cfg.school.population_max)
            self._hashes = self._store.rules_hashes()
        live = self._store.live_strategies()
        now = self._clock.time()
        retired = to_retire(live, population_max=self.cfg.school.population_max, incoming=count)
        by_name = {r.name: r for r in live}
        for name in retired:
            self._set_rank(by_name[name], "graveyard", "retired: the population is at school.population_max", now)
        # Incubator rows are never retired, so the room left can be less than asked for.
        count = min(count, self.cfg.school.population_max - (len(live) - len(retired)))
        if count <= 0:
            return
        parents = [r for r in live if r.rank in ("S", "A", "B")]
        children = breed(self._rng, parents=parents, existing_hashes=self._hashes, count=count, symbols=symbols,
                         timeframe=self.cfg.school.timeframe)
        for child in children:
            row = row_for(child.spec, now, generation=child.generation, parent=child.parent)
            if self._store.add_strategy(row):
                self._hashes.add(row.rules_hash)

    def _send_is(self) -> None:
        room = max(0, self._max_is_inflight() - len(self._is_inflight))
        if room == 0:
            return
        for row in self._store.awaiting_is(room + len(self._is_inflight)):
            if row.name in self._is_inflight:
                continue
            window = self._window(row.symbol, row.timeframe)
            if window is None:
                continue
            # The IS backtest ends where the OOS window starts: it never sees the OOS data.
            rid = self._client.submit("is", spec_of(row).to_wire(row.name), start_ts=None, end_ts=window.oos_start,
                                      on_done=self._on_is_result)
            if rid is None:
                return  # no worker: try again next cycle
            self._is_inflight.add(row.name)
            room -= 1
            if room == 0:
                return

    def _max_is_inflight(self) -> int:
        return max(4, 2 * self.cfg.school.breed_per_cycle)

    def _on_is_result(self, outcome: Outcome) -> None:
        self._is_inflight.discard(outcome.strategy)
        row = self._store.get_strategy(outcome.strategy)
        if row is None or row.rank != "incubator":
            return
        now = self._clock.time()
        if outcome.status == "timeout":
            return  # transient: it stays in the incubator and is sent again next cycle
        if outcome.status != "ok" or outcome.metrics is None:
            # An error is never a Sharpe of 0: no metrics are stored, and a strategy that can't be
            # backtested leaves the population.
            self._set_rank(row, "graveyard", f"IS backtest failed: {outcome.error}", now)
            return
        decision = decide_rank(outcome.metrics, oos_sharpe=None, wfv_decision=None, ranks=self.cfg.ranks,
                               oos_min_sharpe=self.cfg.oos.min_sharpe, wfv_affects_rank=self.cfg.wfv.affects_rank)
        self._store.record_is_result(row.name, outcome.metrics, row.rank, now)
        self._set_rank(row, decision.rank, decision.reason, now)

    def rerank(self, name: str, why: str) -> None:
        """Rank a strategy again after its OOS Sharpe or WFV verdict changed."""
        row = self._store.get_strategy(name)
        if row is None or row.rank in ("incubator", "graveyard"):
            return
        decision = decide_rank(row.is_metrics, oos_sharpe=row.oos_sharpe, wfv_decision=row.wfv_decision,
                               ranks=self.cfg.ranks, oos_min_sharpe=self.cfg.oos.min_sharpe,
                               wfv_affects_rank=self.cfg.wfv.affects_rank)
        self._set_rank(row, decision.rank, f"{why}: {decision.reason}", self._clock.time())

    def _set_rank(self, row: StrategyRow, rank: str, reason: str, now: float) -> None:
        if rank == row.rank:
            return
        self._store.set_rank(row.name, rank, now)
        self._emit("strategy.ranked", service="school", correlation_id=row.name,
                   data={"strategy": row.name, "from_rank": row.rank, "to_rank": rank, "reason": reason,
                         "generation": row.generation})
        self._on_ranked(row.name, row.rank, rank, reason)

    def by_rank(self) -> dict[str, int]:
        """How many strategies hold each rank."""
        return self._store.count_by_rank()
