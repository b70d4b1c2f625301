"""Test helpers: configs with free ports, a real daemon subprocess, JSONL readers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


TREND_UNIVERSE = {
    # A generated universe with a planted trend (backtest/synth.py, the seed of config/dev.toml): the school finds
    # and confirms an edge there within seconds, so OOS and walk-forward verdicts appear (EURUSD's year can't).
    "school": {"symbols": ["SYNTH_TREND"], "synthetic_dir": "var/data", "breed": True},
    "synthetic": {"SYNTH_TREND": {"kind": "planted_trend", "seed": 73, "bars": 30_000}},
}


def write_config(directory: Path, sections: dict[str, dict[str, Any]] | None = None, name: str = "swimmy.toml") -> Path:
    """A config under `directory` with every endpoint on a free loopback port and `sections` overlaid."""
    base: dict[str, dict[str, Any]] = {
        "telemetry": {"path": "var/telemetry.jsonl", "fsync": "off"},
        "zmq": {
            "pub_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "pull_endpoint": f"tcp://127.0.0.1:{free_port()}",
            "backtest_endpoint": f"tcp://127.0.0.1:{free_port()}",
        },
        "control": {"endpoint": f"tcp://127.0.0.1:{free_port()}"},
        "workers": {"embedded": 0},
        # The school breeds nothing unless a test asks: most tests want a quiet daemon.
        "school": {"db_path": "var/school.db", "data_dir": str(REPO / "data" / "eurusd-h1-2017"), "breed": False},
        "snapshots": {"dir": "var/snapshots"},
        "metrics": {"listen": ""},
    }
    for section, values in (sections or {}).items():
        base.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in base.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    path = directory / name
    path.write_text("\n".join(lines))
    return path


def read_events(path: Path, *, complete: bool = False) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed; an invalid line fails the test.

    A live writer may be in the middle of its write() when we read (a reader can see part of it),
    so by default a last line without its newline is left for the next read, as `tail -f` does.
    `complete=True` is for a file at rest: then a missing final newline is a torn line and fails.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    if complete:
        assert not raw or raw.endswith(b"\n"), f"{path} ends with a torn line: {raw[-200:]!r}"
    elif raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
    return [orjson.loads(line) for line in raw.splitlines()]


def read_all_events(path: Path) -> list[dict[str, Any]]:
    """The backups path.N .. path.1 (oldest first) then the live file."""
    backups = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    events: list[dict[str, Any]] = []
    for p in [*backups, path]:
        events.extend(read_events(p, complete=True))
    return events


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class DaemonProcess:
    """A real `swimmy run` subprocess."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swimmy", "run", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            cwd=config.parent,
            start_new_session=True,  # its own process group: a kill reaches its embedded workers too
        )
        self._out: tuple[str, str] | None = None

    def kill_all(self) -> None:
        """SIGKILL the daemon and everything it started; collect what it printed."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            out, err = self.proc.communicate(timeout=10)
            self._out = (out.decode(errors="replace"), err.decode(errors="replace"))

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for exit; return the exit code."""
        out, err = self.proc.communicate(timeout=timeout)
        self._out = (out.decode(errors="replace"), err.decode(errors="replace"))
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        """Captured stderr (after wait)."""
        assert self._out is not None
        return self._out[1]

    @property
    def stdout(self) -> str:
        """Captured stdout (after wait)."""
        assert self._out is not None
        return self._out[0]

    def stop(self) -> int:
        """SIGTERM and wait."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 30.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m swimmy ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "swimmy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
    )
