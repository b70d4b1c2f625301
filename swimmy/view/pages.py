"""What the metrics listener serves people (SPEC §7): the dashboard, its static files, the strategy reports.

A report backtests the strategy, which loads numba (~80 MB) and takes a second or two: the daemon never does
that in its own process. `Reports` runs `swimmy report NAME --out -` as a subprocess (at most `PARALLEL` at
once, each with a timeout) on the daemon's config file and keeps the newest pages, keyed by the strategy's
row, so a page is made again only when the strategy changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from swimmy.ops.systemd import child_env
from swimmy.store import StrategyRow
from swimmy.view.dashboard import Dashboard
from swimmy.view.reporthtml import static_bytes

STATIC = {  # name -> content type; nothing else is served from swimmy/view/static
    "uPlot.iife.min.js": "application/javascript",
    "uPlot.min.css": "text/css",
    "swimmy.css": "text/css",
    "dashboard.js": "application/javascript",
}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
PARALLEL = 2
MAX_WAITING = 4
TIMEOUT_SEC = 60.0
CACHED = 16
CACHE_SEC = 600.0  # a cached page is made again after this, even if its row did not change (new data, new trials)


class Reports:
    """Report pages made by a subprocess, cached per strategy row; `make` answers (status, text)."""

    def __init__(self, config_path: Path | None, get: Callable[[str], StrategyRow | None], *,
                 timeout_sec: float = TIMEOUT_SEC, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._config = config_path
        self._get = get
        self._timeout = timeout_sec
        self._slots = asyncio.Semaphore(PARALLEL)
        self._waiting = 0
        self._cache: OrderedDict[str, tuple[tuple[object, ...], float, str]] = OrderedDict()
        self._now = monotonic
        self.made = 0
        self.failed = 0
        self.refused = 0

    async def make(self, name: str) -> tuple[int, str]:
        """200 and the page; 404 for an unknown strategy; 503 when busy or without a config file; 500 on failure."""
        row = self._get(name) if NAME.fullmatch(name) else None
        if row is None:
            return 404, f"404: no strategy called {name!r}\n"
        if self._config is None:
            return 503, "503: reports need the daemon to run from a config file\n"
        key = (row.updated_at, row.rank, row.oos_decision, row.oos_data_hash, row.wfv_decision)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == key and self._now() - cached[1] < CACHE_SEC:
            self._cache.move_to_end(name)
            return 200, cached[2]
        if self._waiting >= MAX_WAITING:
            self.refused += 1
            return 503, "503: too many reports are being made; try again in a few seconds\n"
        self._waiting += 1
        try:
            async with self._slots:
                status, text = await self._run(name)
        finally:
            self._waiting -= 1
        if status == 200:
            self.made += 1
            self._cache[name] = (key, self._now(), text)
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        else:
            self.failed += 1
        return status, text

    async def _run(self, name: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "swimmy", "report", name, "--config", str(self._config), "--out", "-",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=child_env())  # no NOTIFY_SOCKET: only the daemon speaks to systemd
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self._timeout)
        except TimeoutError:
            return 500, f"500: the report of {name} took longer than {self._timeout:g} s\n"
        finally:
            if proc.returncode is None:  # timed out, or the request was cancelled (the daemon stops)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        if proc.returncode != 0:
            why = err.decode(errors="replace").strip().splitlines()
            return 500, f"500: the report of {name} failed: {why[-1] if why else f'exit {proc.returncode}'}\n"
        return 200, out.decode()


class Pages:
    """The metrics listener's pages (swimmy.ops.metrics_http.Pages)."""

    def __init__(self, dashboard: Dashboard, reports: Reports) -> None:
        self.dashboard_feed = dashboard
        self.reports = reports

    def index(self) -> bytes:
        return static_bytes("dashboard.html")

    def static(self, name: str) -> tuple[bytes, str] | None:
        kind = STATIC.get(name)
        return None if kind is None else (static_bytes(name), kind)

    def dashboard(self) -> bytes:
        return self.dashboard_feed.state_bytes()

    async def report(self, name: str) -> tuple[int, str]:
        return await self.reports.make(name)

