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

The filter and the readable form are swimmy/cli/tailformat.py, the line reader and the backups tailfiles.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import orjson

from swimmy.cli.tailfiles import LineReader, backups_since, open_skipped
from swimmy.cli.tailformat import TailFilter, format_event, parse_since

__all__ = ["TailFilter", "format_event", "parse_since", "run_tail"]

_IMPORT_STDOUT = sys.stdout
_WRITE_LINES = 1000  # printed lines per out.write(): one syscall-sized batch, bounded memory on a 32 MiB file


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
        for backup in backups_since(path, since):
            printer.print_file(backup)
    reader = LineReader.open(path)
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
    path: Path, reader: LineReader | None, printer: _Printer, *, poll_interval_sec: float, stop: threading.Event
) -> None:
    try:
        while not stop.is_set():
            if reader is None:
                reader = LineReader.open(path)  # a path that appears is a new file: read from its start
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


def _switch(path: Path, old: LineReader, printer: _Printer) -> LineReader | None:
    """The path names a new file: finish the old one, read any backups rotated past us, return the new one."""
    # Open the new file before looking at the backups, so a rotation in between turns it into a backup that
    # is found by its identity, not into a file that is never read.
    new = LineReader.open(path)
    try:
        printer.print_lines(old.lines())
        printer.print_lines(old.rest())
        skipped = open_skipped(path, old, new.ident if new is not None else None)
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
        reader = LineReader.open(path)
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

