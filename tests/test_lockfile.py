"""One process per state: an flock on `<target>.lock`, refused with the holder named, freed when its holder dies."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swimmy.daemon.lockfile import LockFile
from swimmy.errors import LockHeldError

HOLD = """
import sys
from pathlib import Path
from swimmy.daemon.lockfile import LockFile
LockFile(Path(sys.argv[1]), "database").acquire()
print("locked", flush=True)
sys.stdin.read()
"""


class TestAcquire:
    def test_the_lock_sits_beside_its_target_and_holds_our_pid(self, tmp_path: Path) -> None:
        """acquire() makes missing parents and writes `<pid>\\n` into `<target>.lock`; the target is not created."""
        target = tmp_path / "var" / "deep" / "telemetry.jsonl"
        lock = LockFile(target, "telemetry path")
        lock.acquire()
        try:
            assert lock.path == tmp_path / "var" / "deep" / "telemetry.jsonl.lock"
            assert lock.path.read_text() == f"{os.getpid()}\n"
            assert not target.exists()
        finally:
            lock.release()

    def test_a_pid_left_by_a_dead_run_is_replaced_whole(self, tmp_path: Path) -> None:
        """A lock file from a crashed run (a longer text, no flock on it) is taken and holds only our pid."""
        target = tmp_path / "school.db"
        (tmp_path / "school.db.lock").write_text("4194304999\nleft over by a crash\n")
        lock = LockFile(target, "database")
        lock.acquire()
        try:
            assert lock.path.read_text() == f"{os.getpid()}\n"
        finally:
            lock.release()


class TestHeld:
    def test_a_second_holder_is_refused_with_exit_2_naming_what_the_pid_and_the_lock(self, tmp_path: Path) -> None:
        """Two runs of one config: LockHeldError (exit 2) saying what is in use, by which pid, and which lock."""
        target = tmp_path / "school.db"
        first = LockFile(target, f"database {target}")
        first.acquire()
        try:
            with pytest.raises(LockHeldError) as caught:
                LockFile(target, f"database {target}").acquire()
        finally:
            first.release()
        assert caught.value.exit_code == 2
        assert str(caught.value) == (f"database {target} is in use by another swimmy process (pid {os.getpid()}): "
                                     f"lock {target}.lock is held")
        assert (tmp_path / "school.db.lock").read_text() == f"{os.getpid()}\n", "the refused one wrote nothing"

    def test_a_holder_that_wrote_no_pid_is_named_unknown(self, tmp_path: Path) -> None:
        """An flock taken on an empty lock file: the refusal says `pid unknown` rather than nothing."""
        target = tmp_path / "telemetry.jsonl"
        fd = os.open(tmp_path / "telemetry.jsonl.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with pytest.raises(LockHeldError, match=r"\(pid unknown\): lock .*telemetry\.jsonl\.lock is held"):
                LockFile(target, "telemetry path").acquire()
        finally:
            os.close(fd)

    def test_another_process_is_named_and_its_death_frees_the_lock(self, tmp_path: Path) -> None:
        """A live holder in another process is named by its pid; killed with -9 (no release) it leaves no stale lock."""
        target = tmp_path / "school.db"
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            with pytest.raises(LockHeldError, match=rf"\(pid {holder.pid}\)"):
                LockFile(target, "database").acquire()
        finally:
            holder.kill()
            holder.communicate(timeout=10)
        lock = LockFile(target, "database")
        lock.acquire()
        lock.release()


class TestRelease:
    def test_release_lets_the_next_holder_in_and_leaves_the_file(self, tmp_path: Path) -> None:
        """After release() another LockFile acquires at once; the .lock file is never unlinked."""
        target = tmp_path / "school.db"
        first = LockFile(target, "database")
        first.acquire()
        first.release()
        assert first.path.exists()
        second = LockFile(target, "database")
        second.acquire()
        second.release()

    def test_a_second_release_never_closes_a_descriptor_someone_else_now_owns(self, tmp_path: Path) -> None:
        """release() twice (and before acquire) is a no-op: the fd number, reused by another file, stays open."""
        LockFile(tmp_path / "never.db", "database").release()
        lock = LockFile(tmp_path / "school.db", "database")
        lock.acquire()
        (number,) = [int(fd) for fd in os.listdir("/proc/self/fd")
                     if os.path.realpath(f"/proc/self/fd/{fd}") == str(lock.path.resolve())]
        lock.release()
        other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)
        if other != number:  # put the other file on the number the lock just freed
            os.dup2(other, number)
            os.close(other)
        try:
            lock.release()
            os.fstat(number)  # OSError(EBADF) if the second release closed it
        finally:
            os.close(number)
