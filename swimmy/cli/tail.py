"""`swimmy tail`: read the telemetry JSONL file (SPEC §2.1, §2.3, §10), filter it, print it readably.

Without `since` the last `lines` matching events of the live file are printed; `lines=0` prints none of
them, so `-n 0 -f` shows only events written from now on. With `since` every matching event of the
backups `path.N ... path.1` (oldest first) and of the live file is printed, with no `lines` limit.

`follow` behaves like `tail -F`: the open file is read to its end before the path's new file is opened,
a truncated file is read again from its start, and a path that does not exist yet is waited for. When
more than one rotation happened between two polls, the backups between the file held and the new one
are read too, so no line is lost to a fast rotation.

A line that is not JSON is never fatal: the readable form prints it with a `?` prefix and no filter
applies to it; `as_json` skips it, so the output stays valid JSON Lines.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import orjson

from swimmy.rfc3339 import NoTimeZone, parse_rfc3339
from swimmy.telemetry.envelope import SEVERITY_RANK, normalize_severity
from swimmy.telemetry.rotation import backup_suffixes, suffixed

_Ident = tuple[int, int]  # (st_dev, st_ino): which file, whatever its name is now

_IMPORT_STDOUT = sys.stdout
_CHUNK_BYTES = 1 << 20
# A rotation renames every backup; while one is under way the snapshot is looked at again after a pause.
_SNAPSHOT_ATTEMPTS = 200
_SNAPSHOT_RETRY_SEC = 0.001
_WRITE_LINES = 1000  # printed lines per out.write(): one syscall-sized batch, bounded memory on a 32 MiB file
_SEVERITY_WIDTH = max(len(name) for name in SEVERITY_RANK)
_UNIT_SEC = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RELATIVE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
# A value printed without quotes must not be mistaken for a separator or a second key=value pair.
_PLAIN = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class TailFilter:
    """Which events to show; every condition that is set must hold (an empty filter shows everything)."""

    event_glob: str | None = None  # fnmatch glob on event_type, e.g. "wfv.*"
    min_severity: str | None = None  # one of debug, info, warning, error, critical; lines below are hidden
    service: str | None = None  # exact match on service
    correlation_id: str | None = None  # exact match on correlation_id
    since: float | None = None  # Unix seconds; lines with an older timestamp are hidden

    def __post_init__(self) -> None:
        if self.min_severity is not None:
            low = self.min_severity.lower()
            if low not in SEVERITY_RANK:
                raise ValueError(f"unknown severity {self.min_severity!r}: expected one of {', '.join(SEVERITY_RANK)}")
            object.__setattr__(self, "min_severity", low)

    def matches(self, event: dict[str, Any]) -> bool:
        """True when the event passes every condition set; a timestamp that can't be read fails `since`."""
        if self.service is not None and event.get("service") != self.service:
            return False
        if self.correlation_id is not None and event.get("correlation_id") != self.correlation_id:
            return False
        if self.event_glob is not None and not fnmatch.fnmatchcase(_text(event.get("event_type")), self.event_glob):
            return False
        if self.min_severity is not None:
            severity, _ = normalize_severity(event.get("severity"))
            if SEVERITY_RANK[severity] < SEVERITY_RANK[self.min_severity]:
                return False
        if self.since is not None:
            t = _event_time(event.get("timestamp"))
            if t is None or t < self.since:
                return False
        return True


def parse_since(text: str, now: float) -> float:
    """'10m', '30s', '2h', '1d' (relative to `now`) or an RFC 3339 timestamp -> Unix seconds.

    Raises ValueError, with a message naming the accepted forms, for anything else.
    """
    m = _RELATIVE.fullmatch(text)
    if m is not None:
        return now - float(m.group(1)) * _UNIT_SEC[m.group(2)]
    try:
        return parse_rfc3339(text).timestamp()
    except NoTimeZone:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +09:00") from None
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: expected an age such as 30s, 10m, 2h, 1d "
            "or an RFC 3339 timestamp such as 2026-11-26T18:35:20Z"
        ) from None


def format_event(event: dict[str, Any]) -> str:
    """One readable line: `<timestamp> <SEVERITY> <service> <event_type> [cid=<id>] key=value ...`.

    The cid is left out when it is 'unknown'; string values that hold no space, quote or `=` are shown bare,
    every other value JSON-encoded. A log line (log_type 'log') shows data.message right after its event_type.
    """
    severity = _text(event.get("severity")).upper()
    parts = [
        _text(event.get("timestamp")),
        f"{severity:<{_SEVERITY_WIDTH}}",
        _text(event.get("service")),
        _text(event.get("event_type")),
    ]
    data = event.get("data")
    fields: dict[Any, Any] = dict(data) if isinstance(data, dict) else {}
    if event.get("log_type") == "log" and "message" in fields:
        message = fields.pop("message")
        # The message is for reading, not parsing: bare unless it would break the one-line form.
        parts.append(message if isinstance(message, str) and message.isprintable() else _json(message))
    cid = event.get("correlation_id")
    if cid is not None and cid not in ("unknown", ""):
        parts.append(f"cid={_value(cid)}")
    parts.extend(f"{_text(key)}={_value(value)}" for key, value in fields.items())
    if data is not None and not isinstance(data, dict):
        parts.append(f"data={_value(data)}")
    return " ".join(parts)


def run_tail(
    path: Path,
    filt: TailFilter,
    *,
    follow: bool = False,
    lines: int = 10,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    poll_interval_sec: float = 0.2,
    stop: threading.Event | None = None,
) -> int:
    """Print matching events; returns an exit code (0 ok, 1 when the file does not exist and follow is False).

    `lines` below 0 counts as 0. KeyboardInterrupt (Ctrl-C) ends a follow cleanly with 0.
    """
    if out is _IMPORT_STDOUT:
        # The default was bound when this module was imported; sys.stdout may have been replaced since
        # (pytest's capture, a redirect), and the caller means the current one.
        out = sys.stdout
    printer = _Printer(out, filt, as_json=as_json)
    try:
        return _run(path, printer, follow=follow, lines=max(lines, 0), poll_interval_sec=poll_interval_sec, stop=stop)
    except KeyboardInterrupt:
        printer.flush()
        return 0
    except BrokenPipeError:
        # `swimmy tail | head`: the reader left, which is a normal end for a tail.
        _silence(out)
        return 0


def _run(
    path: Path, printer: _Printer, *, follow: bool, lines: int, poll_interval_sec: float, stop: threading.Event | None
) -> int:
    since = printer.filt.since
    if since is not None:
        for backup in _backups_since(path, since):
            printer.print_file(backup)
    reader = _LineReader.open(path)
    if reader is None and not follow:
        print(f"swimmy tail: {path}: no such file", file=sys.stderr)
        return 1
    try:
        if reader is not None:
            if since is None:
                printer.print_last(reader.lines(), lines)
            else:
                printer.print_lines(reader.lines())
        # Without follow a trailing partial line is a write in progress, not an event yet: it is not printed.
        if follow:
            _follow(path, reader, printer, poll_interval_sec=poll_interval_sec, stop=stop or threading.Event())
    finally:
        if reader is not None:
            reader.close()  # closing twice (after _follow closed it) is harmless
    return 0


def _follow(
    path: Path, reader: _LineReader | None, printer: _Printer, *, poll_interval_sec: float, stop: threading.Event
) -> None:
    try:
        while not stop.is_set():
            if reader is None:
                reader = _LineReader.open(path)  # a path that appears is a new file: read from its start
                if reader is None:
                    stop.wait(poll_interval_sec)
                    continue
            printer.print_lines(reader.lines())
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None  # between the rename and the new file: keep reading the old one
            if st is not None and (st.st_dev, st.st_ino) != reader.ident:
                reader = _switch(path, reader, printer)
                continue
            if st is not None and st.st_size < reader.position:
                reader.rewind()
                continue
            stop.wait(poll_interval_sec)
    finally:
        if reader is not None:
            reader.close()


def _switch(path: Path, old: _LineReader, printer: _Printer) -> _LineReader | None:
    """The path names a new file: finish the old one, read any backups rotated past us, return the new one."""
    # Open the new file before looking at the backups, so a rotation in between turns it into a backup that
    # is found by its identity, not into a file that is never read.
    new = _LineReader.open(path)
    try:
        printer.print_lines(old.lines())
        printer.print_lines(old.rest())
        skipped = _open_skipped(path, old, new.ident if new is not None else None)
        try:
            for reader in skipped:
                printer.print_lines(reader.lines())
                printer.print_lines(reader.rest())
        finally:
            for reader in skipped:
                reader.close()
    except BaseException:
        if new is not None:
            new.close()
        raise
    finally:
        old.close()
    return new


def _open_skipped(path: Path, old: _LineReader, new_ident: _Ident | None) -> list[_LineReader]:
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
        opened = [r for n, _ in sorted(wanted, reverse=True) if (r := _LineReader.open(suffixed(path, n)))]
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


def _backups_since(path: Path, since: float) -> list[Path]:
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


class _LineReader:
    """Complete lines from one open file; a trailing partial line waits for its newline."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        st = os.fstat(fh.fileno())
        self.ident: _Ident = (st.st_dev, st.st_ino)
        self._partial = b""

    @classmethod
    def open(cls, path: Path) -> _LineReader | None:
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


class _Printer:
    """Renders and writes lines; flushes after each batch."""

    def __init__(self, out: TextIO, filt: TailFilter, *, as_json: bool) -> None:
        self.out = out
        self.filt = filt
        self.as_json = as_json

    def select(self, raw: bytes) -> tuple[bytes, dict[str, Any] | None] | None:
        """(line, event) when the line is shown (event None: not a JSON object), None when it is hidden."""
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            return None if self.as_json or not raw.strip() else (raw, None)
        return (raw, event) if self.filt.matches(event) else None

    def render(self, raw: bytes, event: dict[str, Any] | None) -> str:
        """The text printed for a line that select() kept."""
        if event is None:
            return "? " + raw.decode("utf-8", "replace")
        return raw.decode("utf-8", "replace") if self.as_json else format_event(event)

    def print_lines(self, raws: Iterable[bytes]) -> None:
        """Print every matching line."""
        self._write(self.render(*kept) for raw in raws if (kept := self.select(raw)) is not None)

    def print_last(self, raws: Iterable[bytes], count: int) -> None:
        """Print the last `count` matching lines (formatting only those)."""
        last: deque[tuple[bytes, dict[str, Any] | None]] = deque(maxlen=count)
        if count > 0:
            last.extend(kept for raw in raws if (kept := self.select(raw)) is not None)
        else:
            deque(raws, maxlen=0)  # consume: a follow goes on from the end
        self._write(self.render(*kept) for kept in last)

    def print_file(self, path: Path) -> None:
        """Print every matching line of a file that is no longer written to."""
        reader = _LineReader.open(path)
        if reader is None:
            return
        try:
            self.print_lines(reader.lines())
            self.print_lines(reader.rest())
        finally:
            reader.close()

    def flush(self) -> None:
        """Flush the output; a reader that is gone is not an error."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.out.flush()

    def _write(self, texts: Iterable[str]) -> None:
        batch: list[str] = []
        wrote = False
        for text in texts:
            batch.append(text)
            if len(batch) >= _WRITE_LINES:
                self.out.write("\n".join(batch) + "\n")
                batch.clear()
                wrote = True
        if batch:
            self.out.write("\n".join(batch) + "\n")
            wrote = True
        if wrote:
            self.out.flush()


def _silence(out: TextIO) -> None:
    # Python flushes stdout again at exit; pointing it at /dev/null keeps that from raising a second time.
    if out is sys.stdout:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _text(value: Any) -> str:
    if value is None:
        return "?"
    return value if isinstance(value, str) else _json(value)


def _value(value: Any) -> str:
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    return _json(value)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except (orjson.JSONEncodeError, TypeError):
        return repr(value)


def _event_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:  # the envelope is always UTC; a zone-less stamp is read as such
        return parse_rfc3339(value, assume_utc=True).timestamp()
    except ValueError:
        return None
