"""The command line, in process: usage errors, exit codes 0/1/2/130 and the words printed with them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import write_config

from swimmy import __version__
from swimmy.cli import datatools
from swimmy.cli.main import main
from swimmy.config import ZmqConfig, load_config
from swimmy.daemon.control import CommandError, ControlServer
from swimmy.testing import CapturingEmitter
from swimmy.wire.zmq import ROUTER, Wire

CONFIG = "swimmy.toml"  # never read: argparse refuses the line first


class TestUsage:
    @pytest.mark.parametrize(
        ("argv", "error"),
        [
            ([], "the following arguments are required: COMMAND"),
            (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
            (["run"], "the following arguments are required: --config"),
            (["wfv"], "the following arguments are required: SUBCOMMAND"),
            (["wfv", "start", "--config", CONFIG], "the following arguments are required: name"),
            (["tail", "--config", CONFIG, "--path", "t.jsonl"], "argument --path: not allowed with argument --config"),
            (["tail", "--severity", "loud"], "argument --severity: invalid choice: 'loud'"),
            (["strategies", "list", "--config", CONFIG, "--rank", "Z"], "argument --rank: invalid choice: 'Z'"),
            (["strategies", "list", "--config", CONFIG, "--limit", "ten"],
             "argument --limit: invalid int value: 'ten'"),
            (["data", "generate", "--kind", "random_walk", "--symbol", "SYNTH_X", "--timeframe", "H2", "--config",
              CONFIG], "argument --timeframe: invalid choice: 'H2'"),
            (["data", "generate", "--kind", "brownian", "--symbol", "SYNTH_X", "--timeframe", "H1", "--config",
              CONFIG], "argument --kind: invalid choice: 'brownian'"),
            (["heartbeat", "now", "--config", CONFIG, "--timeout", "soon"],
             "argument --timeout: invalid float value: 'soon'"),
            (["run", "--config", CONFIG, "--exit-after", "later"], "argument --exit-after: invalid float value"),
        ],
    )
    def test_a_bad_command_line_exits_2_with_usage_and_the_reason(
        self, capsys: pytest.CaptureFixture[str], argv: list[str], error: str
    ) -> None:
        """argparse refuses it before anything runs: exit 2, the usage line and the reason on stderr, no stdout."""
        with pytest.raises(SystemExit) as caught:
            main(argv)
        out, err = capsys.readouterr()
        assert caught.value.code == 2
        assert err.startswith("usage: swimmy")
        assert f"error: {error}" in err
        assert out == ""

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints `swimmy <version>` and exits 0."""
        with pytest.raises(SystemExit) as caught:
            main(["--version"])
        assert caught.value.code == 0
        assert capsys.readouterr().out == f"swimmy {__version__}\n"


class TestErrors:
    def test_a_config_error_exits_2_listing_every_problem_indented(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each problem of the config on its own indented line under `swimmy: invalid config:`; nothing on stdout."""
        path = tmp_path / "bad.toml"
        path.write_text("[wfv]\nmax_pending = -1\n[telemetry]\nunknown_key = 1\n")
        assert main(["config", "check", "--config", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        head, *problems = err.splitlines()
        assert head == "swimmy: invalid config:"
        unknown, negative = sorted(problems)
        assert unknown.startswith("  telemetry.unknown_key: unknown key")
        assert negative == "  wfv.max_pending: must be >= 0, got -1"

    @pytest.mark.parametrize("seconds", ["0", "-1"])
    def test_exit_after_must_be_positive_and_is_refused_before_anything_starts(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], seconds: str
    ) -> None:
        """`run --exit-after 0` exits 2 saying so; no lock, telemetry file or store is created."""
        config = write_config(tmp_path)
        assert main(["run", "--config", str(config), "--exit-after", seconds]) == 2
        assert capsys.readouterr().err == "swimmy: --exit-after must be > 0\n"
        assert not (tmp_path / "var").exists()

    @pytest.mark.parametrize(
        ("flag", "value", "error"),
        [("--bars", "0", "swimmy: --bars must be >= 1, got 0\n"),
         ("--seed", "-1", "swimmy: --seed must be >= 0, got -1\n")],
    )
    def test_a_usage_error_of_a_command_exits_2_with_its_message(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, error: str
    ) -> None:
        """A SwimmyError is printed as `swimmy: <message>` and its exit code is the command's; nothing is written."""
        config = write_config(tmp_path, {"school": {"synthetic_dir": "synth"}})
        argv = ["data", "generate", "--kind", "random_walk", "--symbol", "SYNTH_X", "--timeframe", "H1",
                "--config", str(config), flag, value]
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert (out, err) == ("", error)
        assert not (tmp_path / "synth").exists()

    def test_an_unreadable_since_exits_2_naming_the_flag(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`tail --since` neither an age nor an RFC 3339 time: exit 2, the flag named with the forms it accepts."""
        (tmp_path / "t.jsonl").write_text("")
        assert main(["tail", "--path", str(tmp_path / "t.jsonl"), "--since", "last tuesday"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("swimmy: --since: cannot read 'last tuesday' as a time: expected an age such as")

    def test_ctrl_c_exits_130_without_a_traceback(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An operator's Ctrl-C in a long command (here `data check`) ends it with the shell's 130, quietly."""

        def interrupted(*args: Any, **kwargs: Any) -> int:
            raise KeyboardInterrupt

        monkeypatch.setattr(datatools, "run_check", interrupted)
        assert main(["data", "check", "--config", str(write_config(tmp_path))]) == 130
        assert capsys.readouterr().err == ""


class FakeDaemon:
    """A real ControlServer on a config's control endpoint, answering each command as the test says."""

    def __init__(self, answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
        self.answers = answers
        self.received: list[tuple[str, dict[str, Any]]] = []

    def commands(self) -> dict[str, Any]:
        def command(name: str) -> Any:
            async def run(args: dict[str, Any]) -> dict[str, Any]:
                self.received.append((name, args))
                return self.answers[name](args)

            return run

        return {name: command(name) for name in self.answers}


def refuse(message: str, exit_code: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def answer(args: dict[str, Any]) -> dict[str, Any]:
        raise CommandError(message, exit_code)

    return answer


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Callable[[FakeDaemon], Path]]:
    """Serve a FakeDaemon on the control endpoint of a fresh config; returns that config's path."""
    wire = Wire(ZmqConfig(linger_ms=0))
    tasks: list[asyncio.Task[None]] = []

    def start(fake: FakeDaemon) -> Path:
        config = write_config(tmp_path)
        sock = wire.bind(ROUTER, load_config(config).control.endpoint, curve=False)
        tasks.append(asyncio.create_task(ControlServer(sock, CapturingEmitter(), fake.commands()).run()))
        return config

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    wire.close()


async def cli(*argv: str) -> int:
    """main() in a thread, as a separate process would run it, while the test's loop serves the daemon side."""
    return await asyncio.to_thread(main, list(argv))


class TestControlCommands:
    @pytest.mark.parametrize(
        ("argv", "command", "args"),
        [
            (["heartbeat", "now"], "heartbeat.now", {}),
            (["wfv", "start", "sma-1"], "wfv.start", {"name": "sma-1"}),
            (["oos", "request", "sma-1"], "oos.request", {"name": "sma-1"}),
        ],
    )
    async def test_a_command_the_daemon_accepts_prints_its_result_and_exits_0(
        self, daemon: Callable[[FakeDaemon], Path], capsys: pytest.CaptureFixture[str],
        argv: list[str], command: str, args: dict[str, Any],
    ) -> None:
        """The CLI sends the command with its args; the result is printed as `key: value` lines; exit 0."""
        fake = FakeDaemon({command: lambda a: {"accepted": a.get("name", "now"), "queued": 2}})
        config = daemon(fake)
        assert await cli(*argv, "--config", str(config)) == 0
        assert fake.received == [(command, args)]
        out, err = capsys.readouterr()
        assert (out, err) == (f"accepted: {args.get('name', 'now')}\nqueued: 2\n", "")

    @pytest.mark.parametrize(("daemon_code", "exit_code"), [(2, 2), (1, 1), (7, 1), (0, 1)])
    async def test_a_refusal_prints_the_command_and_reason_and_exits_with_the_daemons_code(
        self, daemon: Callable[[FakeDaemon], Path], capsys: pytest.CaptureFixture[str],
        daemon_code: int, exit_code: int,
    ) -> None:
        """`swimmy: wfv.start: <reason>` on stderr; the daemon's exit code when it is 1 or 2, else 1."""
        config = daemon(FakeDaemon({"wfv.start": refuse("no strategy named 'sma-9'", daemon_code)}))
        assert await cli("wfv", "start", "sma-9", "--config", str(config)) == exit_code
        out, err = capsys.readouterr()
        assert (out, err) == ("", "swimmy: wfv.start: no strategy named 'sma-9'\n")

    @pytest.mark.parametrize("argv", [["heartbeat", "now"], ["wfv", "start", "sma-1"], ["oos", "request", "sma-1"]])
    async def test_no_daemon_exits_1_naming_the_endpoint(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
    ) -> None:
        """Nothing on the control endpoint: after --timeout, exit 1 with the endpoint and what to check."""
        config = write_config(tmp_path)
        endpoint = load_config(config).control.endpoint
        assert await cli(*argv, "--config", str(config), "--timeout", "0.2") == 1
        assert capsys.readouterr().err == (f"swimmy: no answer from the swimmy daemon at {endpoint} within 0.2s "
                                           "(is it running with this config?)\n")
