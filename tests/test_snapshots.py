"""The atomic file writer (seed Task 6; SPEC §7): a reader sees the old file or the new, never a mix."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import orjson
import pytest

from swimmy.files import atomic_write


class TestAtomicWrite:
    def test_writes_the_content(self, tmp_path: Path) -> None:
        """Seed Task 6: atomic-write-text then reading gives exactly what was written."""
        path = tmp_path / "atomic-test.json"
        atomic_write(path, b'{"ok":true}')
        assert path.read_text() == '{"ok":true}'
        assert stat.S_IMODE(path.stat().st_mode) == 0o640

    def test_replaces_and_leaves_no_temp_files(self, tmp_path: Path) -> None:
        """The old content is replaced whole; no temp file is left behind."""
        path = tmp_path / "m.json"
        atomic_write(path, b"old")
        atomic_write(path, b"new")
        assert path.read_bytes() == b"new"
        assert [p.name for p in tmp_path.iterdir()] == ["m.json"]

    def test_full_disk_keeps_the_old_file_and_cleans_up(self, small_disk: Path) -> None:
        """ENOSPC mid-write: the old file stays whole and the temp file is removed."""
        path = small_disk / "m.json"
        atomic_write(path, b"old")
        with pytest.raises(OSError, match="No space left"):
            atomic_write(path, b"x" * (2 * 1024 * 1024))
        assert path.read_bytes() == b"old"
        assert [p.name for p in small_disk.iterdir()] == ["m.json"]

    def test_concurrent_writers_and_a_reader_never_see_a_partial_file(self, tmp_path: Path) -> None:
        """Two writers rewrite the file while a reader reads in a loop: every read parses whole."""
        path = tmp_path / "metrics.json"
        atomic_write(path, orjson.dumps({"writer": -1, "pad": "x" * 100_000}))
        stop = threading.Event()
        errors: list[str] = []

        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                atomic_write(path, orjson.dumps({"writer": n, "i": i, "pad": "x" * (50_000 + i % 50_000)}))
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        try:
            for _ in range(300):
                try:
                    orjson.loads(path.read_bytes())
                except orjson.JSONDecodeError as exc:
                    errors.append(str(exc))
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert errors == []
        assert sorted(os.listdir(tmp_path)) == ["metrics.json"]
