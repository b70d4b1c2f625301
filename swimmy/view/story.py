"""The school's story on the terminal (SPEC §10 `run --console`): milestones as lines, a summary every 30 s.

In the foreground `swimmy run` tells what the JSONL records: promotions to A and S with their figures, OOS
and walk-forward verdicts, audits, alerts; and every `interval_sec` one line of the population by rank,
trials, backtests per second and workers. Lines are made on the loop (cheap: a dict lookup and a format) and
written by a thread through a bounded queue, so a terminal that stops reading (a paused tmux pane, ^S) never
blocks the daemon: past `maxsize` waiting lines the newest are dropped and counted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from swimmy.ops.figures import Figures
from swimmy.view.words import MILESTONE_EVENTS, describe

SUMMARY_INTERVAL_SEC = 30.0
RANK_ORDER = ("S", "A", "B", "incubator", "graveyard")
_STYLES = {"error": "bold red", "critical": "bold red", "warning": "yellow"}
_EVENT_STYLES = {"strategy.ranked": "bold green", "oos.result": "cyan", "wfv.result": "magenta",
                 "school.audit": "blue"}


def _change(counts: dict[str, int], last: dict[str, int] | None, rank: str) -> str:
    if last is None or rank in ("incubator", "graveyard"):
        return ""
    delta = counts.get(rank, 0) - last.get(rank, 0)
    return f" ({delta:+,})" if delta else ""


class Story:
    """Listens to the event queue (`MILESTONE_EVENTS`); `tick` adds the summary line; `close` flushes."""

    events = MILESTONE_EVENTS

    def __init__(self, out: TextIO, *, wall: Callable[[], float] = time.time,
                 interval_sec: float = SUMMARY_INTERVAL_SEC, maxsize: int = 1000,
                 force_terminal: bool | None = None) -> None:
        self._wall = wall
        self.console = Console(file=out, highlight=False, soft_wrap=True, force_terminal=force_terminal)
        self.interval_sec = interval_sec
        self.dropped = 0
        self.told = 0
        self._lines: queue.Queue[Text | None] = queue.Queue(maxsize)
        self._next_summary: float | None = None
        self._last_completed: tuple[float, int] | None = None
        self._last_counts: dict[str, int] | None = None
        self._thread = threading.Thread(target=self._write, name="swimmy-story", daemon=True)
        self._thread.start()

    def on_event(self, event_type: str, severity: str, correlation_id: Any, data: Any) -> None:
        """A queue listener: runs on the loop at acceptance; never raises, never blocks."""
        line = describe(event_type, data)
        if line is not None:
            style = _STYLES.get(severity) or _EVENT_STYLES.get(event_type, "")
            self._put(self._stamp(), line, style)

    def due(self, now: float) -> bool:
        """Whether `tick` would do anything now: the caller computes the figures only then."""
        return self._next_summary is None or now >= self._next_summary

    def tick(self, now: float, figures: Figures) -> None:
        """Called often (the supervise tick): every `interval_sec` of `now` (monotonic), the summary line."""
        if self._next_summary is None:
            self._next_summary = now + self.interval_sec
            self._last_completed = (now, figures.backtests.completed if figures.backtests else 0)
            return
        if now < self._next_summary:
            return
        self._next_summary = now + self.interval_sec
        self._put(self._stamp(), self.summary(now, figures), "dim")

    def summary(self, now: float, f: Figures) -> str:
        """`population S 1 · A 2 (+1) · B 14 (+6) ... | trials 3,321 | 812 backtests/s | workers 2/2`.

        The change of each rank since the last summary follows its count: B's are many, so B promotions are
        told here rather than one line each.
        """
        parts = []
        if f.strategies is not None:
            counts, last = f.strategies, self._last_counts
            parts.append("population " + " · ".join(f"{r} {counts.get(r, 0):,}" + _change(counts, last, r)
                                                      for r in RANK_ORDER))
            self._last_counts = dict(counts)
        if f.universes:
            parts.append(f"trials {sum(u.trials for u in f.universes.values()):,}")
        if f.backtests is not None:
            completed = f.backtests.completed
            if self._last_completed is not None and now > self._last_completed[0]:
                rate = (completed - self._last_completed[1]) / (now - self._last_completed[0])
                parts.append(f"{rate:,.0f} backtests/s")
            self._last_completed = (now, completed)
        parts.append(f"workers {f.workers.alive}/{f.workers.configured}")
        return " | ".join(parts)

    def close(self, timeout_sec: float = 1.0) -> None:
        """Write what is queued (for at most `timeout_sec`), say how many lines were dropped, stop the thread."""
        try:
            if self.dropped:
                note = (f"(the terminal fell behind: {self.dropped} story lines were dropped; the JSONL has every "
                        "event)")
                self._lines.put(Text.assemble((self._stamp() + " ", "dim"), (note, "yellow")), timeout=timeout_sec)
            self._lines.put(None, timeout=timeout_sec)
        except queue.Full:
            return
        self._thread.join(timeout_sec)

    def _put(self, stamp: str, line: str, style: str) -> None:
        text = Text.assemble((stamp + " ", "dim"), (line, style))
        try:
            self._lines.put_nowait(text)
            self.told += 1
        except queue.Full:
            self.dropped += 1

    def _write(self) -> None:
        while (text := self._lines.get()) is not None:
            try:
                self.console.print(text)
            except (OSError, ValueError):  # the terminal went away (a closed pty): the story stops, not the daemon
                self.dropped += 1

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self._wall(), UTC).strftime("%H:%M:%SZ")
