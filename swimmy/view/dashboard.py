"""The dashboard's data (SPEC §7): health, the population by rank over time, the latest milestones, the best.

`Dashboard` listens to the event queue for the milestones (swimmy/view/words.py), samples the population
every `sample_sec` into a bounded history (24 h at 30 s; each sample is also recorded in the store, which
keeps 7 days, and the last 24 h are read back at start, so a restart does not blank the chart), and answers
/api/dashboard with one JSON document,
made at most once a second however often it is asked. Everything is bounded: the history, the milestones,
the top table. It holds no holdout figures a verdict has not counted: the store only has OOS figures after
the verdict.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from swimmy.clock import Clock
from swimmy.errors import StoreError
from swimmy.ops.figures import Figures
from swimmy.rfc3339 import format_rfc3339
from swimmy.store import StrategyRow
from swimmy.view.words import MILESTONE_EVENTS, describe

RANKS = ("incubator", "B", "A", "S", "graveyard")
SAMPLE_SEC = 30.0
HISTORY = 2_880  # 24 h of samples at 30 s
HISTORY_SEC = 86_400.0
KEEP_SEC = 7 * 86_400.0  # what the store keeps
MAX_POINTS = 480  # the chart's points: the history is thinned to this many
MAX_EVENTS = 100
TOP = 30
FRESH_SEC = 1.0  # /api/dashboard is rebuilt at most this often


class Dashboard:
    """The feed behind `/`: call `on_event` from the queue, run `run()` as a task, read `state_bytes()`."""

    events = MILESTONE_EVENTS

    def __init__(self, clock: Clock, *, figures: Callable[[], Figures], reasons: Callable[[], list[str]],
                 best: Callable[[int], list[StrategyRow]], sample_sec: float = SAMPLE_SEC,
                 on_progress: Callable[[], None] = lambda: None,
                 recorded: Callable[[float], list[tuple[float, dict[str, int]]]] | None = None,
                 record: Callable[[float, dict[str, int]], None] | None = None) -> None:
        self._clock = clock
        self._figures = figures
        self._reasons = reasons
        self._best = best
        self.sample_sec = sample_sec
        self._beat = on_progress
        self.history: deque[tuple[float, dict[str, int], float | None]] = deque(maxlen=HISTORY)
        self.milestones: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._last_completed: tuple[float, int] | None = None
        self._cached: tuple[float, bytes] | None = None
        self._record = record
        self.record_failures = 0  # samples the store refused (a full disk): the chart keeps them in memory
        if recorded is not None:
            try:
                for at, counts in recorded(clock.time() - HISTORY_SEC):
                    self.history.append((at, counts, None))
            except StoreError:
                self.record_failures += 1

    def on_event(self, event_type: str, severity: str, correlation_id: Any, data: Any) -> None:
        """A queue listener: keep the milestone's line (bounded)."""
        line = describe(event_type, data)
        if line is None:
            return
        strategy = data.get("strategy") if isinstance(data, dict) else None
        self.milestones.append({"ts": self._clock.time(), "event_type": event_type, "severity": severity,
                                "text": line, "strategy": strategy if isinstance(strategy, str) else None})

    async def run(self) -> None:
        """Sample the population now and every `sample_sec`; wake every second (SPEC §7 progress)."""
        next_sample = self._clock.monotonic()
        while True:
            self._beat()
            if self._clock.monotonic() >= next_sample:
                self.sample()
                next_sample = self._clock.monotonic() + self.sample_sec
            await self._clock.sleep(min(1.0, self.sample_sec))

    def sample(self) -> None:
        """One point of the population history: counts by rank and the backtest rate since the last point."""
        f = self._figures()
        now = self._clock.time()
        rate = None
        if f.backtests is not None:
            done = f.backtests.completed
            if self._last_completed is not None and now > self._last_completed[0]:
                rate = (done - self._last_completed[1]) / (now - self._last_completed[0])
            self._last_completed = (now, done)
        counts = dict(f.strategies or {})
        self.history.append((now, counts, rate))
        if self._record is not None:
            try:
                self._record(now, counts)
            except StoreError:
                self.record_failures += 1

    def state_bytes(self) -> bytes:
        """The /api/dashboard document (cached for `FRESH_SEC`)."""
        now = self._clock.monotonic()
        if self._cached is not None and now - self._cached[0] < FRESH_SEC:
            return self._cached[1]
        body = orjson.dumps(self.state())
        self._cached = (now, body)
        return body

    def state(self) -> dict[str, Any]:
        """Health, figures, the population history, the latest milestones, the best strategies."""
        if not self.history:
            self.sample()
        f = self._figures()
        reasons = self._reasons()
        points = list(self.history)
        if len(points) > MAX_POINTS:
            step = len(points) / MAX_POINTS
            points = [points[int(i * step)] for i in range(MAX_POINTS - 1)] + [points[-1]]
        population: dict[str, list[Any]] = {"t": [round(p[0]) for p in points]}
        for rank in RANKS:
            population[rank] = [p[1].get(rank, 0) for p in points]
        universes = f.universes or {}
        return {
            "generated_at": format_rfc3339(self._clock.time()),
            "status": "DEGRADED" if reasons else "OK",
            "reasons": reasons,
            "run_id": f.run_id,
            "version": f.version,
            "uptime_sec": round(f.uptime_sec, 1),
            "figures": {
                "strategies": f.strategies or {},
                "trials": sum(u.trials for u in universes.values()),
                "universes": {name: {"trials": u.trials, "n_eff": round(u.n_eff, 1), "pbo": u.pbo,
                                     "oos_looks": u.oos_looks, "usable": u.usable} for name, u in universes.items()},
                "backtests_per_sec": points[-1][2] if points else None,
                "backtests_completed": f.backtests.completed if f.backtests else None,
                "workers_alive": f.workers.alive,
                "workers_configured": f.workers.configured,
                "workers_ready": f.backtests.workers_ready if f.backtests else None,
                "oos_pending": f.oos.pending if f.oos else None,
                "wfv_pending": f.wfv.pending if f.wfv else None,
            },
            "population": population,
            "milestones": [dict(m, ts=format_rfc3339(m["ts"])) for m in reversed(self.milestones)],
            "top": [_top_row(r) for r in self._best(TOP)],
        }


def _top_row(r: StrategyRow) -> dict[str, Any]:
    return {"name": r.name, "rank": r.rank, "family": r.family, "universe": f"{r.symbol}_{r.timeframe}",
            "sharpe": r.is_sharpe, "dsr": r.is_dsr, "trades": r.is_trades, "max_drawdown": r.is_max_drawdown,
            "oos": r.oos_decision, "oos_sharpe": r.oos_sharpe, "wfv": r.wfv_decision}

