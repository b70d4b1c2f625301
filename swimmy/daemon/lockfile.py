"""One process per state: an exclusive, non-blocking flock on `<path>.lock`.

The kernel drops the lock when the process dies, so a crash never leaves a
stale lock behind. The file is never unlinked (unlinking a lock file races
with the next process that opens it); it holds the owner's pid for humans.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from swimmy.errors import LockHeldError


class LockFile:
    """An exclusive lock on `<target>.lock`, held until release() or process exit."""

    def __init__(self, target: Path, what: str) -> None:
        self.path = target.with_name(target.name + ".lock")
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise LockHeldError naming the lock file and its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeldError(
                f"{self.what} is in use by another swimmy process (pid {holder}): lock {self.path} is held"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def acquire_all(locks: list[LockFile]) -> None:
    """Take every lock, in order, or none: on LockHeldError the ones already taken are released."""
    acquired: list[LockFile] = []
    try:
        for lock in locks:
            lock.acquire()
            acquired.append(lock)
    except BaseException:
        for lock in acquired:
            lock.release()
        raise
