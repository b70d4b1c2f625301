"""sd_notify without libsystemd (SPEC §8): READY, STATUS, WATCHDOG, STOPPING, RELOADING.

The protocol is one datagram of newline-separated `KEY=value` lines to the
AF_UNIX socket named in `$NOTIFY_SOCKET` (man sd_notify(3)). Without that
variable (a terminal, a test, `swimmy-worker@`) every method is a no-op. A send
never blocks the event loop and never raises: systemd being slow or gone must
not stop the daemon, so failures are only counted in `send_errors`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

STATUS_MAX_CHARS = 200

# What a child process must not inherit: an embedded worker that found these would talk to the
# daemon's notify socket (rejected by NotifyAccess=main, with a log line per message) or believe
# the daemon's watchdog is its own.
NOTIFY_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def one_line(text: str, max_chars: int = STATUS_MAX_CHARS) -> str:
    """`text` as a single line (line breaks become spaces) of at most `max_chars` characters.

    A newline inside STATUS= would start a new `KEY=value` assignment in the datagram.
    """
    return " ".join(text.splitlines()).strip()[:max_chars]


def watchdog_due(last_ping: float | None, now: float, interval: float | None, progress_fresh: bool) -> bool:
    """Whether to send WATCHDOG=1 now: `interval` seconds since the last ping, and only while progress is fresh.

    Withholding the ping while a task is stale is the point (SPEC §8): systemd then kills and
    restarts a daemon whose loop still turns but whose work has wedged.
    """
    if interval is None or not progress_fresh:
        return False
    return last_ping is None or now - last_ping >= interval


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default: os.environ) without the notify and watchdog variables, for child processes."""
    source = os.environ if env is None else env
    return {key: value for key, value in source.items() if key not in NOTIFY_ENV_KEYS}


def _watchdog_interval_sec(env: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC, when it is set, valid and meant for this process (WATCHDOG_PID)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid is not None:
        try:
            if int(pid) != os.getpid():
                return None  # the variables were inherited from a parent: the watchdog is not ours
        except ValueError:
            return None
    return usec / 2_000_000


def _socket_address(value: str) -> str | bytes | None:
    """The address to connect to: a path, or bytes with a leading NUL for the abstract namespace ("@name")."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None  # empty, relative or a transport we don't speak (vsock:)


class Notifier:
    """sd_notify over $NOTIFY_SOCKET; every method a no-op without it.

    `watchdog_interval_sec` is how often to ping (half of WATCHDOG_USEC), or None when systemd armed no
    watchdog for this process; the socket is connected on the first send and kept.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.socket_name = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(self.socket_name)
        self.enabled: bool = self._address is not None
        self.watchdog_interval_sec: float | None = _watchdog_interval_sec(env) if self.enabled else None
        self.send_errors = 0
        self.last_error: str | None = None
        self._sock: socket.socket | None = None
        if self.socket_name and not self.enabled:
            self.last_error = f"unsupported NOTIFY_SOCKET {self.socket_name!r}: notifications are off"
        self._watchdog_at: float | None = None
        self._last_status = ""

    def ready(self, status: str | None = None) -> None:
        """READY=1: start-up (or a reload) is complete; optionally with a STATUS= line."""
        lines = ["READY=1"]
        if status is not None:
            lines.append(f"STATUS={one_line(status)}")
        self._send(lines)

    def status(self, text: str) -> None:
        """STATUS=<one line of at most 200 characters> for `systemctl status`."""
        self._send([f"STATUS={one_line(text)}"])

    def watchdog(self) -> None:
        """WATCHDOG=1; a no-op unless systemd armed a watchdog for this process."""
        if self.watchdog_interval_sec is not None:
            self._send(["WATCHDOG=1"])

    def tick(self, now: float, progressing: bool, status: str) -> None:
        """Once a second: WATCHDOG=1 at half the watchdog interval, only while every task makes progress
        (`progressing`); STATUS= when the line changed."""
        if watchdog_due(self._watchdog_at, now, self.watchdog_interval_sec, progressing):
            self.watchdog()
            self._watchdog_at = now
        if status != self._last_status:
            self._last_status = status
            self.status(status)

    def stopping(self) -> None:
        """STOPPING=1: the stop has begun (systemd stops the watchdog and starts TimeoutStopSec)."""
        self._send(["STOPPING=1"])

    def reloading(self) -> None:
        """RELOADING=1 with MONOTONIC_USEC (Type=notify-reload, systemd >= 253, requires it); READY=1 ends it."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}"])

    def close(self) -> None:
        """Close the socket (idempotent); a later send reconnects."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, lines: list[str]) -> None:
        if self._address is None:
            return
        payload = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = self._connect(self._address)
            self._sock.send(payload, socket.MSG_DONTWAIT)
        except OSError as exc:
            # Dropped, not retried: the next tick sends a fresh STATUS/WATCHDOG anyway. The socket is
            # dropped too, so a systemd re-exec (a new socket at the same path) is picked up next time.
            self.send_errors += 1
            self.last_error = f"{self.socket_name}: {exc.strerror or exc}"
            self.close()

    @staticmethod
    def _connect(address: str | bytes) -> socket.socket:
        # Python sockets are close-on-exec: the embedded workers never inherit this one.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock
