"""The integration-test kit: a running `swimmy run` with its telemetry, its control channel and waits on both.

Built on tests/helpers.py (DaemonProcess, read_events, wait_until, run_cli) and the `daemon_factory` fixture of
tests/conftest.py, which kills whatever a test leaves running; tests/integration/conftest.py turns them into the
`start_daemon` and `start_fleet` fixtures, which hand out a `RunningDaemon`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cached_property
from pathlib import Path
from signal import Signals
from typing import Any, Protocol

import orjson
import zmq
from helpers import DaemonProcess, read_all_events, read_events, run_cli, wait_until

from swimmy.config import Config, load_config
from swimmy.daemon.control import request
from swimmy.wire.security import uses_curve
from swimmy.wire.zmq import Wire, load_curve_keys

Event = dict[str, Any]


def matching(events: Iterable[Event], event_type: str | None = None, **match: Any) -> list[Event]:
    """The events of `event_type` (any type when None) whose data holds every `match` key with that value."""
    return [e for e in events if (event_type is None or e["event_type"] == event_type)
            and all(e["data"].get(k) == v for k, v in match.items())]


async def wait_until_async(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """helpers.wait_until for a test on the event loop: it sleeps with asyncio, so the loop's other tasks run."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


def http_get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b"") while nothing listens yet (the HTTP server starts after daemon.started)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError:
        return 0, b""


class ControlClient:
    """One Wire to a daemon's control endpoint, secured as the CLI secures it; requests on it may overlap."""

    def __init__(self, cfg: Config) -> None:
        self.endpoint = cfg.control.endpoint
        self.curve = uses_curve(cfg.zmq, self.endpoint)
        self._wire = Wire(cfg.zmq, load_curve_keys(cfg.zmq) if self.curve else None)

    async def request(self, name: str, *, timeout_sec: float = 10.0, **args: Any) -> dict[str, Any]:
        """Send one command and return the reply: {"ok": True, "result": ...} or {"ok": False, "error", "exit_code"}."""
        return await request(self._wire, self.endpoint, name, args, timeout_sec=timeout_sec, curve=self.curve)

    def close(self) -> None:
        """Close the wire and its sockets."""
        self._wire.close()


class HeartbeatSubscriber:
    """A SUB socket on the daemon's PUB endpoint, subscribed to HEARTBEAT."""

    def __init__(self, endpoint: str, timeout_ms: int) -> None:
        self._ctx = zmq.Context()
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"HEARTBEAT")
        self._sub.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self._sub.connect(endpoint)

    def receive(self) -> dict[str, Any]:
        """The body of the next heartbeat (zmq.Again after the timeout)."""
        _, body = self._sub.recv_multipart()
        return dict(orjson.loads(body))

    def close(self) -> None:
        """Close the socket at once and end its context."""
        self._sub.close(linger=0)
        self._ctx.term()


class WorkerProcess:
    """A `swimmy worker` started by hand, as on another host; `stop()` kills it."""

    def __init__(self, config: Path, worker_id: str | None = None) -> None:
        ident = ["--id", worker_id] if worker_id is not None else []
        self.proc = subprocess.Popen([sys.executable, "-m", "swimmy", "worker", "--config", str(config), *ident],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class RunningDaemon:
    """A `swimmy run` subprocess (helpers.DaemonProcess) seen through its telemetry file and control channel."""

    def __init__(self, process: DaemonProcess) -> None:
        self.process = process
        self.config = process.config

    @cached_property
    def cfg(self) -> Config:
        """The daemon's config, read on first use (not at start: a test may start it on a config meant to fail)."""
        return load_config(self.config)

    @property
    def telemetry(self) -> Path:
        """The live telemetry file."""
        return self.cfg.telemetry.path

    # -- the process (helpers.DaemonProcess) -------------------------------------------------------

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The subprocess itself."""
        return self.process.proc

    def signal(self, sig: Signals) -> None:
        """Send a signal."""
        self.process.signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for exit; return the exit code."""
        return self.process.wait(timeout)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        return self.process.stop()

    def kill_all(self) -> None:
        """SIGKILL the daemon and its embedded workers."""
        self.process.kill_all()

    @property
    def stdout(self) -> str:
        """Captured stdout (after an exit)."""
        return self.process.stdout

    @property
    def stderr(self) -> str:
        """Captured stderr (after an exit)."""
        return self.process.stderr

    # -- telemetry -----------------------------------------------------------------------------------

    def events(self, event_type: str | None = None, /, *, complete: bool = False, **match: Any) -> list[Event]:
        """Parsed lines of the live file, filtered by type and data fields; `complete` for a file at rest."""
        return matching(read_events(self.telemetry, complete=complete), event_type, **match)

    def all_events(self) -> list[Event]:
        """Every line of the rotated backups (oldest first) and of the live file; each line must be whole."""
        return read_all_events(self.telemetry)

    def started(self) -> bool:
        """Whether daemon.started is in the file."""
        return bool(self.events("daemon.started"))

    def wait_started(self, timeout: float = 20.0) -> None:
        """Wait for daemon.started."""
        wait_until(self.started, timeout, "daemon.started")

    def _found(self, event_type: str, count: int, match: dict[str, Any]) -> list[Event] | None:
        found = self.events(event_type, **match)
        return found if len(found) >= count else None

    def _what(self, event_type: str, count: int, match: dict[str, Any]) -> str:
        return f"{count} x {event_type}" + (f" with {match}" if match else "")

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 10.0, **match: Any) -> list[Event]:
        """Wait until `count` matching events are in the file; all the matching events then."""
        found: list[Event] = wait_until(lambda: self._found(event_type, count, match), timeout,
                                        self._what(event_type, count, match))
        return found

    async def wait_for_async(self, event_type: str, count: int = 1, timeout: float = 10.0,
                             **match: Any) -> list[Event]:
        """`wait_for` for a test on the event loop (a Peer or socket of the test runs meanwhile)."""
        found: list[Event] = await wait_until_async(lambda: self._found(event_type, count, match), timeout,
                                                    self._what(event_type, count, match))
        return found

    def wait_distinct(self, event_type: str, key: str, n: int, timeout: float = 30.0) -> None:
        """Wait until events of `event_type` carry `n` distinct values of data[key] (`n` workers, `n` peers)."""
        wait_until(lambda: len({e["data"][key] for e in self.events(event_type)}) >= n, timeout,
                   f"{n} distinct {key} in {event_type}")

    def wait_workers_ready(self, n: int, timeout: float = 30.0) -> None:
        """Wait until `n` workers have sent READY on the work socket (only then does the broker give them work)."""
        self.wait_distinct("worker.ready", "worker", n, timeout)

    # -- the control channel, the CLI, the PUB socket, HTTP ------------------------------------------

    @asynccontextmanager
    async def control(self) -> AsyncIterator[ControlClient]:
        """A control client for several (possibly concurrent) requests, closed on the way out."""
        client = ControlClient(self.cfg)
        try:
            yield client
        finally:
            client.close()

    def command(self, name: str, *, timeout_sec: float = 10.0, **args: Any) -> dict[str, Any]:
        """One control command through the real control channel, as the CLI sends it; the reply."""

        async def one() -> dict[str, Any]:
            async with self.control() as client:
                return await client.request(name, timeout_sec=timeout_sec, **args)

        return asyncio.run(one())

    async def submit_many(self, bodies: list[dict[str, Any]], parallel: int = 16,
                          timeout_sec: float = 20.0) -> list[str]:
        """backtest.submit of each body, `parallel` at a time, each accepted; the request_ids in order."""
        gate = asyncio.Semaphore(parallel)
        async with self.control() as client:

            async def one(body: dict[str, Any]) -> str:
                async with gate:
                    reply = await client.request("backtest.submit", timeout_sec=timeout_sec, **body)
                    assert reply["ok"], (reply, self.events("worker.lost"))
                    return str(reply["result"]["request_id"])

            return list(await asyncio.gather(*(one(b) for b in bodies)))

    def submit(self, strategy: dict[str, Any], **args: Any) -> str:
        """backtest.submit of one strategy (wire form), accepted; its request_id."""
        return asyncio.run(self.submit_many([{"strategy": strategy, **args}]))[0]

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`swimmy ARGS --config <this daemon's config>` to completion."""
        return run_cli(*args, "--config", str(self.config), env=env)

    @contextmanager
    def heartbeats(self, timeout_ms: int = 5000) -> Iterator[HeartbeatSubscriber]:
        """A HEARTBEAT subscriber on the daemon's PUB endpoint, closed on the way out."""
        sub = HeartbeatSubscriber(self.cfg.zmq.pub_endpoint, timeout_ms)
        try:
            yield sub
        finally:
            sub.close()

    def http_get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of GET `path` on the metrics listener; (0, b"") while it is not up."""
        return http_get(f"http://{self.cfg.metrics.listen}{path}")

    def wait_http(self, path: str, status: int, timeout: float = 20.0) -> bytes:
        """Wait until GET `path` answers `status`; the body of that answer."""
        _, body = wait_until(lambda: (r := self.http_get(path))[0] == status and r, timeout,
                             f"GET {path} to answer {status}")
        return bytes(body)


class StartDaemon(Protocol):
    """The `start_daemon` fixture: `swimmy run --config CONFIG ARGS` with `env` added to the environment."""

    def __call__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> RunningDaemon: ...


class StartFleet(Protocol):
    """The `start_fleet` fixture: a daemon with embedded workers and the debug hooks, its workers serving."""

    def __call__(self, workers: int, *, heartbeat_acked: bool = False, **sections: dict[str, Any]) -> RunningDaemon: ...
