"""The school loop (SPEC §5): breed, backtest IS, deflate and rank, request OOS, schedule WFV, audit.

Each universe's data is split once per data hash: the holdout is the newest `oos.window_fraction` of
its bars (at least `oos.min_window_days`), and breeding, ranking and the walk-forward only ever see
the IS range before it. IS work is paced by the workers' free credit; every IS result is a trial of
the ledger and carries its DSR against the ledger's N_eff; the housekeeping runs every
`school.cycle_sec` whether or not a worker is connected. docs/school.md describes it whole.

`School` is built from parts, each in its own module and each a base class of the next: the universes
and their data (swimmy/school/universes.py), IS results, ranks and progress (ranking.py), the pacing of
IS work (feeding.py); this module holds its construction, the cycle and the audit. The parts share the
state School's constructor sets, so that constructor is the one list of it.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable

import numpy as np
import structlog

from swimmy.backtest.client import BacktestClient, Outcome
from swimmy.backtest.data import universe_name
from swimmy.backtest.metrics import SKETCH_BLOCKS
from swimmy.backtest.strategies import BARS_PER_YEAR
from swimmy.clock import Clock
from swimmy.config import Config
from swimmy.errors import StoreError
from swimmy.school.breeding import to_retire
from swimmy.school.feeding import SchoolFeeding
from swimmy.school.ledger import Ledger, blob_sketch
from swimmy.school.oos import OosRequester
from swimmy.school.ranking import Progress
from swimmy.school.ranks import worst_first_key
from swimmy.school.stats import CSCV_BLOCKS, expected_max_sharpe, null_variance, pbo_cscv_from_blocks
from swimmy.school.universes import DataWindow, data_window, holdout_start
from swimmy.school.wfv import WfvScheduler
from swimmy.store import Store, StrategyRow, TrialRow
from swimmy.telemetry.queue import Emit

__all__ = ["DataWindow", "School", "audit_trials", "data_window", "holdout_start"]

GRAVEYARD_KEEP_FACTOR = 10  # the graveyard keeps the newest 10 x population_max strategies
TICK_SEC = 1.0
PARENTS = 50  # breeding draws from this many of a universe's best live strategies
MIN_RANKED_FOR_AUDIT = 16  # SPEC §5: a universe is audited once it has this many ranked strategies

log = structlog.get_logger(logger_name="swimmy.school")


def audit_trials(trials: list[TrialRow]) -> dict[str, object] | None:
    """PBO by CSCV (16 blocks) of the trials' IS sketches; None when fewer than 4 usable trials."""
    sketches = [(blob_sketch(t.sketch), t.bars) for t in trials]
    usable = [(sk, bars) for sk, bars in sketches if sk is not None and bars > 0]
    if len(usable) < 4:
        return None
    bars = usable[0][1]
    usable = [(sk, b) for sk, b in usable if b == bars and len(sk[0]) == SKETCH_BLOCKS]
    if len(usable) < 4:
        return None
    sums = np.column_stack([sk[0] for sk, _ in usable])
    sumsqs = np.column_stack([sk[1] for sk, _ in usable])
    counts = np.diff(np.linspace(0, bars, SKETCH_BLOCKS + 1).astype(np.int64)).astype(np.float64)
    result = pbo_cscv_from_blocks(sums, sumsqs, counts, blocks=CSCV_BLOCKS)
    return {"strategies": len(usable), "pbo": round(result.pbo, 6), "prob_oos_loss": round(result.prob_oos_loss, 6),
            "degradation_slope": None if result.degradation_slope is None else round(result.degradation_slope, 6)}


class School(SchoolFeeding):
    """Owns the population's cycle; the OOS requester and WFV scheduler hang off it.

    IS work is paced by the workers' free credit: whenever credit frees (a result, a new worker),
    the school tops the queue up with incubator strategies, breeding more when none wait, so the
    fleet is never idle and never flooded. OOS, WFV and manual requests go first in the broker's
    queue, so the search slows down by itself while qualification work waits.
    """

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
        self._data_hashes: dict[str, str] = {}
        self._invalid: dict[str, str] = {}  # paused universes: the error
        self._splits: dict[tuple[str, str], int] = {}
        self._split_keys = (cfg.oos.window_fraction, cfg.oos.holdout_min_days)  # fixed at start (SPEC §5)
        self.ledger = Ledger(store, level=cfg.ranks.A.dsr or 0.95)
        self._audit_at: float | None = None
        self._hashes: set[str] | None = None
        self._is_inflight: dict[str, StrategyRow] = {}
        self._unflushed: set[str] = set()  # IS results received, not yet written
        self._ready_rows: dict[tuple[str, str], deque[StrategyRow]] = {}
        self._store_quiet_until: dict[tuple[str, str], float] = {}
        self._is_done: list[tuple[Outcome, StrategyRow]] = []
        self._parents: dict[tuple[str, str], list[StrategyRow]] = {}
        self._live = 0
        self._retire_queue: deque[StrategyRow] = deque()
        self._bred_this_cycle = 0
        self._feed_scheduled = False
        self._flush_scheduled = False
        self._turn = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._progress: dict[str, Progress] = {}
        self._progress_at = clock.monotonic()
        self.oos = OosRequester(cfg, store, client, emit, clock, oos_start=self._oos_start, rerank=self.rerank,
                                retire=self.retire, dsr_now=self.dsr_now, look=self.count_look)
        self.wfv = WfvScheduler(cfg, store, client, emit, clock, is_timestamps=self._is_timestamps,
                                rerank=self.rerank, retire=self.retire, paused=self.paused,
                                data_since=self._data_since)
        self.cycles = 0
        client.on_credit = self.schedule_feed

    def update_config(self, cfg: Config) -> None:
        """SIGHUP: oos.*, wfv.* and ranks.* apply from the next cycle."""
        self.cfg = cfg
        self.oos.cfg = cfg
        self.wfv.cfg = cfg
        self.ledger.level = cfg.ranks.A.dsr or 0.95

    # -- the cycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Start-up, then a cycle every cycle_sec; wakes every second for progress."""
        await self.refresh_windows()
        self.rerank_all()
        self.oos.startup()
        self.wfv.startup()
        try:
            while True:
                await self.refresh_windows()
                self.cycle()
                await self.maybe_audit()
                waited = 0.0
                while waited < self.cfg.school.cycle_sec:
                    self._on_progress()
                    self.report_progress()
                    step = min(TICK_SEC, self.cfg.school.cycle_sec - waited)
                    await self._clock.sleep(step)
                    waited += step
        finally:
            # Stopping: the results already in are written (the store is closed after the tasks stop).
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            try:
                self.flush_results()
            except StoreError as exc:
                log.error("the last IS results could not be stored; they are sent again at the next start",
                          error=str(exc))

    def cycle(self) -> None:
        """One school cycle: housekeeping always; new work only when a worker can take it."""
        self.cycles += 1
        self._bred_this_cycle = 0
        now = self._clock.time()
        self._retire_without_data(now)
        self._bound_population(now)
        self._refresh_parents()
        if not self._workers_ready():
            # Nothing would be accepted: sending now only makes refusals (dispatch_failed, error verdicts).
            # Housekeeping still runs: WFV runs expire, deferrals are reported.
            self.wfv.check_timeouts(now)
            if not self._waiting_logged:
                self._waiting_logged = True
                log.info("no backtest worker is ready; the school waits for one (housekeeping goes on)")
            return
        self._waiting_logged = False
        self.oos.tick()
        self.wfv.tick()
        self.feed()

    async def maybe_audit(self, *, force: bool = False) -> list[dict[str, object]]:
        """Every school.audit_interval_sec: PBO by CSCV per universe with >= 16 ranked strategies (SPEC §5).

        `school.audit_strategies` trials drawn at random from the ledger's recent window (not the best:
        choosing by full-sample Sharpe biases CSCV), on their IS returns' sketches; in a thread (<= 2 s).
        """
        now = self._clock.monotonic()
        if not force and self._audit_at is not None and now - self._audit_at < self.cfg.school.audit_interval_sec:
            return []
        reports = []
        for key in self.usable():
            universe = universe_name(*key)
            if self._store.count_ranked(*key) < MIN_RANKED_FOR_AUDIT:
                continue
            trials = self._store.sample_trials(universe, self.cfg.school.audit_strategies, seed=self.cycles)
            report = await asyncio.to_thread(audit_trials, trials)
            if report is None:
                continue
            n, n_eff = self.ledger.counts(universe)
            bars = max((t.bars for t in trials), default=0)
            sr0 = expected_max_sharpe(n_eff, null_variance(bars)) * math.sqrt(BARS_PER_YEAR.get(key[1], 6240)) \
                if bars > 2 else None
            data: dict[str, object] = {"universe": universe, "strategies": report["strategies"],
                                       "pbo": report["pbo"], "trials": n, "n_eff": round(n_eff, 3),
                                       "sr0": round(sr0, 6) if sr0 is not None else None,
                                       "prob_oos_loss": report["prob_oos_loss"],
                                       "degradation_slope": report["degradation_slope"]}
            pbo = report["pbo"]
            self._store.add_audit(universe, self._clock.time(), int(report["strategies"]),  # type: ignore[call-overload]
                                  pbo if isinstance(pbo, float) else None, n, n_eff, sr0)
            self._emit("school.audit", service="school", correlation_id=universe,
                       severity="warning" if isinstance(pbo, float) and pbo > 0.5 else "info", data=data)
            reports.append(data)
        if reports:
            self._audit_at = now  # the interval runs from the first audit that could be made
        return reports

    def _retire_without_data(self, now: float) -> None:
        """Incubator rows of a universe the config does not trade leave, with the reason.

        A configured universe whose data is missing or broken only pauses: its rows wait (they block no
        other universe, each is fed on its own) and no strategy is retired for a data problem (SPEC §4).
        """
        for row in self._store.incubator_outside(self.universes()):
            reason = (f"retired: {universe_name(row.symbol, row.timeframe)}: not traded: the config's "
                      "school.symbols/timeframe do not include it")
            self._set_rank(row, "graveyard", reason, now)

    def _bound_population(self, now: float) -> None:
        """Retire the weakest so that live + the work in hand stays within population_max; prune the graveyard."""
        counts = self._store.count_by_rank()
        keep = GRAVEYARD_KEEP_FACTOR * self.cfg.school.population_max
        if self._hashes is None or counts.get("graveyard", 0) > keep * 1.1:
            # The graveyard is bounded (a retired strategy's rules may be bred again once forgotten),
            # so neither the table nor this set grows for ever.
            self._store.prune_graveyard(keep)
            self._hashes = self._store.rules_hashes()
        live = sum(n for rank, n in counts.items() if rank != "graveyard")
        reserve = max(1, self._client.free_credit() + len(self._is_inflight))
        rows = self._store.live_strategies()
        if live + reserve > self.cfg.school.population_max:
            by_name = {r.name: r for r in rows}
            quiet: list[tuple[str, str]] = []
            for name in to_retire(rows, population_max=self.cfg.school.population_max, incoming=reserve):
                row = by_name.pop(name)
                live -= 1
                if row.rank == "B":  # the B pool turns over constantly: counted in school.progress
                    quiet.append((name, "graveyard"))
                    self._progress.setdefault(universe_name(row.symbol, row.timeframe), Progress()).retired += 1
                else:
                    self._set_rank(row, "graveyard", "retired: the population is at school.population_max", now)
            self._store.set_ranks_if(quiet, "B", now)
            rows = list(by_name.values())
        self._live = live
        # Between cycles, room for new children is made by retiring the weakest B strategies, worst first.
        self._retire_queue = deque(sorted((r for r in rows if r.rank == "B"), key=worst_first_key))

    def _refresh_parents(self) -> None:
        self._parents = {u: self._store.best_live(*u, PARENTS) for u in self.usable()}
