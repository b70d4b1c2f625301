"""swimmy tail -f on a real file: rotations, truncation, partial lines, a file that appears late.

A tail runs in a thread and prints into a thread-safe sink; the test writes the file the way the telemetry
writer does (close, shift the backups, rename the live file to `.1`, open a new one) and waits, with a
deadline, for what the tail printed.
"""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from swimmy.cli.tail import TailFilter, format_event, run_tail

POLL_SEC = 0.005
DEADLINE_SEC = 10.0
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fdinfo")


class Sink(io.StringIO):
    """A StringIO that two threads can share; `hold()` makes the next write wait until `release()`."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._hold = False
        self.entered = threading.Event()
        self._released = threading.Event()

    def hold(self) -> None:
        """Block the next write (the tail thread) until release()."""
        self._hold = True

    def release(self) -> None:
        """Let the held write go on."""
        self._released.set()

    def write(self, s: str) -> int:
        if self._hold:
            self._hold = False
            self.entered.set()
            self._released.wait(DEADLINE_SEC)
        with self._lock:
            return super().write(s)

    def getvalue(self) -> str:
        with self._lock:
            return super().getvalue()


def envelope(seq: int, **data: Any) -> dict[str, Any]:
    """A minimal envelope (SPEC §2.1)."""
    return {
        "schema_version": 1,
        "timestamp": "2026-11-26T18:35:20.123Z",
        "log_type": "telemetry",
        "event_type": "test.line",
        "service": "core",
        "severity": "info",
        "correlation_id": f"c-{seq}",
        "data": data,
        "seq": seq,
        "pid": 1,
        "host": "h",
        "run_id": "r",
    }


def line(seq: int) -> bytes:
    """One JSONL line whose seq identifies it."""
    return orjson.dumps(envelope(seq, pad="x" * (seq % 7))) + b"\n"


class DaemonLikeWriter:
    """Writes lines with O_APPEND and rotates as the telemetry writer does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rotations = 0
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, *seqs: int) -> None:
        """Append these lines with one write()."""
        os.write(self._fd, b"".join(line(seq) for seq in seqs))

    def write_old(self, *seqs: int) -> None:
        """Append to path.1 by name (only while there is no live file, to see the old file still read)."""
        with open(self.backup(1), "ab") as old:
            old.write(b"".join(line(seq) for seq in seqs))

    def write_bytes(self, raw: bytes) -> None:
        """Append raw bytes (a line cut in two, say)."""
        os.write(self._fd, raw)

    def rotate(self) -> None:
        """Close, shift path.N -> path.N+1 ... path.1 -> path.2, rename path -> path.1, open a new path."""
        self.rename_away()
        self.open_new()

    def rename_away(self) -> None:
        """The first half of a rotation: the live file becomes path.1 and there is no path for a moment."""
        os.close(self._fd)
        self._fd = -1
        # No backup is ever deleted here: a line the tail misses must be its fault, not the test's.
        self.rotations += 1
        for n in range(self.rotations - 1, 0, -1):
            os.replace(self.backup(n), self.backup(n + 1))
        os.replace(self.path, self.backup(1))

    def open_new(self) -> None:
        """The second half: a new, empty live file."""
        self._fd = self._open()

    def backup(self, n: int) -> Path:
        """path.n"""
        return self.path.with_name(f"{self.path.name}.{n}")

    def close(self) -> None:
        """Close the open file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Tail:
    """A run_tail(follow=True) in a thread."""

    def __init__(self, path: Path, *, lines: int = 10, as_json: bool = True) -> None:
        self.sink = Sink()
        self.stop = threading.Event()
        self.rc: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(path, lines, as_json), daemon=True)

    def _run(self, path: Path, lines: int, as_json: bool) -> None:
        try:
            self.rc = run_tail(
                path,
                TailFilter(),
                follow=True,
                lines=lines,
                as_json=as_json,
                out=self.sink,
                poll_interval_sec=POLL_SEC,
                stop=self.stop,
            )
        except BaseException as exc:
            self.error = exc

    def start(self) -> None:
        """Start following."""
        self._thread.start()

    def join(self) -> None:
        """Wait for the thread to end."""
        self._thread.join(DEADLINE_SEC)

    def finish(self) -> None:
        """Set stop, join, and check it ended cleanly with 0."""
        self.stop.set()
        self.join()
        assert not self._thread.is_alive(), "run_tail did not stop"
        assert self.error is None, f"run_tail raised {self.error!r}"
        assert self.rc == 0

    def seqs(self) -> list[int]:
        """The seq of every line printed so far (--json output)."""
        return [orjson.loads(raw)["seq"] for raw in self.sink.getvalue().splitlines()]

    def lines(self) -> list[str]:
        """Every line printed so far."""
        return self.sink.getvalue().splitlines()


@contextmanager
def following(path: Path, *, lines: int = 10, as_json: bool = True) -> Iterator[Tail]:
    """A running tail, stopped and joined on the way out."""
    tail = Tail(path, lines=lines, as_json=as_json)
    tail.start()
    try:
        yield tail
    except BaseException:
        tail.stop.set()  # stop the thread, but let the test's own failure be the one reported
        tail.join()
        raise
    tail.finish()


def wait_until(condition: Callable[[], bool], what: Callable[[], object]) -> None:
    """Poll `condition` until it holds; fail with `what()` at the deadline."""
    deadline = time.monotonic() + DEADLINE_SEC
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; got {what()!r}")
        time.sleep(POLL_SEC)


def wait_seqs(tail: Tail, expected: list[int]) -> None:
    """Wait until the tail printed exactly `expected` (a longer or different output fails at once)."""

    def done() -> bool:
        got = tail.seqs()
        assert got == expected[: len(got)], f"out of order, duplicated or unexpected: {got}"
        return got == expected

    wait_until(done, tail.seqs)


def wait_read_to(path: Path, offset: int) -> None:
    """Wait until this process holds `path` open read-only at position `offset` (Linux /proc/self/fdinfo)."""
    target = os.path.realpath(path)

    def reached() -> bool:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") != target:
                    continue
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    fields = dict(row.split(":\t", 1) for row in info.read().splitlines() if ":\t" in row)
            except OSError:
                continue
            # The writer's own descriptor is at the end too; only the tail's is opened read-only.
            if int(fields["flags"], 8) & os.O_ACCMODE == os.O_RDONLY and int(fields["pos"]) == offset:
                return True
        return False

    wait_until(reached, lambda: f"no reader of {target} at {offset}")


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[DaemonLikeWriter]:
    """A writer on tmp_path/telemetry.jsonl, closed after the test."""
    w = DaemonLikeWriter(tmp_path / "telemetry.jsonl")
    try:
        yield w
    finally:
        w.close()


class TestRotation:
    """Every line written appears exactly once, in order, across rotations."""

    def test_two_rotations_with_lines_written_just_before_each(self, writer: DaemonLikeWriter) -> None:
        """Lines written to the old file right before the rename are read before the new file."""
        writer.write(*range(1, 6))
        with following(writer.path) as tail:
            wait_seqs(tail, list(range(1, 6)))
            writer.write(*range(6, 11))
            writer.rotate()
            writer.write(*range(11, 16))
            wait_seqs(tail, list(range(1, 16)))
            writer.write(*range(16, 21))
            writer.rotate()
            writer.write(*range(21, 26))
            wait_seqs(tail, list(range(1, 26)))
            writer.write(26)
            wait_seqs(tail, list(range(1, 27)))
        assert tail.seqs() == list(range(1, 27))
        assert writer.backup(2).exists()

    def test_two_rotations_between_polls(self, writer: DaemonLikeWriter) -> None:
        """When two rotations happen while the tail is busy, the file in between (now path.1) is read too."""
        writer.write(1, 2)
        with following(writer.path) as tail:
            wait_seqs(tail, [1, 2])
            tail.sink.hold()
            writer.write(3)
            assert tail.sink.entered.wait(DEADLINE_SEC), "the tail never printed line 3"
            writer.write(4)
            writer.rotate()
            writer.write(5, 6)
            writer.rotate()
            writer.write(7)
            tail.sink.release()
            wait_seqs(tail, list(range(1, 8)))
            writer.write(8)
            wait_seqs(tail, list(range(1, 9)))

    @linux_only
    def test_many_lines_and_rotations_from_another_thread(self, writer: DaemonLikeWriter) -> None:
        """A writer thread racing the tail, rotating twice every 50 lines, loses and repeats nothing."""
        total = 1000
        with following(writer.path, lines=total) as tail:
            wait_read_to(writer.path, 0)  # the tail holds the first file before anything is written

            def produce() -> None:
                for seq in range(1, total + 1):
                    writer.write(seq)
                    if seq % 50 == 0:
                        writer.rotate()
                    if seq % 50 == 25:
                        writer.rotate()  # two rotations close together, too

            producer = threading.Thread(target=produce)
            producer.start()
            producer.join(DEADLINE_SEC)
            assert not producer.is_alive()
            wait_seqs(tail, list(range(1, total + 1)))

    def test_rotation_before_the_new_file_exists(self, writer: DaemonLikeWriter) -> None:
        """Between the rename and the new file the old one is kept; the new one is read from its start."""
        writer.write(1)
        with following(writer.path) as tail:
            wait_seqs(tail, [1])
            writer.rename_away()
            writer.write_old(2)
            wait_seqs(tail, [1, 2])
            writer.open_new()
            writer.write(3, 4)
            wait_seqs(tail, [1, 2, 3, 4])


class TestFileChanges:
    """Truncation, partial lines, a file that does not exist yet, -n 0."""

    def test_truncated_file_is_read_from_the_start(self, writer: DaemonLikeWriter) -> None:
        """A file that shrinks was truncated: what is written after is printed."""
        writer.write(*range(1, 51))
        with following(writer.path, lines=100) as tail:
            wait_seqs(tail, list(range(1, 51)))
            os.truncate(writer.path, 0)
            writer.write(51, 52)
            wait_seqs(tail, list(range(1, 53)))

    def test_partial_line_completes(self, writer: DaemonLikeWriter) -> None:
        """A line without its newline yet is held back, then printed once, whole."""
        second = line(2)
        writer.write_bytes(line(1) + second[:20])
        with following(writer.path, as_json=False) as tail:
            wait_until(lambda: len(tail.lines()) == 1, tail.lines)
            writer.write_bytes(second[20:-1])
            writer.write_bytes(b"\n")
            expected = [format_event(envelope(1, pad="x")), format_event(envelope(2, pad="xx"))]
            wait_until(lambda: tail.lines() == expected, tail.lines)

    def test_file_that_appears_later(self, tmp_path: Path) -> None:
        """A path that does not exist yet is waited for and read from its start."""
        path = tmp_path / "telemetry.jsonl"
        with following(path) as tail:
            writer = DaemonLikeWriter(path)
            try:
                writer.write(1, 2, 3)
                wait_seqs(tail, [1, 2, 3])
            finally:
                writer.close()

    @linux_only
    def test_zero_lines_prints_only_new_events(self, writer: DaemonLikeWriter) -> None:
        """`-n 0 -f` prints none of the existing events, then every new one."""
        writer.write(*range(1, 6))
        size = writer.path.stat().st_size
        with following(writer.path, lines=0) as tail:
            wait_read_to(writer.path, size)
            writer.write(6, 7)
            wait_seqs(tail, [6, 7])


class TestInterrupt:
    """Ctrl-C is how a follow ends at a terminal."""

    def test_sigint_exits_0_without_a_traceback(self, writer: DaemonLikeWriter) -> None:
        """SIGINT to a following process: what was printed is there, exit code 0, nothing on stderr."""
        writer.write(1, 2)
        # Python raises KeyboardInterrupt only if SIGINT was not ignored when it started, and a shell's
        # background job (`pytest &`) starts with it ignored: restore what a terminal would give.
        code = (
            "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "import sys; from pathlib import Path; from swimmy.cli.tail import TailFilter, run_tail; "
            f"sys.exit(run_tail(Path({str(writer.path)!r}), TailFilter(), follow=True, as_json=True,"
            " poll_interval_sec=0.01))"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        try:
            stdout = proc.stdout
            assert stdout is not None
            printed: queue.Queue[str] = queue.Queue()

            def pump() -> None:
                for raw in stdout:
                    printed.put(raw)

            reader = threading.Thread(target=pump)
            reader.start()
            assert [orjson.loads(printed.get(timeout=DEADLINE_SEC))["seq"] for _ in range(2)] == [1, 2]
            writer.write(3)
            assert orjson.loads(printed.get(timeout=DEADLINE_SEC))["seq"] == 3
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=DEADLINE_SEC)
            reader.join(DEADLINE_SEC)
            assert proc.stderr is not None
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        assert (proc.returncode, printed.empty(), err) == (0, True, "")
