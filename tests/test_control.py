"""The control channel on real loopback sockets: replies, exit codes, refusals, the slow-command cap, the client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from helpers import free_port

from swimmy.config import ZmqConfig
from swimmy.daemon import control
from swimmy.daemon.control import CommandError, ControlServer, ControlUnavailableError, request
from swimmy.errors import DataError, UsageError
from swimmy.testing import CapturingEmitter
from swimmy.wire.zmq import DEALER, ROUTER, Wire

BAD_SHAPE = "bad request: a command request is an object with a string `command`"


@dataclass
class Channel:
    """A running ControlServer, what it emitted, and a way to talk to it."""

    server: ControlServer
    emit: CapturingEmitter
    endpoint: str
    wire: Wire

    async def ask(self, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """One command as the CLI sends it."""
        return await request(self.wire, self.endpoint, command, args, timeout_sec=2, curve=False)

    def dealer(self) -> Any:
        """A raw client socket, for requests the CLI would never send."""
        return self.wire.connect(DEALER, self.endpoint, curve=False)


async def until(predicate: Callable[[], object], what: str) -> None:
    """Let the loop and the sockets run until `predicate` holds (a real round trip, not a fake time)."""
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def running(name: str) -> list[asyncio.Task[Any]]:
    """The tasks of this loop with this name."""
    return [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]


async def replies(sock: Any, n: int) -> list[dict[str, Any]]:
    """The next `n` replies on a raw client socket."""
    return [orjson.loads((await asyncio.wait_for(sock.recv_multipart(), 2))[-1]) for _ in range(n)]


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    """A zmq context for one test (LINGER 0: nothing outlives it)."""
    w = Wire(ZmqConfig(linger_ms=0))
    yield w
    w.close()


@pytest.fixture
async def serve(wire: Wire) -> AsyncIterator[Callable[..., Channel]]:
    """Start ControlServers on loopback ROUTERs (ports the kernel picks); each is cancelled and awaited at the end."""
    tasks: list[asyncio.Task[None]] = []

    def start(commands: dict[str, control.Command], *, slow: frozenset[str] = frozenset(),
              on_progress: Callable[[], None] | None = None) -> Channel:
        sock = wire.bind(ROUTER, "tcp://127.0.0.1:*", curve=False)
        emit = CapturingEmitter()
        server = ControlServer(sock, emit, commands, slow=slow, on_progress=on_progress)
        tasks.append(asyncio.create_task(server.run(), name="control"))
        return Channel(server, emit, sock.last_endpoint.decode(), wire)

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"got": args}


def refusing(exc: Exception) -> control.Command:
    async def command(args: dict[str, Any]) -> dict[str, Any]:
        raise exc

    return command


class TestReplies:
    async def test_a_command_is_answered_with_its_result_and_exit_code_0(self, serve: Callable[..., Channel]) -> None:
        """The reply is a v1 REPLY with the request's id, ok, the command's result (given the args) and exit 0."""
        channel = serve({"echo": echo})
        reply = await channel.ask("echo", {"strategy": "s-1"})
        assert reply == {"v": 1, "type": "REPLY", "id": reply["id"], "ok": True,
                         "result": {"got": {"strategy": "s-1"}}, "exit_code": 0}

    async def test_an_unknown_command_exits_2_and_lists_the_known_ones(self, serve: Callable[..., Channel]) -> None:
        """A typo is a usage error naming every command the daemon knows, in order."""
        channel = serve({"wfv.start": echo, "heartbeat.now": echo})
        reply = await channel.ask("heartbeat.nwo")
        assert (reply["ok"], reply["exit_code"]) == (False, 2)
        assert reply["error"] == "unknown command 'heartbeat.nwo' (known: heartbeat.now, wfv.start)"
        assert "result" not in reply

    @pytest.mark.parametrize(
        ("exc", "exit_code", "error"),
        [
            (CommandError("no strategy named 'x'", 2), 2, "no strategy named 'x'"),
            (CommandError("the OOS queue is full"), 1, "the OOS queue is full"),
            (UsageError("--from is after --to"), 2, "--from is after --to"),
            (DataError("EURUSD_H1.csv:3: bad number"), 1, "EURUSD_H1.csv:3: bad number"),
            (ZeroDivisionError("boom"), 1, "internal error: ZeroDivisionError('boom')"),
        ],
    )
    async def test_a_refusal_carries_its_message_and_exit_code(
        self, serve: Callable[..., Channel], exc: Exception, exit_code: int, error: str
    ) -> None:
        """CommandError and SwimmyError keep their own exit code; any other exception is an internal error, 1."""
        channel = serve({"go": refusing(exc)})
        reply = await channel.ask("go")
        assert (reply["ok"], reply["exit_code"], reply["error"]) == (False, exit_code, error)

    async def test_a_command_that_crashes_does_not_take_the_channel_down(self, serve: Callable[..., Channel]) -> None:
        """After an internal error (instant or slow command) the next command is answered as usual."""
        channel = serve({"crash": refusing(RuntimeError("bug")), "slow-crash": refusing(KeyError("k")),
                         "echo": echo}, slow=frozenset({"slow-crash"}))
        assert (await channel.ask("crash"))["error"] == "internal error: RuntimeError('bug')"
        assert (await channel.ask("slow-crash"))["error"] == "internal error: KeyError('k')"
        assert (await channel.ask("echo", {"n": 1}))["result"] == {"got": {"n": 1}}

    async def test_the_request_id_is_echoed_and_args_that_are_not_an_object_become_empty(
        self, serve: Callable[..., Channel]
    ) -> None:
        """A client's id comes back as the reply's id; `args` that is not an object reaches the command as {}."""
        channel = serve({"echo": echo})
        sock = channel.dealer()
        await sock.send_multipart([orjson.dumps({"id": "op-42", "command": "echo", "args": [1, 2]})])
        (reply,) = await replies(sock, 1)
        assert (reply["id"], reply["result"]) == ("op-42", {"got": {}})

    async def test_a_request_without_id_gets_a_fresh_one(self, serve: Callable[..., Channel]) -> None:
        """No id: the reply and its control.command event share a new UUID."""
        channel = serve({"echo": echo})
        sock = channel.dealer()
        await sock.send_multipart([b'{"command": "echo"}'])
        (reply,) = await replies(sock, 1)
        uuid.UUID(reply["id"])
        assert channel.emit.of_type("control.command")[0].correlation_id == reply["id"]


class TestBadRequests:
    @pytest.mark.parametrize(
        ("payload", "error"),
        [
            (b"{not json", "bad request: "),
            (b"[1, 2]", BAD_SHAPE),
            (b'{"command": 7}', BAD_SHAPE),
            (b'{"args": {}}', BAD_SHAPE),
        ],
    )
    async def test_a_request_that_is_not_a_command_is_refused_with_exit_2(
        self, serve: Callable[..., Channel], payload: bytes, error: str
    ) -> None:
        """Bad JSON or a wrong shape: a usage refusal saying so, recorded as a refused command; the channel goes on."""
        channel = serve({"echo": echo})
        sock = channel.dealer()
        await sock.send_multipart([payload])
        (reply,) = await replies(sock, 1)
        assert (reply["ok"], reply["exit_code"]) == (False, 2)
        assert reply["error"].startswith(error) and len(reply["error"]) > len("bad request: ")
        (event,) = channel.emit.of_type("control.command")
        assert event.data == {"command": None, "args": {}, "accepted": False, "error": reply["error"]}
        assert (await channel.ask("echo"))["ok"] is True


class TestEvents:
    async def test_every_command_is_recorded_with_its_outcome(self, serve: Callable[..., Channel]) -> None:
        """One control.command per request (service core, correlated by request id): args, accepted, error."""
        channel = serve({"echo": echo, "refuse": refusing(CommandError("not now", 1))})
        ok = await channel.ask("echo", {"name": "s-1"})
        refused = await channel.ask("refuse", {"name": "s-2"})
        first, second = channel.emit.of_type("control.command")
        assert (first.service, first.severity, first.correlation_id) == ("core", "info", ok["id"])
        assert first.data == {"command": "echo", "args": {"name": "s-1"}, "accepted": True, "error": None}
        assert second.correlation_id == refused["id"]
        assert second.data == {"command": "refuse", "args": {"name": "s-2"}, "accepted": False, "error": "not now"}


class TestSlowCommands:
    async def test_a_slow_command_never_blocks_an_instant_one(self, serve: Callable[..., Channel]) -> None:
        """While a slow command waits, an instant one is answered; the slow one answers when it is done."""
        gate = asyncio.Event()

        async def wait(args: dict[str, Any]) -> dict[str, Any]:
            await gate.wait()
            return {"waited": True}

        channel = serve({"wait": wait, "echo": echo}, slow=frozenset({"wait"}))
        slow = asyncio.create_task(channel.ask("wait"))
        await until(lambda: running("control:wait"), "the slow command to be admitted")
        assert (await channel.ask("echo"))["ok"] is True
        assert not slow.done()
        gate.set()
        assert (await slow)["result"] == {"waited": True}

    async def test_beyond_the_cap_a_slow_command_is_answered_busy_and_admitted_once_slots_free(
        self, serve: Callable[..., Channel]
    ) -> None:
        """MAX_INFLIGHT slow commands run; the next ones get "busy" (exit 1) at once; instant ones still pass."""
        gate = asyncio.Event()

        async def wait(args: dict[str, Any]) -> dict[str, Any]:
            await gate.wait()
            return {}

        channel = serve({"wait": wait, "echo": echo}, slow=frozenset({"wait"}))
        sock = channel.dealer()
        for i in range(control.MAX_INFLIGHT + 2):
            await sock.send_multipart([orjson.dumps({"id": f"w{i}", "command": "wait"})])
        busy = await replies(sock, 2)
        assert [r["id"] for r in busy] == [f"w{control.MAX_INFLIGHT}", f"w{control.MAX_INFLIGHT + 1}"]
        for reply in busy:
            assert (reply["ok"], reply["exit_code"]) == (False, 1)
            assert reply["error"] == f"busy: {control.MAX_INFLIGHT} slow commands are running; try again"
        assert channel.server.refused_busy == 2
        assert (await channel.ask("echo"))["ok"] is True
        gate.set()
        done = await replies(sock, control.MAX_INFLIGHT)
        assert all(r["ok"] for r in done)
        assert (await channel.ask("wait"))["ok"] is True

    async def test_stopping_the_server_cancels_the_slow_commands_in_flight(self, serve: Callable[..., Channel]) -> None:
        """Cancelling run() cancels and awaits every running slow command: none outlives the channel."""
        cancelled = asyncio.Event()

        async def hang(args: dict[str, Any]) -> dict[str, Any]:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return {}

        channel = serve({"hang": hang}, slow=frozenset({"hang"}))
        sock = channel.dealer()
        await sock.send_multipart([b'{"command": "hang"}'])
        await until(lambda: running("control:hang"), "the slow command to run")
        (server_task,) = running("control")
        server_task.cancel()
        await asyncio.wait([server_task], timeout=2)
        assert server_task.done(), "run() is still waiting for a slow command nobody cancelled"
        assert cancelled.is_set()
        assert not running("control:hang")

    async def test_the_control_task_beats_progress_while_idle(self, serve: Callable[..., Channel]) -> None:
        """on_progress is called as soon as run() starts, before any request (/healthz follows it)."""
        beats: list[None] = []
        serve({}, on_progress=lambda: beats.append(None))
        await asyncio.sleep(0)
        assert beats


class TestClient:
    async def test_no_daemon_raises_naming_the_endpoint_and_the_timeout(self, wire: Wire) -> None:
        """Nothing listening: ControlUnavailableError after timeout_sec, in words an operator can act on."""
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        with pytest.raises(ControlUnavailableError) as caught:
            await request(wire, endpoint, "heartbeat.now", timeout_sec=0.2, curve=False)
        assert str(caught.value) == (f"no answer from the swimmy daemon at {endpoint} within 0.2s "
                                     "(is it running with this config?)")

    async def test_the_client_sends_a_v1_command_and_skips_replies_to_other_requests(self, wire: Wire) -> None:
        """The request is {v, type COMMAND, id, command, args}; a reply with another id is not taken for ours."""
        daemon = wire.bind(ROUTER, "tcp://127.0.0.1:*", curve=False)
        seen: list[dict[str, Any]] = []

        async def answer_twice() -> None:
            identity, body = await daemon.recv_multipart()
            seen.append(orjson.loads(body))
            await daemon.send_multipart([identity, orjson.dumps({"id": "someone-else", "ok": False})])
            await daemon.send_multipart([identity, orjson.dumps({"id": seen[0]["id"], "ok": True, "result": {}})])

        fake = asyncio.create_task(answer_twice())
        reply = await request(wire, daemon.last_endpoint.decode(), "oos.request", {"name": "s-1"},
                              timeout_sec=2, curve=False)
        await fake
        (sent,) = seen
        assert sent == {"v": 1, "type": "COMMAND", "id": sent["id"], "command": "oos.request",
                        "args": {"name": "s-1"}}
        assert reply == {"id": sent["id"], "ok": True, "result": {}}
