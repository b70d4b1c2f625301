"""The embedded worker supervisor's decisions, on a fake clock: start, report an exit, back off, restart, stop.

Worker processes are stand-ins whose exit the test decides (tests/integration/test_workers.py runs real
`swimmy worker` processes); one test runs real processes to check the signals at stop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swimmy.backtest import supervisor as workers
from swimmy.backtest.supervisor import PARENT_PID_ENV, WORK_ENDPOINT_ENV, WorkerSupervisor
from swimmy.testing import CapturingEmitter, FakeClock


class FakeProcess:
    """An asyncio.subprocess.Process stand-in: it exits when the test says, or on a signal it obeys."""

    def __init__(self, pid: int, argv: tuple[str, ...], env: dict[str, str]) -> None:
        self.pid = pid
        self.argv = argv
        self.env = env
        self.returncode: int | None = None
        self.signals: list[str] = []
        self.obeys_sigterm = True
        self.dies_after_sec = 0.01
        self._exited = asyncio.Event()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def terminate(self) -> None:
        self.signals.append("SIGTERM")
        if self.obeys_sigterm:  # a real child takes a moment to die and be reaped
            asyncio.get_running_loop().call_later(self.dies_after_sec, self.exit, -signal.SIGTERM)

    def kill(self) -> None:
        self.signals.append("SIGKILL")
        asyncio.get_running_loop().call_later(self.dies_after_sec, self.exit, -signal.SIGKILL)


class Spawner:
    """Stands in for asyncio.create_subprocess_exec: records each command line, hands out FakeProcesses."""

    def __init__(self) -> None:
        self.procs: list[FakeProcess] = []
        self._pids = itertools.count(4001)

    async def __call__(self, *argv: str, **kwargs: Any) -> FakeProcess:
        proc = FakeProcess(next(self._pids), argv, kwargs["env"])
        self.procs.append(proc)
        return proc

    def latest(self, worker_id: str) -> FakeProcess:
        return [p for p in self.procs if p.argv[-1] == worker_id][-1]


@dataclass
class Fleet:
    """A running supervisor, its fake clock and what it reported."""

    supervisor: WorkerSupervisor
    clock: FakeClock
    emit: CapturingEmitter
    spawner: Spawner
    task: asyncio.Task[None]
    exits: list[tuple[str, str]] = field(default_factory=list)
    beats: list[None] = field(default_factory=list)

    def of(self, event_type: str, worker_id: str = "embedded-1") -> list[dict[str, Any]]:
        return [e.data for e in self.emit.of_type(event_type) if e.correlation_id == worker_id]

    async def crash(self, code: int, worker_id: str = "embedded-1") -> dict[str, Any]:
        """The worker's process exits with `code`; the worker.exited it gives."""
        seen = len(self.of("worker.exited", worker_id))
        self.spawner.latest(worker_id).exit(code)
        await settle(lambda: len(self.of("worker.exited", worker_id)) > seen, "worker.exited")
        return self.of("worker.exited", worker_id)[-1]

    async def tick(self, seconds: float) -> None:
        """Move the fake clock one supervisor tick (at most a second) at a time, letting it run after each."""
        while seconds > 1e-9:
            step = min(workers.TICK_SEC, seconds)
            self.clock.advance(step)
            seconds -= step
            for _ in range(5):
                await asyncio.sleep(0)


async def settle(predicate: Callable[[], object], what: str) -> None:
    """Let the loop run (no time passes) until `predicate` holds."""
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"the supervisor never got to {what}")


@pytest.fixture
def spawner(monkeypatch: pytest.MonkeyPatch) -> Spawner:
    """Every process the supervisor starts during the test is a FakeProcess."""
    fake = Spawner()
    monkeypatch.setattr(workers.asyncio, "create_subprocess_exec", fake)
    return fake


@pytest.fixture
async def fleet(spawner: Spawner, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
    """Start supervisors with `count` workers on a fake clock; each one's run() is cancelled at the end."""
    tasks: list[asyncio.Task[None]] = []

    async def start(count: int = 1, **kwargs: Any) -> Fleet:
        clock, emit = FakeClock(), CapturingEmitter()
        exits: list[tuple[str, str]] = []
        beats: list[None] = []
        supervisor = WorkerSupervisor(tmp_path / "swimmy.toml", count, emit, clock,
                                      on_exit=lambda worker_id, reason: exits.append((worker_id, reason)),
                                      on_progress=lambda: beats.append(None), **kwargs)
        task = asyncio.create_task(supervisor.run(), name="workers")
        tasks.append(task)
        await settle(lambda: supervisor.spawned, "its first round of starts")
        return Fleet(supervisor, clock, emit, spawner, task, exits, beats)

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class TestStart:
    @pytest.mark.parametrize(("prefix", "ids"),
                             [(None, ["embedded-1", "embedded-2"]), ("hostb", ["hostb-1", "hostb-2"])])
    async def test_each_worker_runs_swimmy_worker_with_its_id_the_config_and_our_pid(
        self, fleet: Callable[..., Awaitable[Fleet]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        prefix: str | None, ids: list[str],
    ) -> None:
        """`python -m swimmy worker --config C --id ID` per slot, told our pid, never given our notify socket."""
        monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
        monkeypatch.setenv("WATCHDOG_USEC", "20000000")
        f = await fleet(2, **({} if prefix is None else {"id_prefix": prefix}))
        assert [p.argv for p in f.spawner.procs] == [
            (sys.executable, "-m", "swimmy", "worker", "--config", str(tmp_path / "swimmy.toml"), "--id", worker_id)
            for worker_id in ids]
        for proc in f.spawner.procs:
            assert proc.env[PARENT_PID_ENV] == str(os.getpid())
            assert "NOTIFY_SOCKET" not in proc.env and "WATCHDOG_USEC" not in proc.env
        started = f.emit.of_type("worker.started")
        assert [(e.service, e.severity, e.correlation_id) for e in started] == [("engine", "info", i) for i in ids]
        assert [e.data for e in started] == [{"worker": i, "pid": p.pid, "restarts": 0,
                                              "endpoint": "zmq.backtest_endpoint"}
                                             for i, p in zip(ids, f.spawner.procs, strict=True)]
        assert all(WORK_ENDPOINT_ENV not in proc.env for proc in f.spawner.procs)  # none given: the config's
        assert (f.supervisor.configured, f.supervisor.alive()) == (2, 2)
        assert f.supervisor.pids() == {i: p.pid for i, p in zip(ids, f.spawner.procs, strict=True)}

    async def test_workers_are_told_the_daemons_private_endpoint(
        self, fleet: Callable[..., Awaitable[Fleet]]
    ) -> None:
        """Given one (the daemon's Unix socket), every worker gets it in its environment and worker.started names it."""
        f = await fleet(2, endpoint="ipc:///tmp/swimmy-x/work.sock")
        assert [p.env[WORK_ENDPOINT_ENV] for p in f.spawner.procs] == ["ipc:///tmp/swimmy-x/work.sock"] * 2
        assert {e.data["endpoint"] for e in f.emit.of_type("worker.started")} == {"ipc:///tmp/swimmy-x/work.sock"}

    async def test_nothing_runs_and_nothing_is_spawned_before_run(self, spawner: Spawner, tmp_path: Path) -> None:
        """A new supervisor has started nothing: none alive, `spawned` false (none alive is not yet a fault)."""
        supervisor = WorkerSupervisor(tmp_path / "swimmy.toml", 2, CapturingEmitter(), FakeClock())
        assert (supervisor.configured, supervisor.alive(), supervisor.spawned, spawner.procs) == (2, 0, False, [])


class TestExit:
    async def test_an_exit_is_an_error_event_at_once_and_its_requests_are_handed_back(
        self, fleet: Callable[..., Awaitable[Fleet]]
    ) -> None:
        """worker.exited (error) with pid, exit code, time lived and the wait; on_exit at once; alive() drops."""
        f = await fleet(2)
        first = f.spawner.latest("embedded-1")
        f.clock.advance(2.5)
        exited = await f.crash(3)
        assert exited == {"worker": "embedded-1", "pid": first.pid, "exit_code": 3, "restarts": 0, "lived_sec": 2.5,
                          "restart_in_sec": 1.0}
        (event,) = f.emit.of_type("worker.exited")
        assert (event.service, event.severity) == ("engine", "error")
        assert f.exits == [("embedded-1", "process exited with code 3")]
        assert f.supervisor.alive() == 1
        assert list(f.supervisor.pids()) == ["embedded-2"]

    async def test_the_watch_beats_progress(self, fleet: Callable[..., Awaitable[Fleet]]) -> None:
        """on_progress is called by the watch loop (/healthz names the task `workers` when it stops)."""
        f = await fleet(1)
        await f.crash(1)
        before = len(f.beats)
        await f.tick(3)
        assert before >= 1 and len(f.beats) > before


class TestBackoff:
    async def test_a_restart_waits_out_the_backoff_then_starts_a_new_process(
        self, fleet: Callable[..., Awaitable[Fleet]]
    ) -> None:
        """Nothing before restart_in_sec; then worker.restarted (warning, counted) and worker.started, new pid."""
        f = await fleet(1)
        await f.crash(1)
        await f.tick(1.0)
        second = f.spawner.latest("embedded-1")
        assert (await f.crash(1))["restart_in_sec"] == 2.0
        await f.tick(1.0)
        assert len(f.spawner.procs) == 2, "restarted before its backoff"
        await f.tick(1.0)
        assert len(f.spawner.procs) == 3
        assert [e.event_type for e in f.emit.events][-2:] == ["worker.restarted", "worker.started"]
        restarted = f.emit.of_type("worker.restarted")[-1]
        assert (restarted.severity, restarted.data) == ("warning", {"worker": "embedded-1", "restarts": 2,
                                                                   "previous_pid": second.pid})
        third = f.spawner.latest("embedded-1")
        assert f.of("worker.started")[-1] == {"worker": "embedded-1", "pid": third.pid, "restarts": 2,
                                              "endpoint": "zmq.backtest_endpoint"}
        assert f.supervisor.pids() == {"embedded-1": third.pid}

    async def test_quick_deaths_double_the_wait_up_to_a_minute(self, fleet: Callable[..., Awaitable[Fleet]]) -> None:
        """A worker that dies at once, again and again, waits 1, 2, 4 ... 32 s, then 60 s each time."""
        f = await fleet(1)
        waits = []
        for _ in range(9):
            waits.append((await f.crash(1))["restart_in_sec"])
            started = len(f.of("worker.started"))
            await f.tick(waits[-1])
            await settle(lambda n=started: len(f.of("worker.started")) > n, "the restart")
        assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
        assert f.of("worker.started")[-1]["restarts"] == 9

    @pytest.mark.parametrize(("lived_sec", "wait_sec"), [(59.9, 8.0), (60.0, 1.0), (3600.0, 1.0)])
    async def test_a_worker_that_lived_a_minute_starts_over_at_one_second(
        self, fleet: Callable[..., Awaitable[Fleet]], lived_sec: float, wait_sec: float
    ) -> None:
        """After waits of 1, 2 and 4 s, a death after a stable minute waits 1 s again; a shorter life doubles."""
        f = await fleet(1)
        for wait in (1.0, 2.0, 4.0):
            assert (await f.crash(1))["restart_in_sec"] == wait
            await f.tick(wait)
        f.clock.advance(lived_sec)
        exited = await f.crash(1)
        assert (exited["lived_sec"], exited["restart_in_sec"]) == (lived_sec, wait_sec)


class TestStop:
    async def test_stop_terminates_every_worker_and_none_comes_back(
        self, fleet: Callable[..., Awaitable[Fleet]]
    ) -> None:
        """stop(): SIGTERM to each live worker, the watch ends, and no restart follows however long we wait."""
        f = await fleet(2)
        await f.crash(1, "embedded-2")
        f.clock.advance(5)  # its restart is due when the stop comes, before the watch has seen it
        await asyncio.wait_for(f.supervisor.stop(), 2)
        await asyncio.wait([f.task], timeout=2)
        assert f.task.done() and f.task.exception() is None
        assert [p.signals for p in f.spawner.procs] == [["SIGTERM"], []]
        await f.tick(120)
        assert len(f.spawner.procs) == 2 and not f.emit.of_type("worker.restarted")
        assert f.supervisor.alive() == 0

    async def test_a_worker_that_ignores_sigterm_is_killed_after_the_bounded_wait(
        self, fleet: Callable[..., Awaitable[Fleet]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SIGTERM, up to STOP_WAIT_SEC for it to work, then SIGKILL to the one still running: never a hang."""
        monkeypatch.setattr(workers, "STOP_WAIT_SEC", 0.1)
        f = await fleet(2)
        f.task.cancel()  # as the daemon does: the watch ends first, then stop()
        await asyncio.gather(f.task, return_exceptions=True)
        stuck = f.spawner.latest("embedded-2")
        stuck.obeys_sigterm = False
        await asyncio.wait_for(f.supervisor.stop(), 2)
        assert [p.signals for p in f.spawner.procs] == [["SIGTERM"], ["SIGTERM", "SIGKILL"]]
        assert [p.returncode for p in f.spawner.procs] == [-signal.SIGTERM, -signal.SIGKILL]

    async def test_stop_is_idempotent(self, fleet: Callable[..., Awaitable[Fleet]]) -> None:
        """A second stop() signals nothing again; stop() before run() does nothing."""
        f = await fleet(1)
        await f.supervisor.stop()
        await f.supervisor.stop()
        assert f.spawner.procs[0].signals == ["SIGTERM"]
        idle = WorkerSupervisor(Path("unused.toml"), 1, CapturingEmitter(), FakeClock())
        await asyncio.wait_for(idle.stop(), 1)


STUBBORN = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).write_text("ready")
time.sleep(30)
"""


class TestRealProcesses:
    async def test_a_real_exit_code_is_reported_and_stop_ends_polite_and_stuck_children(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Real children: exit code 3 reaches worker.exited; at stop a polite one dies of SIGTERM, a stuck one of
        SIGKILL after the bounded wait."""
        real = asyncio.create_subprocess_exec
        ready = tmp_path / "stubborn-ready"
        programs = iter([["-c", "import sys; sys.exit(3)"], ["-c", "import time; time.sleep(30)"],
                         ["-c", STUBBORN, str(ready)]])
        procs: list[asyncio.subprocess.Process] = []

        async def stand_in(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
            procs.append(await real(sys.executable, *next(programs), **kwargs))
            return procs[-1]

        monkeypatch.setattr(workers.asyncio, "create_subprocess_exec", stand_in)
        monkeypatch.setattr(workers, "STOP_WAIT_SEC", 0.3)
        emit = CapturingEmitter()
        supervisor = WorkerSupervisor(tmp_path / "swimmy.toml", 3, emit, FakeClock())
        task = asyncio.create_task(supervisor.run(), name="workers")
        try:
            for _ in range(500):
                if emit.of_type("worker.exited") and ready.exists():
                    break
                await asyncio.sleep(0.01)  # real processes starting: nothing to fake here
            (exited,) = emit.of_type("worker.exited")
            assert (exited.correlation_id, exited.data["exit_code"]) == ("embedded-1", 3)
            assert list(supervisor.pids()) == ["embedded-2", "embedded-3"]
        finally:
            task.cancel()  # as the daemon does: the watch ends first, then stop()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.wait_for(supervisor.stop(), 5)
        assert [p.returncode for p in procs] == [3, -signal.SIGTERM, -signal.SIGKILL]
        assert supervisor.alive() == 0
