"""The school's universes and their data (SPEC §5): each universe's IS range and holdout, and data changes.

Each universe's data is split once per data hash: the holdout is the newest `oos.window_fraction` of its
bars (at least `oos.min_window_days`), and breeding, ranking and the walk-forward only ever see the IS
range before it. A universe whose file can't be used is paused; new data (another hash) sends what was
ranked on the old data back to the incubator. `SchoolData` is the part of `School` (swimmy/school/loop.py)
that owns this state; School sets every attribute declared here in its constructor.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swimmy.backtest.canonical import read_sidecar
from swimmy.backtest.client import BacktestClient
from swimmy.backtest.data import data_hash, data_path, load_bars, universe_dir, universe_name
from swimmy.clock import Clock
from swimmy.config import Config
from swimmy.errors import DataError
from swimmy.school.ledger import Ledger
from swimmy.store import Store, StrategyRow
from swimmy.telemetry.queue import Emit

DAY_SEC = 86_400


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


class SchoolData:
    """School's universes: their data windows and hashes, paused universes, holdout splits, data changes."""

    cfg: Config
    ledger: Ledger
    _store: Store
    _client: BacktestClient
    _emit: Emit
    _clock: Clock
    _on_ranked: Callable[[str, str, str, str], None]
    _windows: dict[tuple[str, str], DataWindow | None]
    _data_hashes: dict[str, str]
    _invalid: dict[str, str]
    _splits: dict[tuple[str, str], int]
    _split_keys: tuple[float, int]
    _parents: dict[tuple[str, str], list[StrategyRow]]
    _retire_queue: deque[StrategyRow]
    _store_quiet_until: dict[tuple[str, str], float]  # swimmy/school/feeding.py: when to ask the store again

    def incubator_grew(self) -> None:
        """Strategies came into the incubator from outside the breeding (an import, new data): look at once."""
        self._store_quiet_until.clear()

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
            self.incubator_grew()
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
