"""sd_notify (SPEC §8): the exact datagrams, the no-op without $NOTIFY_SOCKET, the watchdog rules."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swimmy.ops.systemd import NOTIFY_ENV_KEYS, STATUS_MAX_CHARS, Notifier, child_env, watchdog_due
from swimmy.testing import NotifySocket

MakeNotifier = Callable[..., Notifier]


@pytest.fixture
def make_notifier() -> Iterator[MakeNotifier]:
    """Build notifiers from an explicit environment; every one is closed after the test."""
    made: list[Notifier] = []

    def make(**env: str) -> Notifier:
        notifier = Notifier(env)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in tmp_path standing in for systemd's notify socket, and its path."""
    notify = NotifySocket(str(tmp_path / "notify"))
    yield notify.sock, notify.path
    notify.close()


def recv(sock: socket.socket) -> bytes:
    return sock.recv(65536)


def assert_nothing_arrived(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        with pytest.raises(BlockingIOError):
            sock.recv(65536)
    finally:
        sock.settimeout(2.0)


class TestDisabled:
    """Without a usable $NOTIFY_SOCKET every call is a no-op."""

    def test_no_notify_socket_means_disabled(self, make_notifier: MakeNotifier) -> None:
        """No NOTIFY_SOCKET: not enabled, no watchdog even if WATCHDOG_USEC is set."""
        notifier = make_notifier(WATCHDOG_USEC="2000000")
        assert notifier.enabled is False
        assert notifier.watchdog_interval_sec is None

    def test_every_call_is_a_noop(self, make_notifier: MakeNotifier) -> None:
        """Every method returns quietly and counts no error."""
        notifier = make_notifier()
        notifier.ready("up")
        notifier.status("fine")
        notifier.watchdog()
        notifier.reloading()
        notifier.stopping()
        notifier.close()
        notifier.close()
        assert notifier.send_errors == 0
        assert notifier.last_error is None

    @pytest.mark.parametrize("value", ["relative/path", "vsock:2:1234", "@"])
    def test_unsupported_address_disables_and_says_why(self, make_notifier: MakeNotifier, value: str) -> None:
        """An address we cannot speak to turns notifications off with a reason, not an exception."""
        notifier = make_notifier(NOTIFY_SOCKET=value)
        notifier.ready()
        assert notifier.enabled is False
        assert notifier.send_errors == 0
        assert notifier.last_error is not None
        assert value in notifier.last_error

    def test_default_environment_is_os_environ(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Notifier() reads os.environ."""
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
        notifier = Notifier()
        assert notifier.enabled is False
        notifier.close()


class TestDatagrams:
    """Each call is one datagram with exactly these bytes."""

    def test_ready(self, server: tuple[socket.socket, str], make_notifier: MakeNotifier) -> None:
        """ready() sends READY=1."""
        sock, path = server
        notifier = make_notifier(NOTIFY_SOCKET=path)
        assert notifier.enabled is True
        notifier.ready()
        assert recv(sock) == b"READY=1"

    def test_ready_with_status(self, server: tuple[socket.socket, str], make_notifier: MakeNotifier) -> None:
        """ready(status) sends READY=1 and STATUS= in one datagram."""
        sock, path = server
        make_notifier(NOTIFY_SOCKET=path).ready("running: 7 tasks")
        assert recv(sock) == b"READY=1\nSTATUS=running: 7 tasks"

    def test_status(self, server: tuple[socket.socket, str], make_notifier: MakeNotifier) -> None:
        """status() sends STATUS=<text>, UTF-8."""
        sock, path = server
        make_notifier(NOTIFY_SOCKET=path).status("OK · 3 peers")
        assert recv(sock) == "STATUS=OK · 3 peers".encode()

    @pytest.mark.parametrize(
        ("text", "sent"),
        [
            ("a\nb", b"STATUS=a b"),
            ("a\r\nb\n", b"STATUS=a b"),
            ("\nDEGRADED\n\n", b"STATUS=DEGRADED"),
            ("x" * 500, b"STATUS=" + b"x" * STATUS_MAX_CHARS),
        ],
    )
    def test_status_is_one_short_line(
        self, server: tuple[socket.socket, str], make_notifier: MakeNotifier, text: str, sent: bytes
    ) -> None:
        """A newline would start a new KEY=value line: STATUS is one line of at most 200 characters."""
        sock, path = server
        make_notifier(NOTIFY_SOCKET=path).status(text)
        assert recv(sock) == sent

    def test_watchdog(self, server: tuple[socket.socket, str], make_notifier: MakeNotifier) -> None:
        """watchdog() sends WATCHDOG=1 when systemd armed a watchdog."""
        sock, path = server
        make_notifier(NOTIFY_SOCKET=path, WATCHDOG_USEC="30000000").watchdog()
        assert recv(sock) == b"WATCHDOG=1"

    def test_watchdog_without_watchdog_usec_sends_nothing(
        self, server: tuple[socket.socket, str], make_notifier: MakeNotifier
    ) -> None:
        """No WATCHDOG_USEC: watchdog() is a no-op, the other messages still go."""
        sock, path = server
        notifier = make_notifier(NOTIFY_SOCKET=path)
        notifier.watchdog()
        assert_nothing_arrived(sock)
        notifier.stopping()
        assert recv(sock) == b"STOPPING=1"

    def test_stopping(self, server: tuple[socket.socket, str], make_notifier: MakeNotifier) -> None:
        """stopping() sends STOPPING=1."""
        sock, path = server
        make_notifier(NOTIFY_SOCKET=path).stopping()
        assert recv(sock) == b"STOPPING=1"

    def test_reloading_carries_the_monotonic_clock(
        self, server: tuple[socket.socket, str], make_notifier: MakeNotifier
    ) -> None:
        """reloading() sends RELOADING=1 and MONOTONIC_USEC=<CLOCK_MONOTONIC in µs> (systemd >= 253 wants it)."""
        sock, path = server
        notifier = make_notifier(NOTIFY_SOCKET=path)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        first, second = recv(sock).split(b"\n")
        assert first == b"RELOADING=1"
        key, _, value = second.partition(b"=")
        assert key == b"MONOTONIC_USEC"
        assert before <= int(value) <= after

    def test_one_connection_for_many_messages(
        self, server: tuple[socket.socket, str], make_notifier: MakeNotifier
    ) -> None:
        """The socket is connected once and reused; messages arrive in order."""
        sock, path = server
        notifier = make_notifier(NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
        notifier.ready()
        first = notifier._sock
        notifier.watchdog()
        notifier.status("s")
        assert notifier._sock is first
        assert [recv(sock) for _ in range(3)] == [b"READY=1", b"WATCHDOG=1", b"STATUS=s"]

    def test_abstract_namespace(self, make_notifier: MakeNotifier) -> None:
        """NOTIFY_SOCKET=@name addresses the abstract socket "\\0name"."""
        name = f"swimmy-test-{uuid.uuid4().hex}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(b"\0" + name.encode())
            sock.settimeout(2.0)
            notifier = make_notifier(NOTIFY_SOCKET=f"@{name}")
            assert notifier.enabled is True
            notifier.ready("abstract")
            assert recv(sock) == b"READY=1\nSTATUS=abstract"
        finally:
            sock.close()


class TestWatchdogEnvironment:
    """WATCHDOG_USEC gives half the interval; WATCHDOG_PID must name this process."""

    @pytest.mark.parametrize(
        ("env", "interval"),
        [
            ({"WATCHDOG_USEC": "2000000"}, 1.0),
            ({"WATCHDOG_USEC": "30000000"}, 15.0),
            ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
            ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
            ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "not-a-pid"}, None),
            ({"WATCHDOG_USEC": "0"}, None),
            ({"WATCHDOG_USEC": "-5"}, None),
            ({"WATCHDOG_USEC": "thirty"}, None),
            ({}, None),
        ],
    )
    def test_interval(self, make_notifier: MakeNotifier, env: dict[str, str], interval: float | None) -> None:
        """The ping interval is WATCHDOG_USEC/2 in seconds, or None when the watchdog is not ours."""
        notifier = make_notifier(NOTIFY_SOCKET="/run/systemd/notify", **env)
        assert notifier.watchdog_interval_sec == interval

    def test_watchdog_of_another_pid_sends_nothing(
        self, server: tuple[socket.socket, str], make_notifier: MakeNotifier
    ) -> None:
        """Variables inherited from a parent (WATCHDOG_PID is not us): no WATCHDOG=1 is sent."""
        sock, path = server
        notifier = make_notifier(NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid() + 1))
        notifier.watchdog()
        assert_nothing_arrived(sock)


class TestFailures:
    """A send never raises and never blocks; failures are counted."""

    def test_socket_that_disappears(self, tmp_path: Path, make_notifier: MakeNotifier) -> None:
        """systemd's socket gone (closed and unlinked): calls return, send_errors counts each one."""
        path = str(tmp_path / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        notifier = make_notifier(NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
        notifier.ready()
        assert sock.recv(100) == b"READY=1"
        sock.close()
        os.unlink(path)
        notifier.watchdog()
        notifier.status("still here")
        notifier.stopping()
        notifier.reloading()
        assert notifier.send_errors == 4
        assert notifier.last_error is not None
        assert path in notifier.last_error

    def test_reconnects_when_the_socket_comes_back(self, tmp_path: Path, make_notifier: MakeNotifier) -> None:
        """After a failure the next send reconnects: a re-executed systemd binds a new socket at the same path."""
        path = str(tmp_path / "notify")
        notifier = make_notifier(NOTIFY_SOCKET=path)
        notifier.status("nobody listens")
        assert notifier.send_errors == 1
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(path)
            sock.settimeout(2.0)
            notifier.status("back")
            assert recv(sock) == b"STATUS=back"
            assert notifier.send_errors == 1
        finally:
            sock.close()

    def test_full_receiver_never_blocks(self, server: tuple[socket.socket, str], make_notifier: MakeNotifier) -> None:
        """A receiver that does not read (a stuck PID 1): sends fail fast with EAGAIN instead of blocking the loop."""
        _, path = server
        notifier = make_notifier(NOTIFY_SOCKET=path)
        for n in range(2000):
            notifier.status(f"message {n}")
            if notifier.send_errors:
                break
        assert notifier.send_errors >= 1


class TestWatchdogDue:
    """WATCHDOG=1 at half the watchdog interval, and only while progress is fresh."""

    @pytest.mark.parametrize(
        ("last_ping", "now", "interval", "fresh", "due"),
        [
            (None, 100.0, 15.0, True, True),  # first ping as soon as the watchdog is known
            (None, 100.0, 15.0, False, False),  # ... but never for a stale daemon
            (100.0, 114.9, 15.0, True, False),  # not yet
            (100.0, 115.0, 15.0, True, True),  # exactly the interval
            (100.0, 130.0, 15.0, True, True),  # late (a slow tick): ping at once
            (100.0, 130.0, 15.0, False, False),  # a stale task withholds the ping: systemd restarts us
            (None, 100.0, None, True, False),  # no watchdog armed
            (100.0, 500.0, None, True, False),
            (100.0, 101.0, 1.0, True, True),
        ],
    )
    def test_table(self, last_ping: float | None, now: float, interval: float | None, fresh: bool, due: bool) -> None:
        """Due when an interval has passed since the last ping and progress is fresh; never without a watchdog."""
        assert watchdog_due(last_ping, now, interval, fresh) is due


class TestChildEnv:
    """Children (embedded workers) must not inherit the daemon's notify socket or watchdog."""

    def test_strips_notify_variables(self) -> None:
        """NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are removed; everything else is kept."""
        env = {
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "WATCHDOG_USEC": "30000000",
            "WATCHDOG_PID": "1",
            "PATH": "/usr/bin",
            "SWIMMY_DISCORD_ALERTS": "https://example.invalid/x",
        }
        assert child_env(env) == {"PATH": "/usr/bin", "SWIMMY_DISCORD_ALERTS": "https://example.invalid/x"}
        assert set(NOTIFY_ENV_KEYS) <= set(env)

    def test_defaults_to_os_environ(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an argument it copies os.environ."""
        monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
        monkeypatch.setenv("SWIMMY_TEST_KEEP", "1")
        env = child_env()
        assert "NOTIFY_SOCKET" not in env
        assert env["SWIMMY_TEST_KEEP"] == "1"
