"""The telemetry writer: the only task that touches the JSONL file (SPEC §2.3).

It drains the queue in batches, encodes them, writes whole lines with one
`write()` per batch, rotates by size, fsyncs by policy (in a thread, so a slow
disk never stalls the loop), and survives every write failure: the batch is
kept and retried with a capped backoff, a partial write is truncated back to
its last complete line, and the first line written after an outage is
`telemetry.recovered`. An outage ends only with a whole batch written and
fsynced, and after a full disk only once it has a margin free again, so a disk
hovering at full gives one outage, not a flapping recovered/failing pair.

The bytes themselves (open, whole writes, truncation, fsync, close) are done
by its base class, swimmy/telemetry/logfile.py.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Awaitable, Callable

from swimmy.backoff import capped_backoff
from swimmy.config import TelemetryConfig
from swimmy.telemetry.envelope import Encoder
from swimmy.telemetry.logfile import LogFile, _describe_os_error, _PartialWrite
from swimmy.telemetry.queue import EventQueue
from swimmy.telemetry.rotation import apply_rotation, prune_backups

# Lines per batch. Encoding costs a few microseconds a line on this class of machine, so 256 lines
# keep one batch's stall of the event loop near a millisecond (bench/telemetry_bench.py measures it).
BATCH_LINES = 256
TICK_SEC = 1.0  # the writer wakes at least this often: progress, fsync deadlines, file identity checks
BACKOFF_MIN_SEC = 0.05
BACKOFF_MAX_SEC = 5.0
# After ENOSPC or EDQUOT, a retry waits until the filesystem has this much free, and at least
# RECOVERY_BATCH_MULTIPLE times the batch owed. A disk hovering at full (a few pages freed by another
# writer, then taken again) would otherwise let one retry through and fail the next batch: a
# telemetry.recovered and a new telemetry.failing, both on Discord, per wobble. A batch of typical lines
# is under 100 KiB (256 lines of ~300 bytes), so 256 KiB holds the recovery batch and the next batches of
# the backlog, and is still met by any real fix (a rotated log, a deleted backup) at once.
RECOVERY_FREE_BYTES = 256 * 1024
RECOVERY_BATCH_MULTIPLE = 4  # big events (up to max_event_bytes each) need room in proportion
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class TelemetryWriter(LogFile):
    """Owns the telemetry file; run() until the queue is closed and drained."""

    def __init__(
        self,
        cfg: TelemetryConfig,
        queue: EventQueue,
        encoder: Encoder,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_progress: Callable[[], None] | None = None,
        on_state_change: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(cfg, monotonic=monotonic)
        self.queue = queue
        self.encoder = encoder
        self._sleep = sleep  # the wait between retries (tests pass a FakeClock's)
        self._on_progress = on_progress or (lambda: None)
        self._on_state_change = on_state_change or (lambda failing: None)
        self._pending: list[bytes] = []
        self._header_line: bytes | None = None
        self._header_seq: int | None = None
        self._recovered_seq: int | None = None
        self._recovered_data: dict[str, object] = {}
        self._next_check = monotonic() + TICK_SEC
        self._reopen_requested = False
        self._backoff = 0.0
        self._retry_at = 0.0
        self._outage_start = 0.0
        self._outage_failed = 0
        self._outage_dropped_base = 0
        self._last_errno: int | None = None
        self._idle = asyncio.Event()
        self.stall_sec = 0.0  # debug.stall_writer: sleep this long before the next batch
        # counters (snapshots, daemon.stopped)
        self.written = 0
        self.failed_writes = 0
        self.rotations = 0
        self.deferred_retries = 0  # retries skipped for want of free space (not failed writes: nothing was tried)
        self.failing = False

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> tuple[int, ...]:
        """Prune stale backups and open the file for appending; returns the pruned suffixes.

        A file that can't be opened now is not fatal: run() treats it as a write failure.
        """
        pruned = prune_backups(self.path, self.cfg.backups)
        try:
            self._open()
        except OSError as exc:
            self._fail(exc)
        return pruned

    def request_reopen(self) -> None:
        """SIGHUP: reopen the path on the next iteration (after an external logrotate)."""
        self._reopen_requested = True

    @property
    def pending_lines(self) -> int:
        """Lines taken from the queue but not yet on disk."""
        return len(self._pending)

    async def flush(self) -> None:
        """Wait until everything queued so far is written (or the writer is failing)."""
        while len(self.queue) or self._pending:
            self._idle.clear()
            await self._idle.wait()

    async def run(self) -> None:
        """Drain the queue to the file until it is closed and empty."""
        try:
            while True:
                self._on_progress()
                now = self._monotonic()
                if now >= self._next_check or self._reopen_requested:
                    self._next_check = now + TICK_SEC
                    await self._check_file_identity()
                if self.stall_sec > 0:
                    stall, self.stall_sec = self.stall_sec, 0.0
                    await asyncio.sleep(stall)
                if not self._pending:
                    if not len(self.queue):
                        self._idle.set()
                        if self.queue.closed:
                            break
                        await self._sync_if_due()
                        await self.queue.wait(self._idle_timeout())
                        continue
                    self._pending = self.encoder.encode_batch(self.queue.take(BATCH_LINES))
                    self._report_drops()
                elif now < self._retry_at:
                    self._idle.set()  # a failing writer is as flushed as it can be
                    await self._sleep(min(self._retry_at - now, TICK_SEC))
                    continue
                if await self._write_pending():
                    await self._sync_after_write()
                await asyncio.sleep(0)  # one batch at a time: let the loop breathe
        finally:
            await self._close_file()
            self._idle.set()

    # -- writing -----------------------------------------------------------------------------

    async def _write_pending(self) -> bool:
        """Write the owed header, telemetry.recovered (during an outage) and the pending batch; True if written.

        During an outage the batch counts only whole and fsynced: a partial write, or a failed fsync, is
        truncated away and the lines stay pending, so telemetry.recovered is never announced for a write
        that the next line takes back. Outside an outage a partial write keeps its whole lines.
        """
        recovering = self.failing
        if recovering and not self._room_to_recover():
            self.deferred_retries += 1
            self._try_truncate()  # a torn tail must not wait for the space to come back
            self._schedule_retry(self._monotonic())
            return False
        out: list[bytes] = []
        has_header = False
        start = 0  # the file's size before this write: what a failed recovery is truncated back to
        try:
            if self._fd is None:
                self._open()
            assert self._fd is not None
            if self._truncate_to is not None:
                os.ftruncate(self._fd, self._truncate_to)
                self._size, self._truncate_to = self._truncate_to, None
            batch_bytes = sum(map(len, self._pending))
            if self._size > 0 and not self._only_header and self._size + batch_bytes > self.cfg.max_bytes:
                await self._rotate()
            if self._header_line is not None:
                out.append(self._header_line)
                has_header = True
            if recovering:
                out.append(self._recovered_line())
            out.extend(self._pending)
            start = self._size
            self._write_all(b"".join(out))
        except _PartialWrite as exc:
            if not recovering:
                self._committed(out, _whole_lines(out, exc.done), has_header, has_recovered=False)
            self._roll_back(start if recovering else self._size)
            self._fail(exc)
            return False
        except OSError as exc:
            self._fail(exc)
            return False
        if recovering:
            try:
                await self._sync_recovery()
            except OSError as exc:
                self._roll_back(start)
                self._fail(exc)
                return False
        self._committed(out, len(out), has_header, recovering)
        if recovering:
            self._dirty = False  # _sync_recovery made it durable
        return True

    def _committed(self, out: list[bytes], count: int, has_header: bool, has_recovered: bool) -> None:
        """Account for the first `count` lines of `out` as on disk; drop them from what is owed."""
        if count == 0:
            return
        self._size += sum(len(line) for line in out[:count])
        self.written += count
        self._dirty = True
        rest = count
        if has_header:
            self._header_line = self._header_seq = None
            rest -= 1
        if has_recovered and rest:
            self._recover()
            rest -= 1
        if rest:
            del self._pending[:rest]
        self._only_header = has_header and count == 1

    def _recovered_line(self) -> bytes:
        if self._recovered_seq is None:
            self._recovered_seq = self.queue.next_seq()
        data = {
            "failed_writes": self.failed_writes - self._outage_failed,
            "dropped": self.queue.dropped_total - self._outage_dropped_base,
            "outage_sec": round(self._monotonic() - self._outage_start, 3),
            "path": str(self.path),
        }
        self._recovered_data = data
        return self._writer_line(self._recovered_seq, "telemetry.recovered", "warning", data)

    def _writer_line(self, seq: int, event_type: str, severity: str, data: dict[str, object]) -> bytes:
        record = (seq, time.time(), "telemetry", event_type, "telemetry", severity, self.encoder.run_id, data)
        return self.encoder.encode(record)

    # -- failure and recovery ----------------------------------------------------------------

    def _fail(self, exc: OSError) -> None:
        self.failed_writes += 1
        self.last_error = _describe_os_error(exc)
        self._last_errno = exc.errno
        now = self._monotonic()
        self._schedule_retry(now)
        if self.failing:
            return  # the same outage: one telemetry.failing for it
        self.failing = True
        self._outage_start = now
        self._outage_failed = self.failed_writes - 1
        self._outage_dropped_base = self.queue.dropped_total
        self.queue.emit(
            "telemetry.failing",
            service="telemetry",
            severity="error",
            correlation_id=self.encoder.run_id,
            data={"error": self.last_error, "path": str(self.path)},
        )
        self._on_state_change(True)

    def _schedule_retry(self, now: float) -> None:
        self._backoff = capped_backoff(self._backoff, base_sec=BACKOFF_MIN_SEC, cap_sec=BACKOFF_MAX_SEC)
        self._retry_at = now + self._backoff

    def _room_to_recover(self) -> bool:
        """Whether a retry may be tried: after ENOSPC or EDQUOT, only with RECOVERY_FREE_BYTES free (see there)."""
        if self._last_errno not in _FULL_ERRNOS:
            return True
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return True  # no answer is no reason to wait: the write itself will tell
        owed = sum(map(len, self._pending)) + len(self._header_line or b"")
        return st.f_bavail * st.f_frsize >= max(RECOVERY_FREE_BYTES, RECOVERY_BATCH_MULTIPLE * owed)

    def _recover(self) -> None:
        self.queue.announce("telemetry.recovered", "warning", self.encoder.run_id, self._recovered_data)
        self.failing = False
        self._backoff = 0.0
        self._retry_at = 0.0
        self._recovered_seq = None
        self._on_state_change(False)

    def _report_drops(self) -> None:
        if not self.queue.drops or self.queue.closed:
            return
        drops = self.queue.take_drops()
        self.queue.emit(
            "telemetry.dropped",
            service="telemetry",
            severity="warning",
            correlation_id=self.encoder.run_id,
            data={
                "dropped": self.queue.dropped_total,
                "new": sum(drops.values()),
                "by_event_type": dict(self.queue.drops_by_type),
            },
        )

    # -- rotation and reopening --------------------------------------------------------------

    async def _rotate(self) -> None:
        previous = self._size
        self._close_in_background()
        apply_rotation(self.path, self.cfg.backups)
        self.rotations += 1
        self._open()
        self._header(previous, external=False)

    def _header(self, previous_bytes: int, *, external: bool) -> None:
        if self._header_seq is None:
            self._header_seq = self.queue.next_seq()
        data: dict[str, object] = {"previous_bytes": previous_bytes, "backups": self.cfg.backups}
        if external:
            data["external"] = True
        self._header_line = self._writer_line(self._header_seq, "telemetry.rotated", "info", data)

    async def _check_file_identity(self) -> None:
        """Reopen when asked (SIGHUP) or when the path no longer names our file (moved, deleted)."""
        requested, self._reopen_requested = self._reopen_requested, False
        if self._fd is None:
            return  # the next write opens it
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._inode
        except OSError:
            same = False
        if same and not requested:
            return
        previous = self._size
        await self._close_file()
        if not same:
            self.rotations += 1
            self._header(previous, external=True)  # owed to whichever file opens next
        try:
            self._open()
        except OSError as exc:
            self._fail(exc)

    def _idle_timeout(self) -> float:
        timeout = TICK_SEC
        if self._dirty and self.cfg.fsync == "interval":
            due = self._last_sync + self.cfg.fsync_interval_ms / 1000 - self._monotonic()
            timeout = min(timeout, max(due, 0.001))
        return timeout


def _whole_lines(lines: list[bytes], done: int) -> int:
    """How many of `lines` fit completely in the first `done` bytes."""
    count = total = 0
    for line in lines:
        total += len(line)
        if total > done:
            break
        count += 1
    return count
