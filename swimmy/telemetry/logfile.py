"""The telemetry file's bytes, for its one user, the writer (swimmy/telemetry/writer.py: a TelemetryWriter is one).

Open for appending (mode 0640), write a whole buffer (a write that fails part-way says how many bytes reached
the file, so the writer can keep its whole lines), truncate back to a size, fsync by the `telemetry.fsync`
policy (in a thread, so a slow disk never stalls the loop), and close, at a rotation in the background. What
goes into the file, when it rotates and how an outage ends are the writer's.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

from swimmy.config import TelemetryConfig

FILE_MODE = 0o640


class _PartialWrite(OSError):
    """A write that failed after `done` bytes of the buffer reached the file."""

    def __init__(self, cause: OSError, done: int) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.done = done


class LogFile:
    """The open telemetry file: its descriptor, size and identity, and whether it holds unsynced bytes."""

    def __init__(self, cfg: TelemetryConfig, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)
        self._monotonic = monotonic
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._size = 0
        self._only_header = False
        self._truncate_to: int | None = None
        self._dirty = False
        self._last_sync = monotonic()
        self._closing: set[asyncio.Task[bool]] = set()
        self.fsyncs = 0
        self.fsync_errors = 0
        self.last_error = ""

    # -- writing -----------------------------------------------------------------------------

    def _write_all(self, buf: bytes) -> None:
        assert self._fd is not None
        view = memoryview(buf)
        done = 0
        while done < len(buf):
            try:
                done += os.write(self._fd, view[done:])
            except OSError as exc:
                if done == 0:
                    raise
                raise _PartialWrite(exc, done) from exc

    def _roll_back(self, size: int) -> None:
        """Cut the file back to `size` bytes now, or else before the next write."""
        self._truncate_to = size
        self._try_truncate()

    async def _sync_recovery(self) -> None:
        """fsync the batch that ends an outage, whatever `telemetry.fsync` says; raises OSError.

        A disk that took the bytes may still fail to store them (a full thin pool, EIO at writeback):
        the outage is declared over only once they are durable.
        """
        assert self._fd is not None
        try:
            await asyncio.to_thread(os.fsync, self._fd)
        except OSError:
            self.fsync_errors += 1
            raise
        self.fsyncs += 1
        self._last_sync = self._monotonic()

    def _try_truncate(self) -> None:
        if self._fd is None or self._truncate_to is None:
            return
        try:
            os.ftruncate(self._fd, self._truncate_to)
            self._truncate_to = None
        except OSError:
            pass  # retried before the next write

    # -- the file ----------------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        st = os.fstat(fd)
        if st.st_size == 0:
            os.fchmod(fd, FILE_MODE)  # the umask must not widen or narrow what the `swimmy` group may read
        self._fd = fd
        self._inode = (st.st_dev, st.st_ino)
        self._size = st.st_size
        self._only_header = False
        self._truncate_to = None

    def _close_in_background(self) -> None:
        """Hand the old file's fsync and close to a thread: the writer goes on with the new file at once.

        Durability is unchanged (the old file is fsynced before it is closed); only the wait moves
        off the writer's path, where a slow disk would otherwise stop the drain at every rotation.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        sync = self.cfg.fsync != "off" and self._dirty
        self._dirty = False
        task = asyncio.create_task(asyncio.to_thread(_sync_and_close, fd, sync), name="telemetry-close")
        self._closing.add(task)
        task.add_done_callback(self._closed_in_background)

    def _closed_in_background(self, task: asyncio.Task[bool]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is None:
            if task.result():
                self.fsyncs += 1
        elif not task.cancelled():
            self.fsync_errors += 1

    async def _close_file(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self.cfg.fsync != "off" and self._dirty:
            await self._fsync(fd)
        os.close(fd)

    async def _fsync(self, fd: int) -> None:
        try:
            await asyncio.to_thread(os.fsync, fd)
            self.fsyncs += 1
            self._dirty = False
        except OSError as exc:
            self.fsync_errors += 1
            self.last_error = _describe_os_error(exc)
        self._last_sync = self._monotonic()

    async def _sync_after_write(self) -> None:
        if self._fd is None or not self._dirty:
            return
        if self.cfg.fsync == "always" or (
            self.cfg.fsync == "interval"
            and self._monotonic() - self._last_sync >= self.cfg.fsync_interval_ms / 1000
        ):
            await self._fsync(self._fd)

    async def _sync_if_due(self) -> None:
        due = self._monotonic() - self._last_sync >= self.cfg.fsync_interval_ms / 1000
        if self._dirty and self._fd is not None and self.cfg.fsync == "interval" and due:
            await self._fsync(self._fd)


def _sync_and_close(fd: int, sync: bool) -> bool:
    """fsync (when asked) then close; True when an fsync was done. Runs in a thread."""
    try:
        if sync:
            os.fsync(fd)
        return sync
    finally:
        os.close(fd)


def _describe_os_error(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    return f"{name}: {exc.strerror or exc}"
