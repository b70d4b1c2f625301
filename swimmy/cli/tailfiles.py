"""`swimmy tail`'s files: complete lines from one open file, and which backups to read around a rotation.

Files are told apart by identity (st_dev, st_ino), whatever their name is now: the live file and its backups
`path.1 ... path.N` are renamed by each rotation (swimmy/telemetry/rotation.py), so a name says little.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from swimmy.telemetry.rotation import backup_suffixes, suffixed

_Ident = tuple[int, int]  # (st_dev, st_ino): which file, whatever its name is now

_CHUNK_BYTES = 1 << 20
# A rotation renames every backup; while one is under way the snapshot is looked at again after a pause.
_SNAPSHOT_ATTEMPTS = 200
_SNAPSHOT_RETRY_SEC = 0.001


def open_skipped(path: Path, old: LineReader, new_ident: _Ident | None) -> list[LineReader]:
    """The backups written after `old` and before the new file, opened, oldest first.

    Several rotations can happen between two polls (a burst of events and a small max_bytes). The files are
    placed by identity in a snapshot of the backups taken twice (a rotation under way makes the two differ),
    and each is checked to be the file the snapshot saw once it is open.
    """
    old_mtime_ns = os.fstat(old.fileno()).st_mtime_ns
    for attempt in range(_SNAPSHOT_ATTEMPTS):
        if attempt:
            time.sleep(_SNAPSHOT_RETRY_SEC)
        snap = _snapshot(path)
        if snap != _snapshot(path):
            continue
        new_n = snap.get(new_ident, (0, 0))[0] if new_ident is not None else 0
        if old.ident in snap:
            old_n = snap[old.ident][0]
            wanted = [(n, ident) for ident, (n, _) in snap.items() if new_n < n < old_n]
        else:
            # The old file was deleted by the rotation (backups exhausted): every backup written since its last
            # write follows it. Older ones (the live file was removed by hand) are not ours to print again.
            wanted = [(n, ident) for ident, (n, mtime_ns) in snap.items() if n > new_n and mtime_ns >= old_mtime_ns]
        opened = [r for n, _ in sorted(wanted, reverse=True) if (r := LineReader.open(suffixed(path, n)))]
        if [r.ident for r in opened] == [ident for _, ident in sorted(wanted, reverse=True)]:
            return opened
        for r in opened:
            r.close()
    return []


def _snapshot(path: Path) -> dict[_Ident, tuple[int, int]]:
    """Identity -> (suffix, mtime_ns) of the live file (suffix 0) and its backups."""
    snap = {}
    for n in sorted(backup_suffixes(path) | {0}):
        try:
            st = os.stat(suffixed(path, n))
        except FileNotFoundError:
            continue
        snap[(st.st_dev, st.st_ino)] = (n, st.st_mtime_ns)
    return snap


def backups_since(path: Path, since: float) -> list[Path]:
    """Backups last written at or after `since`, oldest (highest suffix) first."""
    found = []
    for n in sorted(backup_suffixes(path), reverse=True):
        backup = suffixed(path, n)
        try:
            if os.stat(backup).st_mtime >= since:
                found.append(backup)
        except FileNotFoundError:
            continue
    return found


class LineReader:
    """Complete lines from one open file; a trailing partial line waits for its newline."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        st = os.fstat(fh.fileno())
        self.ident: _Ident = (st.st_dev, st.st_ino)
        self._partial = b""

    @classmethod
    def open(cls, path: Path) -> LineReader | None:
        """The file at `path` read from its start, or None when there is none."""
        try:
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - the reader owns it; close() closes it
        except FileNotFoundError:
            return None
        return cls(fh)

    def fileno(self) -> int:
        """The open file's descriptor."""
        return self._fh.fileno()

    @property
    def position(self) -> int:
        """Bytes consumed so far, the partial line included."""
        return self._fh.tell()

    def lines(self) -> Iterator[bytes]:
        """Every complete line up to the end of the file now, without its newline."""
        while chunk := self._fh.read(_CHUNK_BYTES):
            buf = self._partial + chunk
            *complete, self._partial = buf.split(b"\n")
            yield from complete

    def rest(self) -> list[bytes]:
        """The unterminated tail of a file that will not grow any more, as a last line."""
        rest, self._partial = self._partial, b""
        return [rest] if rest else []

    def rewind(self) -> None:
        """The file was truncated: read it again from its start."""
        self._fh.seek(0)
        self._partial = b""

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

