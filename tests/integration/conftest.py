"""Fixtures of the integration tests: running daemons from the kit (tests/integration/kit.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonProcess, write_config
from integration.kit import RunningDaemon, StartDaemon, StartFleet


@pytest.fixture
def start_daemon(daemon_factory: Callable[..., DaemonProcess]) -> StartDaemon:
    """Start `swimmy run` on a config as a RunningDaemon; daemon_factory kills what is left after the test."""

    def start(config: Path, *args: str, env: dict[str, str] | None = None) -> RunningDaemon:
        return RunningDaemon(daemon_factory(config, *args, env=env))

    return start


@pytest.fixture
def start_fleet(tmp_path: Path, start_daemon: StartDaemon) -> StartFleet:
    """A daemon on a config in tmp_path with `workers` embedded workers and the debug hooks on, `sections`
    overlaid, returned once every worker has sent READY (and, with `heartbeat_acked`, acked a heartbeat)."""

    def start(workers: int, *, heartbeat_acked: bool = False, **sections: dict[str, Any]) -> RunningDaemon:
        debug = {"enabled": True, **sections.pop("debug", {})}
        daemon = start_daemon(write_config(tmp_path, {"workers": {"embedded": workers}, "debug": debug, **sections}))
        if heartbeat_acked:
            # A started worker still has to connect, and its two sockets connect independently: an ack alone
            # does not mean the broker can give it work (a submit would then be refused), hence READY too.
            daemon.wait_for("worker.started", count=workers, timeout=20)
            daemon.wait_distinct("heartbeat.recv", "source", workers, 30)
        daemon.wait_workers_ready(workers)
        return daemon

    return start
