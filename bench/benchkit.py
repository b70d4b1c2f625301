"""Helpers the benchmark scripts share (each is run as `python bench/<name>.py`, so this directory is on sys.path)."""

from __future__ import annotations

import socket
import sys


def note(msg: str) -> None:
    """Progress on stderr, so stdout is only the report."""
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
