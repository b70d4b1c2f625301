"""The ZeroMQ adapter: the only module that imports zmq.

Sockets are made here with the options that keep the loop safe: a bounded
LINGER (shutdown never hangs on a gone peer), SNDHWM/RCVHWM, ZMQ_MAXMSGSIZE as
a 4x memory guard behind the application's own size check, and CurveZMQ where
the security plan says so. Every send is non-blocking.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

from swimmy.config import ZmqConfig
from swimmy.errors import ConfigError
from swimmy.wire.security import plan_security

PUB = zmq.PUB
SUB = zmq.SUB
PUSH = zmq.PUSH
PULL = zmq.PULL
ROUTER = zmq.ROUTER
DEALER = zmq.DEALER
POLLIN = zmq.POLLIN
Socket = zmq.asyncio.Socket
Poller = zmq.asyncio.Poller
ZMQError = zmq.ZMQError


@dataclass(frozen=True)
class CurveKeys:
    """Our keypair (z85 bytes), the server key a client must trust, and the client keys we accept."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None
    authorized: frozenset[bytes] = field(default_factory=frozenset)


def load_curve_keys(cfg: ZmqConfig) -> CurveKeys:
    """Read the key files named in [zmq]; a missing or bad file is a ConfigError naming its key."""

    def read(key: str, path: Path | None, want_secret: bool) -> bytes:
        if path is None:
            raise ConfigError([f"zmq.{key}: not set"])
        try:
            public, secret = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise ConfigError([f"zmq.{key}: cannot load key file {path}: {exc}"]) from None
        if want_secret:
            if secret is None:
                raise ConfigError([f"zmq.{key}: {path} holds no secret key"])
            return secret
        return public

    secret = read("curve_secret_key_file", cfg.curve_secret_key_file, True)
    public = read("curve_public_key_file", cfg.curve_public_key_file, False)
    server_public = None
    if cfg.curve_server_public_key_file is not None:
        server_public = read("curve_server_public_key_file", cfg.curve_server_public_key_file, False)
    authorized: set[bytes] = {public}  # the daemon's own key: the CLI on this host speaks with it
    if cfg.curve_authorized_keys_dir is not None:
        if not cfg.curve_authorized_keys_dir.is_dir():
            raise ConfigError([f"zmq.curve_authorized_keys_dir: {cfg.curve_authorized_keys_dir} is not a directory"])
        authorized |= set(zmq.auth.load_certificates(cfg.curve_authorized_keys_dir))
    return CurveKeys(public, secret, server_public, frozenset(authorized))


def prepare_security(cfg: ZmqConfig, control_endpoint: str) -> tuple[frozenset[str], CurveKeys | None]:
    """The endpoints that use CURVE and the loaded keys; ConfigError for anything start-up would refuse."""
    plan = plan_security(cfg, control_endpoint)
    if plan.problems:
        raise ConfigError(list(plan.problems))
    keys = load_curve_keys(cfg) if plan.curve_endpoints else None
    return plan.curve_endpoints, keys


def generate_keys(out: Path) -> list[Path]:
    """A server keypair, a client keypair and an authorized/ dir trusting the client; secrets are 0600."""
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(out, name)
        os.chmod(secret, 0o600)
        made += [Path(public), Path(secret)]
    authorized = out / "authorized"
    authorized.mkdir(exist_ok=True)
    shutil.copy(out / "client.key", authorized / "client.key")
    made.append(authorized / "client.key")
    return made


class _KeyRing:
    """The ZAP credentials provider: a client gets through only with an authorised public key."""

    def __init__(self, authorized: Iterable[bytes]) -> None:
        self.authorized = frozenset(authorized)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.authorized


class Wire:
    """Owns one zmq context, its ZAP authenticator and every socket made through it.

    `blocking`: plain (not asyncio) sockets, for a process whose sockets each live in one thread's own
    loop (the worker, swimmy/backtest/worker.py); such a wire only connects (no ZAP authenticator).
    """

    def __init__(self, cfg: ZmqConfig, keys: CurveKeys | None = None, *, blocking: bool = False) -> None:
        self.cfg = cfg
        self.keys = keys
        self.blocking = blocking
        self.ctx = zmq.Context() if blocking else zmq.asyncio.Context()
        self._sockets: list[Any] = []
        self._auth: AsyncioAuthenticator | None = None
        self._private_dirs: list[Path] = []

    def _ensure_auth(self) -> None:
        if self._auth is None:
            assert self.keys is not None and not self.blocking
            self._auth = AsyncioAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve_callback(domain="*", credentials_provider=_KeyRing(self.keys.authorized))

    def socket(self, kind: int, *, rcvhwm: int | None = None, sndhwm: int | None = None) -> Any:
        """A socket with LINGER, HWMs and the memory guard set."""
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, int(self.cfg.linger_ms))
        sock.setsockopt(zmq.SNDHWM, sndhwm if sndhwm is not None else self.cfg.sndhwm)
        sock.setsockopt(zmq.RCVHWM, rcvhwm if rcvhwm is not None else self.cfg.sndhwm)
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * self.cfg.max_message_bytes)
        self._sockets.append(sock)
        return sock

    def bind(self, kind: int, endpoint: str, *, curve: bool, linger_ms: int | None = None,
             **opts: int | None) -> Any:
        """A socket bound as the CurveZMQ server when `curve`. Raises ZMQError (e.g. address in use)."""
        sock = self.socket(kind, **opts)
        if linger_ms is not None:
            sock.setsockopt(zmq.LINGER, linger_ms)
        if curve:
            if self.keys is None:
                raise ConfigError([f"{endpoint}: CurveZMQ requested but no keys are loaded"])
            self._ensure_auth()
            sock.curve_secretkey = self.keys.secret
            sock.curve_publickey = self.keys.public
            sock.curve_server = True
        sock.bind(endpoint)
        return sock

    def bind_private_ipc(self, sock: Any, name: str) -> str | None:
        """Bind `sock` also on a Unix socket in a new directory only this user can enter (0700); its endpoint.

        For the processes this one starts on this host (embedded workers): a message through a Unix socket
        costs both ends about half the CPU of one through TCP on loopback. The socket's CURVE settings hold
        on it too. None when it can't be made (the TCP endpoint serves them then); removed at close.
        """
        try:
            folder = Path(tempfile.mkdtemp(prefix="swimmy-"))
        except OSError:
            return None
        endpoint = f"ipc://{folder / name}"
        try:
            sock.bind(endpoint)
        except zmq.ZMQError:
            shutil.rmtree(folder, ignore_errors=True)
            return None
        self._private_dirs.append(folder)
        return endpoint

    def connect(self, kind: int, endpoint: str, *, curve: bool, **opts: int | None) -> Any:
        """A socket connected as a CurveZMQ client of `keys.server_public` (or our own key) when `curve`."""
        sock = self.socket(kind, **opts)
        if curve:
            if self.keys is None:
                raise ConfigError([f"{endpoint}: CurveZMQ requested but no keys are loaded"])
            sock.curve_secretkey = self.keys.secret
            sock.curve_publickey = self.keys.public
            sock.curve_serverkey = self.keys.server_public or self.keys.public
        sock.connect(endpoint)
        return sock

    def close_socket(self, sock: Any) -> None:
        """Close one socket made through this wire (LINGER 0: an unanswered request is not kept)."""
        sock.close(linger=0)
        if sock in self._sockets:
            self._sockets.remove(sock)

    def close(self) -> None:
        """Close every socket (LINGER bounds what is still queued) and the context (idempotent)."""
        for sock in self._sockets:
            sock.close()  # with the LINGER each socket was given
        self._sockets.clear()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self.ctx.term()
        for folder in self._private_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        self._private_dirs.clear()


def try_send(sock: Any, frames: list[bytes]) -> bool:
    """Send without blocking; False when the peer's queue is full or the socket can't send now."""
    # zmq.asyncio resolves a NOBLOCK send at once and reports errors through the returned future.
    fut = sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=True)
    if not fut.done():  # only when an awaited send is queued ahead, which swimmy never does
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        return True
    exc = fut.exception()
    if exc is None:
        return True
    if isinstance(exc, zmq.Again):
        return False
    raise exc


def send_nowait(sock: Any, frames: list[bytes]) -> bool:
    """A plain (blocking-wire) socket: send without blocking; False when the peer's queue is full."""
    try:
        sock.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        return False
    return True


def send_within(sock: Any, frames: list[bytes], timeout_sec: float) -> bool:
    """A plain socket: send, waiting at most `timeout_sec` for room in the pipe; False when none came."""
    if send_nowait(sock, frames):
        return True
    if not sock.poll(int(timeout_sec * 1000), zmq.POLLOUT):
        return False
    return send_nowait(sock, frames)


def recv_nowait(sock: Any) -> list[bytes] | None:
    """A plain socket: the next message's frames, or None when nothing is waiting."""
    try:
        frames: list[bytes] = sock.recv_multipart(zmq.NOBLOCK)
    except zmq.Again:
        return None
    return frames


class Waiter:
    """A blocking poll over plain sockets and file descriptors, for a thread's own loop (never an event loop's)."""

    def __init__(self, *sources: Any) -> None:
        self._poller = zmq.Poller()
        for source in sources:
            self._poller.register(source, zmq.POLLIN)

    def wait(self, timeout_sec: float) -> set[Any]:
        """The sources with input, after at most `timeout_sec` (a signal may end the wait early)."""
        try:
            return {source for source, _ in self._poller.poll(max(0, int(timeout_sec * 1000)))}
        except InterruptedError:
            return set()


async def recv_frames(sock: Any) -> list[bytes]:
    """The next message's frames, as bytes."""
    frames: list[bytes] = await sock.recv_multipart()
    return frames


def describe_error(exc: BaseException) -> str:
    """errno name and text of a ZMQError, for events."""
    if isinstance(exc, zmq.ZMQError):
        return f"{zmq.strerror(exc.errno or 0)} (errno {exc.errno})"
    return repr(exc)


def try_recv(sock: Any) -> list[bytes] | None:
    """The next message if one is waiting, else None; never waits."""
    fut = sock.recv_multipart(flags=zmq.NOBLOCK)
    if not fut.done():  # a receive was already awaited on this socket: let it have the message
        fut.cancel()
        return None
    exc = fut.exception()
    if exc is None:
        frames: list[bytes] = fut.result()
        return frames
    if isinstance(exc, zmq.Again):
        return None
    raise exc


class Reader:
    """Hands every message of a socket to `on_message` straight from the event loop's reader callback.

    Why not `await poller.poll()`: zmq.asyncio goes round the loop three times between the FD waking
    and the message reaching Python; a reader callback on the zmq FD takes one (the heartbeat bench
    measured the difference). The zmq FD is edge-triggered, so after draining a batch the socket's
    EVENTS are checked and the drain is rescheduled while input remains. The socket must not also
    be read through zmq.asyncio (one reader per FD).
    """

    def __init__(self, sock: Any, on_message: Callable[[list[bytes]], object], *, batch: int = 1000) -> None:
        self._sync: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        self._fd = int(self._sync.getsockopt(zmq.FD))
        self._on_message = on_message
        self._batch = batch
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Begin reading on the running loop (messages already queued are read at once)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._drain)
        self._loop.call_soon(self._drain)

    def poke(self) -> None:
        """Drain soon even without a new edge on the FD (a send on this socket may have consumed one)."""
        if self._loop is not None:
            self._loop.call_soon(self._drain)

    def send(self, frames: list[bytes]) -> bool:
        """Send on the same socket without blocking: False when the peer's pipe is full (EAGAIN).

        Raises ZMQError for an unroutable ROUTER identity (ROUTER_MANDATORY: the peer is gone).
        """
        try:
            return send_nowait(self._sync, frames)
        finally:
            if int(self._sync.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                self.poke()

    def stop(self) -> None:
        """Stop reading (idempotent)."""
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def _drain(self) -> None:
        if self._loop is None:
            return
        for _ in range(self._batch):
            try:
                frames = self._sync.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                return  # the socket is closing
            self._on_message(frames)
        if int(self._sync.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self._loop.call_soon(self._drain)  # more input: yield to the loop first, then go on


def make_poller(socks: Iterable[Any]) -> Any:
    """An asyncio poller watching `socks` for input."""
    poller = zmq.asyncio.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    return poller


def router_mandatory(sock: Any) -> None:
    """ROUTER: a send to an identity that is not connected raises (EHOSTUNREACH) instead of vanishing."""
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)


def subscribe(sock: Any, topic: bytes) -> None:
    """SUB: receive messages whose first frame starts with `topic`."""
    sock.setsockopt(zmq.SUBSCRIBE, topic)
