"""Which endpoints need CurveZMQ, decided purely from the config (SPEC §3 Security)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from swimmy.config import ZmqConfig


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
    if ";" in host:  # tcp://source;dest: the destination is what is bound or reached
        host = host.split(";", 1)[1]
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # `*`, an interface name or a host name: reachable from elsewhere


def endpoints(cfg: ZmqConfig, control_endpoint: str) -> dict[str, str]:
    """Every endpoint the daemon binds, by its config key."""
    return {
        "zmq.pub_endpoint": cfg.pub_endpoint,
        "zmq.pull_endpoint": cfg.pull_endpoint,
        "zmq.backtest_endpoint": cfg.backtest_endpoint,
        "control.endpoint": control_endpoint,
    }


def uses_curve(cfg: ZmqConfig, endpoint: str) -> bool:
    """Whether this endpoint is secured with CurveZMQ under `zmq.curve`."""
    if cfg.curve == "always":
        return True
    if cfg.curve == "off":
        return False
    return not is_loopback(endpoint)


@dataclass(frozen=True)
class SecurityPlan:
    """What start-up must do: which endpoints use CURVE, and what is refused."""

    curve_endpoints: frozenset[str]
    problems: tuple[str, ...]


def plan_security(cfg: ZmqConfig, control_endpoint: str) -> SecurityPlan:
    """Refuse a reachable endpoint without keys unless allow_insecure (the caller exits 2 on problems)."""
    have_keys = cfg.curve_secret_key_file is not None and cfg.curve_public_key_file is not None
    curve: set[str] = set()
    problems: list[str] = []
    for key, endpoint in endpoints(cfg, control_endpoint).items():
        if uses_curve(cfg, endpoint):
            if have_keys:
                curve.add(endpoint)
            elif not cfg.allow_insecure or cfg.curve == "always":
                problems.append(
                    f"{key}: {endpoint} needs CurveZMQ (zmq.curve = {cfg.curve!r}) but "
                    "zmq.curve_secret_key_file / zmq.curve_public_key_file are not set "
                    "(make them with `swimmy keys generate`)"
                    + ("" if cfg.curve == "always" else ", or set zmq.allow_insecure = true")
                )
        elif not is_loopback(endpoint) and not cfg.allow_insecure:
            problems.append(
                f"{key}: {endpoint} is reachable from other hosts without CurveZMQ (zmq.curve = 'off'); "
                "set zmq.allow_insecure = true to accept that"
            )
    return SecurityPlan(frozenset(curve), tuple(problems))
