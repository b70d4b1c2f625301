"""Loop lag over a second writes debug.task_dump with the blocking stack and every task."""

from __future__ import annotations

import asyncio
import time

from swimmy.daemon.loopwatch import LoopWatch, dump_tasks
from swimmy.testing import CapturingEmitter


def block_the_loop_for_a_while() -> None:
    time.sleep(1.4)  # the test's point: a blocking call on the event loop


class TestLoopWatch:
    async def test_a_blocked_loop_is_dumped_with_the_blocking_stack(self) -> None:
        """A stall over 1 s gives one dump naming the function that blocked and the lag."""
        emit = CapturingEmitter()
        watch = LoopWatch(emit, "RUN")
        watch.start()
        try:
            await asyncio.sleep(0.2)
            block_the_loop_for_a_while()
            for _ in range(50):
                await asyncio.sleep(0.02)
                if emit.of_type("debug.task_dump"):
                    break
        finally:
            watch.stop()
        (dump,) = emit.of_type("debug.task_dump")
        assert dump.severity == "warning"
        assert dump.correlation_id == "RUN"
        assert dump.data["reason"] == "loop_lag"
        assert dump.data["loop_lag_ms"] >= 1000
        assert any("block_the_loop_for_a_while" in line for line in dump.data["blocking_stack"])
        assert watch.read_max_lag() >= 1000

    async def test_an_idle_loop_is_not_dumped(self) -> None:
        """No stall, no dump."""
        emit = CapturingEmitter()
        watch = LoopWatch(emit, "RUN")
        watch.start()
        await asyncio.sleep(0.5)
        watch.stop()
        assert emit.of_type("debug.task_dump") == []

    async def test_dump_lists_tasks_with_stacks(self) -> None:
        """dump_tasks names each task and where it waits."""
        emit = CapturingEmitter()

        async def parked() -> None:
            await asyncio.sleep(30)

        task = asyncio.create_task(parked(), name="parked-task")
        await asyncio.sleep(0)
        dump_tasks(emit, "RUN", "test")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        (dump,) = emit.of_type("debug.task_dump")
        parked_info = next(t for t in dump.data["tasks"] if t["name"] == "parked-task")
        assert any("parked" in line for line in parked_info["stack"])
