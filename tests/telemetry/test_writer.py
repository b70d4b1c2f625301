"""The writer on real files (SPEC §2.3): whole lines, rotation, drops, failures and recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import shutil
import stat
import time
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import read_all_events, read_events

from swimmy.config import TelemetryConfig
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import BACKOFF_MAX_SEC, TelemetryWriter
from swimmy.testing import FakeClock


@dataclasses.dataclass
class Pipeline:
    queue: EventQueue
    writer: TelemetryWriter
    task: asyncio.Task[None]
    path: Path

    async def close(self) -> None:
        self.queue.close()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def make_pipeline(tmp_path: Path) -> AsyncIterator[Any]:
    pipelines: list[Pipeline] = []

    async def make(clock: FakeClock | None = None, **overrides: Any) -> Pipeline:
        cfg = TelemetryConfig(**{"path": tmp_path / "logs" / "t.jsonl", "fsync": "off", **overrides})
        queue = EventQueue(cfg.queue_size)
        queue.bind_loop(asyncio.get_running_loop())
        encoder = Encoder(run_id="RUN", pid=os.getpid(), host="h", max_event_bytes=cfg.max_event_bytes)
        timing = {"monotonic": clock.monotonic, "sleep": clock.sleep} if clock else {}
        writer = TelemetryWriter(cfg, queue, encoder, **timing)
        writer.open()
        p = Pipeline(queue, writer, asyncio.create_task(writer.run()), Path(cfg.path))
        pipelines.append(p)
        return p

    yield make
    for p in pipelines:
        if not p.task.done():
            await p.close()


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return sorted(e["seq"] for e in events)


class FaultyDisk:
    """The telemetry file's disk, failing on cue: os.write, os.fsync and os.statvfs answer for that file (and
    its directory) as a full or failing disk would; every other fd and path goes to the real call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
        self.path = path
        self.full = False  # every write() fails with ENOSPC
        self.tear_tail_bytes: int | None = None  # the next write() stores all but this many bytes, then full
        self.fsync_failures = 0  # the next N fsync() calls fail with EIO
        self.free_bytes = 1 << 30  # what statvfs says is free
        self.write_calls = self.fsync_calls = self.statvfs_calls = 0
        self._write, self._fsync, self._statvfs = os.write, os.fsync, os.statvfs
        monkeypatch.setattr(os, "write", self.write)
        monkeypatch.setattr(os, "fsync", self.fsync)
        monkeypatch.setattr(os, "statvfs", self.statvfs)

    def _ours(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False

    def write(self, fd: int, data: Any) -> int:
        if not self._ours(fd):
            return self._write(fd, data)
        self.write_calls += 1
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.tear_tail_bytes is not None:  # as when the bytes fill the file's last page: a short count
            keep = len(data) - self.tear_tail_bytes
            self.tear_tail_bytes, self.full = None, True
            return self._write(fd, memoryview(data)[:keep])
        return self._write(fd, data)

    def fsync(self, fd: int) -> None:
        if not self._ours(fd):
            return self._fsync(fd)
        self.fsync_calls += 1
        if self.fsync_failures:
            self.fsync_failures -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return self._fsync(fd)

    def statvfs(self, path: Any) -> Any:
        if Path(path) != self.path.parent:
            return self._statvfs(path)
        self.statvfs_calls += 1
        return types.SimpleNamespace(f_bavail=self.free_bytes // 4096, f_frsize=4096)


async def until(predicate: Callable[[], object], what: str) -> None:
    """Let the writer run until `predicate()` holds; the deadline only guards against a hang."""
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, f"the writer never got to: {what}"
        await asyncio.sleep(0.001)


async def retry(p: Pipeline, clock: FakeClock) -> None:
    """Move the fake clock past any backoff and wait for the writer's next attempt to fail or succeed."""
    failed = p.writer.failed_writes
    clock.advance(BACKOFF_MAX_SEC)
    await until(lambda: p.writer.failed_writes > failed or not p.writer.failing, "its next retry")


async def start_outage(p: Pipeline, disk: FaultyDisk, lines: int = 5) -> list[dict[str, Any]]:
    """Write a few lines, fill the disk, then emit `lines` fat events: the writer fails. Returns the lines before."""
    for i in range(3):
        p.queue.emit("before.outage", service="core", data={"i": i})
    await until(lambda: p.writer.written == 3, "the lines before the outage")
    disk.full = True
    for i in range(lines):
        p.queue.emit("during.outage", service="core", data={"i": i, "pad": "x" * 200})
    await until(lambda: p.writer.failing, "the outage")
    return read_events(p.path, complete=True)


def outage_lines(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_type"] for e in events if e["event_type"] in ("telemetry.failing", "telemetry.recovered")]


class TestSchema:
    async def test_emitted_event_is_one_line_with_the_envelope(self, make_pipeline: Any) -> None:
        """Seed Task 1: an emitted event reaches the file with every envelope field set."""
        p = await make_pipeline()
        p.queue.emit("test.event", service="school", severity="info", correlation_id="CID-1", data={"foo": 1})
        await p.close()
        (obj,) = read_events(p.path)
        assert obj["schema_version"] == 1
        assert obj["timestamp"].endswith("Z")
        assert obj["log_type"] == "telemetry"
        assert obj["event_type"] == "test.event"
        assert obj["service"] == "school"
        assert obj["severity"] == "info"
        assert obj["correlation_id"] == "CID-1"
        assert obj["data"] == {"foo": 1}

    async def test_file_is_created_with_mode_0640(self, make_pipeline: Any) -> None:
        """The file is readable by its group (the `swimmy` group) and nobody else."""
        old = os.umask(0o077)
        try:
            p = await make_pipeline()
        finally:
            os.umask(old)
        await p.close()
        assert stat.S_IMODE(p.path.stat().st_mode) == 0o640

    async def test_bad_input_is_written_not_lost(self, make_pipeline: Any) -> None:
        """Unserializable data and a bad severity are written; nothing raises."""
        p = await make_pipeline()
        p.queue.emit("odd.event", service="core", severity="LOUD", data={"obj": object(), 1: 2})
        await p.close()
        (obj,) = read_events(p.path)
        assert obj["severity"] == "warning"
        assert obj["data"]["severity_given"] == "LOUD"
        assert obj["data"]["1"] == 2


class TestRotation:
    async def test_tiny_max_bytes_gives_path_1(self, make_pipeline: Any) -> None:
        """Seed Task 7: with a tiny max_bytes the file rotates to path.1."""
        p = await make_pipeline(max_bytes=10)
        p.queue.emit("rotate.test", service="core", correlation_id="CID", data={"x": 1})
        await asyncio.sleep(0.05)
        p.queue.emit("rotate.test", service="core", correlation_id="CID", data={"x": 2})
        await p.close()
        assert p.path.with_name("t.jsonl.1").exists()

    async def test_keeps_exactly_backups_and_every_file_parses(self, make_pipeline: Any) -> None:
        """Many rotations leave exactly `backups` backups; each new file starts with telemetry.rotated."""
        p = await make_pipeline(max_bytes=4096, backups=3)
        for i in range(60):
            for j in range(20):
                p.queue.emit("fill.event", service="core", data={"i": i, "j": j, "pad": "x" * 50})
            await asyncio.sleep(0)
        await p.close()
        names = sorted(x.name for x in p.path.parent.iterdir() if not x.name.endswith(".lock"))
        assert names == ["t.jsonl", "t.jsonl.1", "t.jsonl.2", "t.jsonl.3"]
        assert p.writer.rotations > 3
        for name in names:
            events = read_events(p.path.parent / name)
            assert events[0]["event_type"] == "telemetry.rotated"
            assert events[0]["data"]["backups"] == 3
            assert events[0]["data"]["previous_bytes"] > 0
            assert all(e["event_type"] == "fill.event" for e in events[1:])
        kept = seqs(read_all_events(p.path))
        assert kept == list(range(kept[0], kept[-1] + 1)), "a gap inside the kept files"

    async def test_a_file_holding_only_the_header_is_not_rotated(self, make_pipeline: Any) -> None:
        """max_bytes smaller than one line gives one batch a file, not a rotation loop."""
        p = await make_pipeline(max_bytes=1, backups=50)
        for i in range(5):
            p.queue.emit("big.event", service="core", data={"i": i})
            await asyncio.sleep(0.02)
        await p.close()
        files = sorted(p.path.parent.glob("t.jsonl.*"))
        assert len(files) == 4
        for f in files:
            events = read_events(f)
            assert len(events) >= 1
        assert [e["event_type"] for e in read_events(p.path)] == ["telemetry.rotated", "big.event"]

    async def test_stale_backups_are_deleted_at_start(self, make_pipeline: Any, tmp_path: Path) -> None:
        """Backups beyond `backups` left by an earlier run are deleted when the writer opens."""
        logs = tmp_path / "logs"
        logs.mkdir()
        for n in (1, 2, 3, 4, 5):
            (logs / f"t.jsonl.{n}").write_text("{}\n")
        p = await make_pipeline(backups=2)
        await p.close()
        assert sorted(x.name for x in logs.glob("t.jsonl.*")) == ["t.jsonl.1", "t.jsonl.2"]


class TestDrops:
    async def test_drops_are_counted_and_reported_without_a_seq_gap(self, make_pipeline: Any) -> None:
        """A full queue drops and counts; telemetry.dropped is written once there is room; seq has no gap."""
        p = await make_pipeline(queue_size=10)
        for i in range(25):
            p.queue.emit("burst.a" if i % 2 else "burst.b", service="core", data={"i": i})
        await asyncio.sleep(0.05)
        await p.close()
        events = read_events(p.path)
        (dropped,) = [e for e in events if e["event_type"] == "telemetry.dropped"]
        assert dropped["data"]["dropped"] == 15
        assert dropped["data"]["new"] == 15
        assert dropped["data"]["by_event_type"] == {"burst.a": 7, "burst.b": 8}
        assert dropped["severity"] == "warning"
        assert seqs(events) == list(range(1, len(events) + 1))


class TestFailures:
    async def test_path_replaced_by_a_directory_fails_then_recovers(self, make_pipeline: Any) -> None:
        """An unwritable path: the daemon keeps accepting, then telemetry.recovered is the first line written."""
        p = await make_pipeline()
        p.queue.emit("before.outage", service="core")
        await asyncio.sleep(0.05)
        moved = p.path.with_name("moved-away.jsonl")
        os.replace(p.path, moved)
        p.path.mkdir()  # open() now fails with EISDIR
        p.writer.request_reopen()
        p.queue.emit("during.outage", service="core")
        for _ in range(100):
            if p.writer.failing and p.writer.failed_writes >= 2:
                break
            await asyncio.sleep(0.02)
        assert p.writer.failing
        p.queue.emit("still.accepted", service="core")
        p.path.rmdir()
        for _ in range(200):
            if not p.writer.failing:
                break
            await asyncio.sleep(0.02)
        p.queue.emit("after.outage", service="core")
        await p.close()
        events = read_events(p.path)
        types = [e["event_type"] for e in events]
        assert types[0] == "telemetry.rotated" and events[0]["data"]["external"] is True
        assert types[1] == "telemetry.recovered"
        recovered = events[1]["data"]
        assert recovered["failed_writes"] >= 2
        assert recovered["outage_sec"] > 0
        assert {"during.outage", "telemetry.failing", "still.accepted", "after.outage"} <= set(types)
        failing = next(e for e in events if e["event_type"] == "telemetry.failing")
        assert failing["severity"] == "error" and "EISDIR" in failing["data"]["error"]
        all_seqs = sorted(seqs(events) + seqs(read_events(moved)))
        assert all_seqs == list(range(1, len(all_seqs) + 1))

    async def test_deleted_directory_is_recreated_and_noticed(self, make_pipeline: Any) -> None:
        """Deleting the log directory does not lose the stream for longer than the identity check."""
        p = await make_pipeline()
        p.queue.emit("before", service="core")
        await asyncio.sleep(0.05)
        shutil.rmtree(p.path.parent)
        p.writer.request_reopen()
        p.queue.emit("after", service="core")
        await p.close()
        types = [e["event_type"] for e in read_events(p.path)]
        assert types == ["telemetry.rotated", "after"]


class TestFsync:
    @pytest.mark.parametrize(("policy", "expect_syncs"), [("off", False), ("always", True)])
    async def test_fsync_policy(self, make_pipeline: Any, policy: str, expect_syncs: bool) -> None:
        """`always` fsyncs every batch; `off` never does."""
        p = await make_pipeline(fsync=policy)
        for i in range(3):
            p.queue.emit("e", service="core", data={"i": i})
            await asyncio.sleep(0.02)
        await p.close()
        assert (p.writer.fsyncs >= 3) is expect_syncs
        assert (p.writer.fsyncs == 0) is (not expect_syncs)

    async def test_interval_fsyncs_an_idle_file_within_the_interval(self, make_pipeline: Any) -> None:
        """`interval`: written events are fsynced within fsync_interval_ms even if nothing else comes."""
        p = await make_pipeline(fsync="interval", fsync_interval_ms=50)
        p.queue.emit("e", service="core")
        for _ in range(100):
            if p.writer.fsyncs:
                break
            await asyncio.sleep(0.01)
        assert p.writer.fsyncs >= 1
        await p.close()


class TestRecovery:
    """An outage ends only with a whole batch written and synced (issue 12 item 5: no recovered/failing flap)."""

    async def test_a_partial_retry_is_not_a_recovery(self, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        """Partial retry then whole retry: one failing, one recovered right after the old lines, every seq once."""
        clock = FakeClock()
        p = await make_pipeline(clock=clock)
        disk = FaultyDisk(monkeypatch, p.path)
        before = await start_outage(p, disk)
        disk.full, disk.tear_tail_bytes = False, 100  # telemetry.recovered and most of the batch fit, then ENOSPC
        await retry(p, clock)
        assert p.writer.failing
        disk.full = False
        await retry(p, clock)
        assert not p.writer.failing
        p.queue.emit("after.outage", service="core")
        await p.close()
        events = read_events(p.path, complete=True)  # no torn line
        assert outage_lines(events) == ["telemetry.recovered", "telemetry.failing"]
        assert events[: len(before)] == before
        recovered = events[len(before)]
        assert recovered["event_type"] == "telemetry.recovered"
        assert recovered["data"]["failed_writes"] == 2
        assert [e["data"]["i"] for e in events if e["event_type"] == "during.outage"] == [0, 1, 2, 3, 4]
        assert seqs(events) == list(range(1, len(events) + 1)), "every seq exactly once"

    async def test_a_partial_retry_leaves_the_file_byte_identical(
        self, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """During an outage a partial write is cut back to the size before it; its lines stay pending."""
        clock = FakeClock()
        p = await make_pipeline(clock=clock)
        disk = FaultyDisk(monkeypatch, p.path)
        await start_outage(p, disk)
        at_rest, pending, calls = p.path.read_bytes(), p.writer.pending_lines, disk.write_calls
        disk.full, disk.tear_tail_bytes = False, 100
        await retry(p, clock)
        assert disk.write_calls == calls + 2, "the retry must have written part of its batch, then hit ENOSPC"
        assert p.path.read_bytes() == at_rest
        assert p.writer.failing and p.writer.pending_lines == pending
        disk.full = False
        await retry(p, clock)
        await p.close()

    async def test_no_write_is_tried_until_the_full_disk_has_room(
        self, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After ENOSPC, retries are skipped (no write) while statvfs shows too little free; then it recovers."""
        clock = FakeClock()
        p = await make_pipeline(clock=clock)
        disk = FaultyDisk(monkeypatch, p.path)
        await start_outage(p, disk)
        disk.full, disk.free_bytes = False, 4096  # the write would pass now; the disk is still at the brink
        calls = disk.write_calls
        for n in range(1, 4):
            p.queue.emit("still.accepted", service="core", data={"n": n})
            clock.advance(BACKOFF_MAX_SEC)
            await until(lambda n=n: disk.statvfs_calls >= n, f"retry {n} to look at the free space")
        assert disk.write_calls == calls
        assert p.writer.failing and p.writer.failed_writes == 1
        disk.free_bytes = 1 << 30
        await retry(p, clock)
        assert not p.writer.failing and disk.write_calls > calls
        await p.close()
        events = read_events(p.path, complete=True)
        assert outage_lines(events) == ["telemetry.recovered", "telemetry.failing"]
        assert next(e for e in events if e["event_type"] == "telemetry.recovered")["data"]["failed_writes"] == 1
        assert sum(e["event_type"] == "still.accepted" for e in events) == 3
        assert seqs(events) == list(range(1, len(events) + 1))

    async def test_a_failed_fsync_of_the_recovery_batch_keeps_failing(
        self, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The batch ending an outage is fsynced even with fsync "off"; a failed fsync undoes it; written once later."""
        clock = FakeClock()
        p = await make_pipeline(clock=clock)
        disk = FaultyDisk(monkeypatch, p.path)
        before = await start_outage(p, disk)
        at_rest = p.path.read_bytes()
        disk.full, disk.fsync_failures = False, 1
        await retry(p, clock)
        assert disk.fsync_calls == 1
        assert p.writer.failing and p.writer.failed_writes == 2
        assert p.path.read_bytes() == at_rest
        await retry(p, clock)
        assert not p.writer.failing and disk.fsync_calls == 2
        await p.close()
        events = read_events(p.path, complete=True)
        assert outage_lines(events) == ["telemetry.recovered", "telemetry.failing"]
        assert events[len(before)]["event_type"] == "telemetry.recovered"
        assert events[len(before)]["data"]["failed_writes"] == 2
        assert [e["data"]["i"] for e in events if e["event_type"] == "during.outage"] == [0, 1, 2, 3, 4]
        assert seqs(events) == list(range(1, len(events) + 1))
