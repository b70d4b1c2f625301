"""Loop-lag watch and task dumps (`debug.task_dump`).

A lag is only explainable while it is happening, so a helper thread watches a
tick that the loop refreshes every 100 ms. When the tick is over a second old,
the thread takes the loop thread's current stack (the code that is blocking)
and, once the loop runs again, every task's stack is added and the dump is
emitted. SIGUSR1 asks for the same dump on demand.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from typing import Any

from swimmy.telemetry.queue import Emit

LAG_THRESHOLD_SEC = 1.0
TICK_SEC = 0.1
MAX_STACK_FRAMES = 30


def task_stacks() -> list[dict[str, Any]]:
    """Name, coroutine and formatted stack of every task of the running loop."""
    tasks = []
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=MAX_STACK_FRAMES)
        summary = traceback.StackSummary.extract(((f, f.f_lineno) for f in frames), lookup_lines=True)
        coro = task.get_coro()
        tasks.append({
            "name": task.get_name(),
            "coro": getattr(coro, "__qualname__", repr(coro)),
            "stack": [f"{fs.filename}:{fs.lineno} in {fs.name}: {fs.line or ''}".rstrip(": ") for fs in summary],
        })
    return sorted(tasks, key=lambda t: t["name"])


def dump_tasks(emit: Emit, run_id: str, reason: str, loop_lag_ms: float = 0.0,
               blocking_stack: list[str] | None = None) -> None:
    """Emit `debug.task_dump` with every task's stack (call on the loop)."""
    data: dict[str, Any] = {"reason": reason, "loop_lag_ms": round(loop_lag_ms, 1), "tasks": task_stacks()}
    if blocking_stack is not None:
        data["blocking_stack"] = blocking_stack
    emit("debug.task_dump", service="core", severity="warning", correlation_id=run_id, data=data)


class LoopWatch:
    """Measures loop lag; dumps the blocking stack and all tasks when a lag exceeds the threshold."""

    def __init__(self, emit: Emit, run_id: str, *, threshold_sec: float = LAG_THRESHOLD_SEC) -> None:
        self.emit = emit
        self.run_id = run_id
        self.threshold_sec = threshold_sec
        self.max_lag_ms = 0.0  # since the last read_max_lag()
        self.last_lag_ms = 0.0
        self.stalls = 0
        self._last_tick = time.monotonic()
        self._expected = self._last_tick + TICK_SEC
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reported_tick = 0.0

    def start(self) -> None:
        """Begin ticking on the running loop and start the watcher thread."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._last_tick = time.monotonic()
        self._expected = self._last_tick + TICK_SEC
        self._handle = self._loop.call_later(TICK_SEC, self._tick)
        self._thread = threading.Thread(target=self._watch, name="swimmy-loopwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and join the thread (idempotent)."""
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def read_max_lag(self) -> float:
        """The worst lag in ms since the last call, reset."""
        lag, self.max_lag_ms = self.max_lag_ms, 0.0
        return lag

    def _tick(self) -> None:
        now = time.monotonic()
        lag_ms = max(0.0, (now - self._expected) * 1000)
        self.last_lag_ms = lag_ms
        self.max_lag_ms = max(self.max_lag_ms, lag_ms)
        self._last_tick = now
        self._expected = now + TICK_SEC
        if not self._stop.is_set() and self._loop is not None:
            self._handle = self._loop.call_later(TICK_SEC, self._tick)

    def _watch(self) -> None:
        while not self._stop.wait(self.threshold_sec / 4):
            tick = self._last_tick
            lag = time.monotonic() - tick
            if lag < self.threshold_sec or tick == self._reported_tick:
                continue
            self._reported_tick = tick  # one dump per stall
            frame = sys._current_frames().get(self._loop_thread)
            stack = traceback.format_stack(frame, limit=MAX_STACK_FRAMES) if frame is not None else []
            blocking = [line.rstrip() for line in stack]
            self.stalls += 1
            loop = self._loop
            if loop is None:
                continue
            try:
                loop.call_soon_threadsafe(self._report, tick, blocking)
            except RuntimeError:
                return  # the loop is closed

    def _report(self, stalled_tick: float, blocking: list[str]) -> None:
        lag_ms = (time.monotonic() - stalled_tick) * 1000
        dump_tasks(self.emit, self.run_id, "loop_lag", lag_ms, blocking)
