"""The writer on real files (SPEC §2.3): whole lines, rotation, drops, failures and recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import read_all_events, read_events

from swimmy.config import TelemetryConfig
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.writer import TelemetryWriter


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

    async def make(**overrides: Any) -> Pipeline:
        cfg = TelemetryConfig(**{"path": tmp_path / "logs" / "t.jsonl", "fsync": "off", **overrides})
        queue = EventQueue(cfg.queue_size)
        queue.bind_loop(asyncio.get_running_loop())
        encoder = Encoder(run_id="RUN", pid=os.getpid(), host="h", max_event_bytes=cfg.max_event_bytes)
        writer = TelemetryWriter(cfg, queue, encoder)
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
