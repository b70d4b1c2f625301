"""The control channel (SPEC §3): JSON commands on a loopback ROUTER, and the client the CLI uses.

Most commands are instant (they change some state and answer): those are run
and answered inline, in the order they arrive, so they are never refused. A
command that waits (the `slow` ones, e.g. `debug.sleep`) runs in its own task,
so it never blocks the others; at most MAX_INFLIGHT of those run at once and a
further one is answered "busy". Admission counts what is running, never what is
merely queued on the socket, so a flood of requests is served (at most
BATCH_PER_WAKE per turn of the event loop, so the loop goes on) rather than
turned into refusals of honest clients. Replies carry the exit code the CLI
should use (0 ok, 1 runtime, 2 usage).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog

from swimmy.errors import SwimmyError
from swimmy.telemetry.queue import Emit
from swimmy.wire.zmq import DEALER, Wire, make_poller, try_recv, try_send

MAX_INFLIGHT = 32  # slow commands running at once
BATCH_PER_WAKE = 256  # requests served before the control task lets the event loop go round
TICK_SEC = 1.0

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
log = structlog.get_logger(logger_name="swimmy.control")


class CommandError(Exception):
    """A command refused: the message is shown to the operator, the exit code returned by the CLI."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ControlUnavailableError(Exception):
    """No daemon answered at the endpoint in time."""


class ControlServer:
    """Serves commands from a bound ROUTER socket."""

    def __init__(self, sock: Any, emit: Emit, commands: dict[str, Command], *,
                 slow: frozenset[str] = frozenset(), on_progress: Callable[[], None] | None = None) -> None:
        self._sock = sock
        self._emit = emit
        self.commands = commands
        self.slow = slow
        self.refused_busy = 0
        self._on_progress = on_progress or (lambda: None)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Receive requests until cancelled; in-flight commands are cancelled with it."""
        poller = make_poller([self._sock])
        try:
            while True:
                self._on_progress()
                if await poller.poll(timeout=int(TICK_SEC * 1000)):
                    for _ in range(BATCH_PER_WAKE):
                        if (frames := try_recv(self._sock)) is None:
                            break
                        await self._accept(frames)
                    await asyncio.sleep(0)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            return  # not from a DEALER/REQ: nothing to answer to
        identity, payload = frames[0], frames[-1]
        request = _parse_request(payload)
        if isinstance(request, str):
            self._finish(identity, str(uuid.uuid4()), {"command": None}, None,
                         CommandError(f"bad request: {request}", 2))
            return
        request_id = str(request.get("id") or uuid.uuid4())
        if request["command"] not in self.slow:
            await self._execute(identity, request_id, request)
            return
        if len(self._tasks) >= MAX_INFLIGHT:
            self.refused_busy += 1
            self._finish(identity, request_id, request, None,
                         CommandError(f"busy: {len(self._tasks)} slow commands are running; try again"))
            return
        task = asyncio.create_task(self._execute(identity, request_id, request), name=f"control:{request['command']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, identity: bytes, request_id: str, request: dict[str, Any]) -> None:
        name = request["command"]
        args: dict[str, Any] = request["args"] if isinstance(request.get("args"), dict) else {}
        command = self.commands.get(name)
        if command is None:
            known = ", ".join(sorted(self.commands))
            error = CommandError(f"unknown command {name!r} (known: {known})", 2)
            self._finish(identity, request_id, request, None, error)
            return
        try:
            result = await command(args)
        except CommandError as exc:
            self._finish(identity, request_id, request, None, exc)
        except SwimmyError as exc:  # a refusal from the service, with its own exit code (1 or 2)
            self._finish(identity, request_id, request, None, CommandError(str(exc), exc.exit_code))
        except Exception as exc:
            log.error("control command failed", command=name, exc_info=exc)
            self._finish(identity, request_id, request, None, CommandError(f"internal error: {exc!r}", 1))
        else:
            self._finish(identity, request_id, request, result, None)

    def _finish(self, identity: bytes, request_id: str, request: dict[str, Any],
                result: dict[str, Any] | None, error: CommandError | None) -> None:
        args = request.get("args") if isinstance(request.get("args"), dict) else {}
        self._emit(
            "control.command",
            service="core",
            severity="info",
            correlation_id=request_id,
            data={"command": request.get("command"), "args": args, "accepted": error is None,
                  "error": None if error is None else str(error)},
        )
        reply: dict[str, Any] = {"id": request_id, "ok": error is None}
        if error is None:
            reply["result"] = result or {}
            reply["exit_code"] = 0
        else:
            reply["error"] = str(error)
            reply["exit_code"] = error.exit_code
        self._reply(identity, reply)

    def _reply(self, identity: bytes, reply: dict[str, Any]) -> None:
        try:
            try_send(self._sock, [identity, orjson.dumps({"v": 1, "type": "REPLY", **reply}, default=str)])
        except Exception as exc:  # noqa: BLE001 - the client may be gone; the daemon goes on
            log.warning("control reply not sent", error=repr(exc))


def _parse_request(payload: bytes) -> dict[str, Any] | str:
    """The request object, or what is wrong with it."""
    try:
        request = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        return "a command request is an object with a string `command`"
    return request


async def request(wire: Wire, endpoint: str, command: str, args: dict[str, Any] | None = None, *,
                  timeout_sec: float, curve: bool) -> dict[str, Any]:
    """Send one command and wait for its reply; ControlUnavailableError names the endpoint on timeout."""
    sock = wire.connect(DEALER, endpoint, curve=curve)
    try:
        request_id = str(uuid.uuid4())
        body = {"v": 1, "type": "COMMAND", "id": request_id, "command": command, "args": args or {}}
        try_send(sock, [orjson.dumps(body)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_sec
        poller = make_poller([sock])
        while (left := deadline - loop.time()) > 0:
            if await poller.poll(timeout=max(1, int(left * 1000))):
                while (frames := try_recv(sock)) is not None:
                    reply = orjson.loads(frames[-1])
                    if isinstance(reply, dict) and reply.get("id") == request_id:
                        return reply
    finally:
        wire.close_socket(sock)  # one socket per request: a client that asks many times must not leak them
    raise ControlUnavailableError(f"no answer from the swimmy daemon at {endpoint} within {timeout_sec:g}s "
                                  "(is it running with this config?)")
