"""The bounded queue and emit (SPEC §2.2): seq at acceptance, counted drops, never raises."""

from __future__ import annotations

import asyncio
import threading

from swimmy.telemetry.queue import EventQueue


class TestAcceptance:
    def test_seq_is_given_at_acceptance_and_drops_take_none(self) -> None:
        """A full queue drops and counts per event type; accepted events keep contiguous seqs."""
        q = EventQueue(3, time_fn=lambda: 1.0)
        for i in range(5):
            q.emit("a.b" if i % 2 else "c.d", service="core", data={"i": i})
        records = q.take(10)
        assert [r[0] for r in records] == [1, 2, 3]
        assert q.dropped_total == 2
        assert dict(q.take_drops()) == {"a.b": 1, "c.d": 1}
        assert dict(q.take_drops()) == {}
        q.emit("e.f", service="core")
        assert q.take(1)[0][0] == 4

    def test_the_timestamp_is_the_moment_of_the_call(self) -> None:
        """The record carries the time emit was called, not the time it is written."""
        now = [100.0]
        q = EventQueue(10, time_fn=lambda: now[0])
        q.emit("a.b", service="core")
        now[0] = 200.0
        assert q.take(1)[0][1] == 100.0

    def test_emit_after_close_is_counted_not_raised(self) -> None:
        """After the writer stopped, emit neither raises nor accepts: the loss is counted."""
        q = EventQueue(10)
        q.close()
        q.emit("late.event", service="core", data={"x": object()})
        assert len(q) == 0
        assert q.dropped_after_close == 1
        assert q.dropped_total == 1

    def test_emit_survives_a_broken_clock(self) -> None:
        """Nothing a caller or a dependency does makes emit raise."""

        def broken() -> float:
            raise RuntimeError("clock")

        q = EventQueue(10, time_fn=broken)
        q.emit("a.b", service="core")
        assert q.internal_errors == 1


class TestThreads:
    async def test_emit_from_another_thread_goes_through_the_loop(self) -> None:
        """An emit from a thread is accepted on the loop (call_soon_threadsafe), in order."""
        q = EventQueue(100)
        q.bind_loop(asyncio.get_running_loop())

        def worker() -> None:
            for i in range(10):
                q.emit("thread.event", service="core", data={"i": i})

        t = threading.Thread(target=worker)
        t.start()
        await asyncio.to_thread(t.join)
        for _ in range(10):
            await asyncio.sleep(0)
        records = q.take(100)
        assert [r[7]["i"] for r in records] == list(range(10))

    async def test_wait_wakes_on_emit(self) -> None:
        """The consumer sleeping in wait() wakes as soon as something is queued."""
        q = EventQueue(10)
        q.bind_loop(asyncio.get_running_loop())
        waiter = asyncio.create_task(q.wait(30))
        await asyncio.sleep(0)
        q.emit("a.b", service="core")
        await asyncio.wait_for(waiter, 1)
