"""The school loop (SPEC §5): breed, backtest IS, deflate and rank, request OOS, schedule WFV, audit.

Each universe's data is split once per data hash: the holdout is the newest `oos.window_fraction` of
its bars (at least `oos.min_window_days`), and breeding, ranking and the walk-forward only ever see
the IS range before it. IS work is paced by the workers' free credit; every IS result is a trial of
the ledger and carries its DSR against the ledger's N_eff; the housekeeping runs every
`school.cycle_sec` whether or not a worker is connected. docs/school.md describes it whole.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import structlog

from swimmy.backtest.canonical import read_sidecar
from swimmy.backtest.client import BacktestClient, Outcome
from swimmy.backtest.data import data_hash, data_path, load_bars, universe_dir, universe_name
from swimmy.backtest.metrics import SKETCH_BLOCKS
from swimmy.backtest.strategies import BARS_PER_YEAR, spec_of
from swimmy.clock import Clock
from swimmy.config import Config
from swimmy.errors import DataError, StoreError
from swimmy.school.breeding import breed, to_retire
from swimmy.school.catalog import row_for
from swimmy.school.ledger import Ledger, blob_sketch, sketch_blob
from swimmy.school.oos import OosRequester
from swimmy.school.ranks import decide_rank, worst_first_key
from swimmy.school.stats import CSCV_BLOCKS, expected_max_sharpe, null_variance, pbo_cscv_from_blocks
from swimmy.school.wfv import WfvScheduler
from swimmy.store import Store, StrategyRow, TrialRow
from swimmy.telemetry.queue import Emit

DAY_SEC = 86_400
GRAVEYARD_KEEP_FACTOR = 10  # the graveyard keeps the newest 10 x population_max strategies
TICK_SEC = 1.0
PARENTS = 50  # breeding draws from this many of a universe's best live strategies
FLUSH_AT = 256  # IS results written in one transaction at most this many at a time
FLUSH_SEC = 0.5  # one transaction and one N_eff update per half second of IS results (bench/fleet_bench.py)
MIN_RANKED_FOR_AUDIT = 16  # SPEC §5: a universe is audited once it has this many ranked strategies
BATCH = 64  # incubator strategies bred (one transaction) or read from the store at a time, per universe

log = structlog.get_logger(logger_name="swimmy.school")


@dataclass(frozen=True)
class DataWindow:
    """One symbol/timeframe's bars split into the IS range and the OOS window."""

    oos_start: int
    is_timestamps: np.ndarray  # the IS range's bar timestamps (all bars before oos_start)


def holdout_start(timestamps: np.ndarray, window_fraction: float, min_days: int) -> int | None:
    """Where the holdout starts: the newest `window_fraction` of the bars, and at least `min_days` days of them."""
    n = len(timestamps)
    if n == 0:
        return None
    by_share = int(timestamps[min(n - 1, math.floor(n * (1.0 - window_fraction)))])
    by_days = int(timestamps[-1]) - min_days * DAY_SEC
    return min(by_share, by_days)


def data_window(timestamps: np.ndarray, oos_start: int | None) -> DataWindow | None:
    """The IS range is every bar before the holdout's start; None when fewer than 2 bars are left for it."""
    if len(timestamps) == 0 or oos_start is None:
        return None
    cut = int(np.searchsorted(timestamps, oos_start, side="left"))
    if cut < 2:
        return None
    return DataWindow(oos_start, timestamps[:cut])


@dataclass
class _Progress:
    """One universe's IS results since the last `school.progress` event, and in all."""

    trials: int = 0  # IS results with figures, in all (the ledger's N is the next issue's)
    since: int = 0
    by_family: dict[str, dict[str, int]] = field(default_factory=dict)
    best_sharpe: float | None = None
    best_strategy: str | None = None
    best_dsr: float | None = None
    sr0: float | None = None  # the annualised Sharpe the best of N_eff luck-only trials would show
    retired: int = 0  # B strategies retired to make room (population_max)

    def add(self, family: str, outcome: str, name: str, sharpe: float | None, dsr: float | None) -> None:
        counts = self.by_family.setdefault(family, {})
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome in ("error", "quarantined", "timeout"):
            return
        self.trials += 1
        self.since += 1
        if sharpe is not None and (self.best_sharpe is None or sharpe > self.best_sharpe):
            self.best_sharpe, self.best_strategy = sharpe, name
        if dsr is not None and (self.best_dsr is None or dsr > self.best_dsr):
            self.best_dsr = dsr


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


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def trial_row(row: StrategyRow, outcome: Outcome, now: float) -> TrialRow:
    """The ledger's row for a finished IS backtest."""
    metrics = outcome.metrics or {}
    result = outcome.result
    bars = result.bars if result is not None and result.bars is not None else 0
    sketch = result.body.get("sketch") if result is not None else None
    return TrialRow(universe_name(row.symbol, row.timeframe), row.rules_hash, row.family, row.generation,
                    _num(metrics.get("sharpe_per_bar")), _num(metrics.get("skew")), _num(metrics.get("kurtosis")),
                    int(bars), now, sketch_blob(sketch if isinstance(sketch, dict) else None))


class School:
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
        self._is_done: list[tuple[Outcome, StrategyRow]] = []
        self._parents: dict[tuple[str, str], list[StrategyRow]] = {}
        self._live = 0
        self._retire_queue: deque[StrategyRow] = deque()
        self._bred_this_cycle = 0
        self._feed_scheduled = False
        self._flush_scheduled = False
        self._turn = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._progress: dict[str, _Progress] = {}
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

    # -- data windows ------------------------------------------------------------------------

    def universes(self) -> list[tuple[str, str]]:
        """The configured (symbol, timeframe) pairs."""
        return self.cfg.school.universes()

    def usable(self) -> list[tuple[str, str]]:
        """The universes whose data loaded."""
        return [u for u in self.universes() if self._windows.get(u) is not None]

    def universe_hash(self, universe: str) -> str | None:
        """The data_hash of a universe's file as the school last loaded it; None when it has no data."""
        return self._data_hashes.get(universe)

    def paused(self, universe: str) -> bool:
        """Whether a universe is paused: its file is missing, unreadable or broken (data.invalid)."""
        return universe in self._invalid

    def _data_since(self, universe: str) -> float | None:
        """When the universe's current data was first taken in (None: no usable data now)."""
        digest = self._data_hashes.get(universe)
        return self._store.holdout_recorded_at(universe, digest) if digest is not None else None

    def paused_universes(self) -> dict[str, str]:
        """Every paused universe with the error that paused it."""
        return dict(self._invalid)

    async def refresh_windows(self) -> None:
        """Load (cached, in a thread) the bars of every configured universe and their hashes.

        A universe whose file cannot be used is paused (`data.invalid`, once per outage): nothing of it is
        bred, sent, ranked, retired or judged, and its requests wait. When a usable file is back,
        `data.recovered`; when it is other data than before (another hash), `data.imported`, its requests
        made on the old data end as stale, and its ranked strategies are evaluated again on the new data.
        """
        for key in self.universes():
            name = universe_name(*key)
            where = universe_dir(self.cfg, key[0])
            path = data_path(where, *key)
            try:
                bars = await asyncio.to_thread(load_bars, where, *key)
                digest, window = self._usable_window(name, await asyncio.to_thread(data_hash, where, *key),
                                                     bars.timestamps, path)
            except DataError as exc:
                self._pause(key, name, path, str(exc))
                continue
            self._windows[key] = window
            self._data_hashes[name] = digest
            if name in self._invalid:
                del self._invalid[name]
                self._emit("data.recovered", service="school", correlation_id=name,
                           data={"universe": name, "path": str(path), "data_hash": digest, "error": None,
                                 "bars": len(bars)})

    def _usable_window(self, name: str, digest: str | None, timestamps: np.ndarray,
                       path: Path) -> tuple[str, DataWindow]:
        """The hash and the IS/holdout window of freshly loaded data; DataError when it cannot be used."""
        if digest is None:
            raise DataError(f"{path}: cannot read it to hash it")
        window = data_window(timestamps, self._split(name, digest, timestamps, path))
        if window is None:
            raise DataError(f"{path}: too short: fewer than 2 bars before the holdout (the newest "
                            f"{self._split_keys[0]:g} of the bars, at least {self._split_keys[1]} days)")
        return digest, window

    def _pause(self, key: tuple[str, str], name: str, path: Path, error: str) -> None:
        self._windows[key] = None
        self._data_hashes.pop(name, None)
        if name in self._invalid:
            return
        self._invalid[name] = error
        broken = data_hash(universe_dir(self.cfg, key[0]), *key)
        self._emit("data.invalid", service="school", severity="warning", correlation_id=name,
                   data={"universe": name, "path": str(path), "error": error, "data_hash": broken})

    def _split(self, universe: str, digest: str, timestamps: np.ndarray, path: Path) -> int | None:
        """The holdout's start for this data: recorded once per data hash, so it never moves for that data.

        The split's keys (oos.window_fraction, oos.min_window_days) take effect for new data or at restart:
        a SIGHUP never moves a holdout under strategies already judged on it. Data the universe has not had
        before is taken in here (`_take_new_data`).
        """
        previous = self._data_hashes.get(universe)
        known = self._splits.get((universe, digest))
        new = False
        if known is None:
            recorded = self._store.holdout_split(universe, digest)
            if recorded is not None:
                known = recorded[0]
            else:
                known = holdout_start(timestamps, self._split_keys[0], self._split_keys[1])
                if known is None:
                    return None
                earlier = self._store.holdout_hashes(universe)
                self._store.record_holdout_split(universe, digest, known, *self._split_keys, self._clock.time())
                self._take_new_data(universe, digest, timestamps, path, changed=bool(earlier))
                new = True
            self._splits[(universe, digest)] = known
        if not new and previous is not None and previous != digest:
            # Back to data the universe had before (a file restored): what was ranked since is run again.
            self._reevaluate(universe, digest, "the data changed back to an earlier file")
        return known

    def _take_new_data(self, universe: str, digest: str, timestamps: np.ndarray, path: Path, *,
                       changed: bool) -> None:
        """`data.imported` for a hash the universe has never had; re-evaluate what was ranked on the old."""
        reevaluated = self._reevaluate(universe, digest, "new data") if changed else 0
        side = read_sidecar(path) if path.suffix == ".npy" else None
        side = side if side is not None and side.get("data_hash") == digest else {}
        self._emit("data.imported", service="core", correlation_id=universe, data={
            "universe": universe, "source": side.get("source", str(path)), "format": side.get("format", "csv"),
            "bars": len(timestamps), "first_ts": int(timestamps[0]), "last_ts": int(timestamps[-1]),
            "data_hash": digest, "path": str(path), "reevaluated": reevaluated})

    def _reevaluate(self, universe: str, digest: str, why: str) -> int:
        """Requests on other data end (stale); the ranked strategies go back to the incubator to be run again."""
        self._client.retire_stale(universe, digest)
        symbol, _, timeframe = universe.rpartition("_")
        now = self._clock.time()
        moved = self._store.reevaluate_universe(symbol, timeframe, now)
        reason = f"{why}: evaluated again on {universe} {digest}"
        trials, n_eff = self.ledger.counts(universe)
        for name, old in moved:
            if old in ("A", "S"):  # B ones are counted in data.imported (`reevaluated`), not an event each
                self._emit("strategy.ranked", service="school", correlation_id=name,
                           data={"strategy": name, "from_rank": old, "to_rank": "incubator", "reason": reason,
                                 "trials": trials, "n_eff": round(n_eff, 3), "universe": universe})
                self._on_ranked(name, old, "incubator", reason)
        if moved:
            self._parents.pop((symbol, timeframe), None)
            self._retire_queue = deque(r for r in self._retire_queue
                                       if universe_name(r.symbol, r.timeframe) != universe)
        return len(moved)

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
                    self._progress.setdefault(universe_name(row.symbol, row.timeframe), _Progress()).retired += 1
                else:
                    self._set_rank(row, "graveyard", "retired: the population is at school.population_max", now)
            self._store.set_ranks_if(quiet, "B", now)
            rows = list(by_name.values())
        self._live = live
        # Between cycles, room for new children is made by retiring the weakest B strategies, worst first.
        self._retire_queue = deque(sorted((r for r in rows if r.rank == "B"), key=worst_first_key))

    def _refresh_parents(self) -> None:
        self._parents = {u: self._store.best_live(*u, PARENTS) for u in self.usable()}

    # -- feeding the fleet -------------------------------------------------------------------

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
        """The next incubator strategy of a universe: from the buffer, the store, or a new batch of children."""
        buffer = self._ready_rows.setdefault(key, deque())
        if not buffer:
            buffer.extend(self._store.awaiting_is_for(*key, BATCH,
                                                      exclude=self._is_inflight.keys() | self._unflushed))
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
            progress = self._progress.setdefault(universe_name(row.symbol, row.timeframe), _Progress())
            progress.retired += 1
        self._live -= self._store.set_ranks_if(names, "B", now)

    # -- IS results --------------------------------------------------------------------------

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

    def flush_results(self) -> None:
        """Record the collected IS results as trials, deflate their Sharpes, rank them, store them in one go."""
        done, self._is_done = self._is_done, []
        if not done:
            return
        self._unflushed.difference_update(row.name for _, row in done)
        now = self._clock.time()
        trials = [trial_row(row, outcome, now) for outcome, row in done
                  if outcome.status == "ok" and outcome.metrics is not None]
        self.ledger.record(trials, now)
        records: list[tuple[str, dict[str, float | int | None], str]] = []
        ranked: list[tuple[StrategyRow, str, str, dict[str, float | int | None]]] = []
        for outcome, row in done:
            universe = universe_name(row.symbol, row.timeframe)
            progress = self._progress.setdefault(universe, _Progress())
            if outcome.status in ("timeout", "stale"):
                progress.add(row.family, outcome.status, row.name, None, None)
                continue  # transient, or asked on data that is gone: it stays in the incubator and is sent again
            if outcome.status != "ok" or outcome.metrics is None:
                # An error is never a Sharpe of 0: no metrics are stored, and a strategy that can't be
                # backtested (or that kills the workers: quarantined) leaves the population.
                outcome_kind = "quarantined" if outcome.status == "quarantined" else "error"
                progress.add(row.family, outcome_kind, row.name, None, None)
                ranked.append((row, "graveyard", f"IS backtest failed: {outcome.error}", {}))
                continue
            metrics = dict(outcome.metrics)
            bars = outcome.result.bars if outcome.result is not None else None
            deflation = self.ledger.deflate(universe, sharpe_per_bar=_num(metrics.get("sharpe_per_bar")), bars=bars,
                                            skew=_num(metrics.get("skew")), kurtosis=_num(metrics.get("kurtosis")),
                                            bars_per_year=BARS_PER_YEAR.get(row.timeframe, 6240))
            metrics["dsr"] = deflation.dsr
            metrics["bars"] = bars
            progress.sr0 = deflation.sr0
            decision = decide_rank(metrics, oos_decision=None, wfv_decision=None, ranks=self.cfg.ranks,
                                   wfv_affects_rank=self.cfg.wfv.affects_rank)
            progress.add(row.family, decision.rank, row.name, _num(metrics.get("sharpe")), deflation.dsr)
            records.append((row.name, metrics, decision.rank))
            if decision.rank == "graveyard":
                self._live -= 1
            elif decision.rank != "B":  # B straight from IS is counted in school.progress, not an event each
                ranked.append((row, decision.rank, decision.reason, metrics))
        self._store.record_is_results(records, now)
        for row, rank, reason, metrics in ranked:
            self._set_rank(row, rank, reason, now, metrics)

    def report_progress(self, *, force: bool = False) -> None:
        """`school.progress` per universe every `school.progress_interval_sec`: the IS results in counts."""
        now = self._clock.monotonic()
        elapsed = now - self._progress_at
        if not force and elapsed < self.cfg.school.progress_interval_sec:
            return
        self.flush_results()
        self._progress_at = now
        for universe, p in self._progress.items():
            if p.since == 0 and not force:
                continue
            trials, n_eff = self.ledger.counts(universe)
            self._emit("school.progress", service="school", correlation_id=universe,
                       data={"universe": universe, "trials": trials, "n_eff": round(n_eff, 3),
                             "trials_per_sec": round(p.since / elapsed, 3) if elapsed > 0 else None,
                             "evaluated": p.trials, "by_family": p.by_family, "best_sharpe": p.best_sharpe,
                             "best_strategy": p.best_strategy, "best_dsr": p.best_dsr,
                             "sr0": round(p.sr0, 6) if p.sr0 is not None else None, "retired": p.retired})
            p.since = 0
            p.retired = 0
            p.by_family = {}

    # -- ranks -------------------------------------------------------------------------------

    def rerank(self, name: str, why: str) -> None:
        """Rank a strategy again after its holdout or walk-forward verdict changed."""
        row = self._store.get_strategy(name)
        if row is None or row.rank in ("incubator", "graveyard"):
            return
        decision = decide_rank(row.is_metrics, oos_decision=row.oos_decision, wfv_decision=row.wfv_decision,
                               ranks=self.cfg.ranks, wfv_affects_rank=self.cfg.wfv.affects_rank)
        self._set_rank(row, decision.rank, f"{why}: {decision.reason}", self._clock.time(), row.is_metrics)

    def dsr_now(self, row: StrategyRow) -> float | None:
        """A strategy's DSR against its universe's ledger as it is now (stored when it moved)."""
        deflation = self.ledger.deflate(universe_name(row.symbol, row.timeframe), sharpe_per_bar=row.is_sharpe_per_bar,
                                        bars=row.is_bars, skew=row.is_skew, kurtosis=row.is_kurtosis,
                                        bars_per_year=BARS_PER_YEAR.get(row.timeframe, 6240))
        if deflation.dsr != row.is_dsr:
            self._store.set_is_dsr(row.name, deflation.dsr, self._clock.time())
        return deflation.dsr

    def count_look(self, row: StrategyRow) -> None:
        """One more look at a universe's holdout; past oos.max_looks, school.holdout_worn (once per data)."""
        universe = universe_name(row.symbol, row.timeframe)
        digest = self._data_hashes.get(universe)
        if digest is None:
            return
        looks = self._store.add_holdout_look(universe, digest)
        split = self._store.holdout_split(universe, digest)
        if looks > self.cfg.oos.max_looks and split is not None and not split[2]:
            self._store.mark_holdout_worn(universe, digest)
            self._emit("school.holdout_worn", service="school", severity="warning", correlation_id=universe,
                       data={"universe": universe, "oos_looks": looks, "max_looks": self.cfg.oos.max_looks,
                             "data_hash": digest,
                             "meaning": "every OOS verdict is a look at the holdout; past this many it proves little"
                                        " until new data extends it"})

    def universe_figures(self) -> dict[str, dict[str, object]]:
        """Per universe: trials N and N_eff, holdout looks, the last audit (status, /metrics, snapshots)."""
        audits = self._store.last_audits()
        out: dict[str, dict[str, object]] = {}
        for key in self.universes():
            universe = universe_name(*key)
            n, n_eff = self.ledger.counts(universe)
            digest = self._data_hashes.get(universe)
            split = self._store.holdout_split(universe, digest) if digest else None
            audit = audits.get(universe, {})
            out[universe] = {"trials": n, "n_eff": round(n_eff, 3), "data_hash": digest, "usable": digest is not None,
                             "oos_looks": split[1] if split else 0, "holdout_start_ts": split[0] if split else None,
                             "pbo": audit.get("pbo"), "audited_at": audit.get("at"),
                             "sr0": audit.get("sr0")}
        return out

    def rerank_all(self) -> None:
        """Start-up: every A and S is judged again by the gates as configured now; what no longer holds is demoted."""
        for rank in ("S", "A"):
            for row in self._store.list_strategies(rank=rank):
                self.rerank(row.name, "re-ranked at start-up")

    def retire(self, name: str, reason: str) -> None:
        """Send a strategy to the graveyard (a quarantined OOS or WFV request: it kills workers)."""
        row = self._store.get_strategy(name)
        if row is not None and row.rank != "graveyard":
            self._set_rank(row, "graveyard", reason, self._clock.time())

    def _set_rank(self, row: StrategyRow, rank: str, reason: str, now: float,
                  metrics: dict[str, float | int | None] | None = None) -> None:
        if rank == row.rank:
            return
        self._store.set_rank(row.name, rank, now)
        universe = universe_name(row.symbol, row.timeframe)
        trials, n_eff = self.ledger.counts(universe)
        figures = metrics or row.is_metrics
        self._emit("strategy.ranked", service="school", correlation_id=row.name,
                   data={"strategy": row.name, "from_rank": row.rank, "to_rank": rank, "reason": reason,
                         "generation": row.generation, "sharpe": figures.get("sharpe"), "dsr": figures.get("dsr"),
                         "trials": trials, "n_eff": round(n_eff, 3), "universe": universe})
        self._on_ranked(row.name, row.rank, rank, reason)

    def by_rank(self) -> dict[str, int]:
        """How many strategies hold each rank."""
        return self._store.count_by_rank()
