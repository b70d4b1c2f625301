"""The config's shape: one frozen dataclass per TOML section, each field with its default and rules.

A field's rules (ge, gt, le, lt, check) sit in its metadata (`_opt`); loading (swimmy/config/loading.py)
applies them. Every key has a default, so `Config()` is the config of an empty file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from swimmy.config.plain import to_plain

SEVERITY_NAMES = ("debug", "info", "warning", "error", "critical")
Severity = Literal["debug", "info", "warning", "error", "critical"]
Timeframe = Literal["M1", "M5", "M15", "M30", "H1", "H4", "D1"]

MIB = 1024 * 1024
ENDPOINT_SCHEMES = ("tcp://", "ipc://", "inproc://")


def _opt(default: Any = dataclasses.MISSING, **rules: Any) -> Any:
    """A dataclass field with validation rules (ge, gt, le, lt, check) in its metadata."""
    if isinstance(default, list | dict):
        frozen = tuple(default) if isinstance(default, list) else default
        return field(default_factory=lambda: frozen, metadata=rules)
    return field(default=default, metadata=rules)


def _check_endpoint(value: str) -> str | None:
    if not value.startswith(ENDPOINT_SCHEMES):
        return f"must start with one of {', '.join(ENDPOINT_SCHEMES)}, got {value!r}"
    return None


# The notification kinds `discord.mute` may name (swimmy/notify/alerts.py makes them; `heartbeat` is the summary).
DISCORD_KINDS = ("heartbeat", "peer.silent", "peer.recovered", "wfv.timeout", "worker.exited", "telemetry.failing",
                 "telemetry.recovered", "strategy.promoted", "daemon.started", "daemon.stopping")


def _check_mute(value: tuple[str, ...]) -> str | None:
    unknown = [v for v in value if v not in DISCORD_KINDS]
    if unknown:
        return f"unknown notification kind {unknown[0]!r} (known: {', '.join(DISCORD_KINDS)})"
    return None


def _check_symbols(value: tuple[str, ...]) -> str | None:
    if not value:
        return "must name at least one symbol (a school without a universe does nothing)"
    bad = [v for v in value if not v or not v.replace("_", "").replace(".", "").isalnum() or len(v) > 32]
    if bad:
        return f"a symbol is letters, digits, _ and . (at most 32), got {bad[0]!r}"
    duplicate = next((v for v in value if value.count(v) > 1), None)
    if duplicate is not None:
        return f"{duplicate!r} is listed twice"
    return None


def _check_timeframes(value: tuple[str, ...]) -> str | None:
    known = typing.get_args(Timeframe)
    if not value:
        return "must name at least one timeframe"
    unknown = [v for v in value if v not in known]
    if unknown:
        return f"unknown timeframe {unknown[0]!r} (known: {', '.join(known)})"
    duplicate = next((v for v in value if value.count(v) > 1), None)
    return f"{duplicate!r} is listed twice" if duplicate is not None else None


def _check_listen(value: str) -> str | None:
    if value == "":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"must be HOST:PORT or empty to disable, got {value!r}"
    return None


@dataclass(frozen=True)
class TelemetryConfig:
    """[telemetry]: the JSONL event stream."""

    path: Path = Path("var/telemetry.jsonl")
    max_bytes: int = _opt(32 * MIB, ge=1)
    backups: int = _opt(8, ge=0, le=1000)
    queue_size: int = _opt(100_000, ge=1)
    max_event_bytes: int = _opt(64 * 1024, ge=512)
    fsync: Literal["off", "interval", "always"] = "interval"
    fsync_interval_ms: float = _opt(1000, gt=0)
    drain_timeout_sec: float = _opt(10, gt=0)
    log_level: Severity = "info"


@dataclass(frozen=True)
class HeartbeatConfig:
    """[heartbeat]: our PUB heartbeat and peer liveness."""

    interval_sec: float = _opt(10, gt=0)
    peer_timeout_sec: float = _opt(60, gt=0)
    # Sources never evicted from the (bounded) peer table by unknown ones; workers holding credit are kept too.
    known_peers: tuple[str, ...] = _opt([])


@dataclass(frozen=True)
class ZmqConfig:
    """[zmq]: endpoints, limits and CurveZMQ keys."""

    pub_endpoint: str = _opt("tcp://127.0.0.1:5556", check=_check_endpoint)
    pull_endpoint: str = _opt("tcp://127.0.0.1:5555", check=_check_endpoint)
    result_endpoint: str | None = _opt(None, check=_check_endpoint)  # deprecated: no longer used (SPEC §4)
    backtest_endpoint: str = _opt("tcp://127.0.0.1:5580", check=_check_endpoint)
    max_message_bytes: int = _opt(MIB, ge=1024)
    linger_ms: float = _opt(500, ge=0, le=60_000)
    sndhwm: int = _opt(1000, ge=1)
    curve: Literal["auto", "always", "off"] = "auto"
    curve_secret_key_file: Path | None = None
    curve_public_key_file: Path | None = None
    curve_authorized_keys_dir: Path | None = None
    curve_server_public_key_file: Path | None = None
    allow_insecure: bool = False


@dataclass(frozen=True)
class ControlConfig:
    """[control]: the loopback command channel the CLI talks to."""

    endpoint: str = _opt("tcp://127.0.0.1:5590", check=_check_endpoint)


@dataclass(frozen=True)
class WorkersConfig:
    """[workers]: backtest worker processes the daemon starts itself."""

    embedded: int = _opt(2, ge=0, le=64)
    # The credit a worker announces in READY: how many requests it holds at once (one running, the rest
    # queued in the worker), so a result is followed at once by the next request without a round trip.
    queue_depth: int = _opt(2, ge=1, le=1000)


@dataclass(frozen=True)
class SchoolConfig:
    """[school]: the strategy population and its data."""

    db_path: Path = Path("var/school.db")
    data_dir: Path = Path("data")
    symbols: tuple[str, ...] = _opt(["EURUSD"], check=_check_symbols)
    timeframes: tuple[str, ...] = _opt(["H1"], check=_check_timeframes)  # each symbol is traded on each
    timeframe: Timeframe | None = None  # deprecated: read as timeframes = [timeframe]
    cycle_sec: float = _opt(10, gt=0)
    population_max: int = _opt(2000, ge=1)
    breed_per_cycle: int = _opt(0, ge=0)  # an upper bound per cycle; 0 = none (breeding is paced by free credit)
    breed: bool = True  # false: no new strategies; the school still ranks, qualifies and validates what it has
    progress_interval_sec: float = _opt(10, gt=0)
    audit_interval_sec: float = _opt(3600, gt=0)
    audit_strategies: int = _opt(50, ge=4, le=1000)
    # Where `[synthetic.SYMBOL]` universes are generated (at start-up, when missing) and read from.
    synthetic_dir: Path | None = None

    def universes(self) -> list[tuple[str, str]]:
        """Every (symbol, timeframe) the school trades: each symbol on each timeframe."""
        return [(symbol, timeframe) for symbol in self.symbols for timeframe in self.timeframes]

    def trades(self, symbol: str, timeframe: str) -> bool:
        """Whether (symbol, timeframe) is one of the school's universes."""
        return symbol in self.symbols and timeframe in self.timeframes


@dataclass(frozen=True)
class BacktestConfig:
    """[backtest]: costs and the request timeout."""

    spread_pips: float = _opt(0.8, ge=0)
    slippage_pips: float = _opt(0.2, ge=0)
    timeout_sec: float = _opt(120, gt=0)
    worker_timeout_sec: float = _opt(5, gt=0)
    max_attempts: int = _opt(3, ge=1, le=100)


@dataclass(frozen=True)
class OosConfig:
    """[oos]: the out-of-sample requester."""

    window_fraction: float = _opt(0.25, gt=0, lt=1)  # the holdout: the newest share of each universe's bars
    min_window_days: int = _opt(90, ge=1)  # ... and at least this many days
    window_days: int | None = _opt(None, ge=1)  # deprecated: read as min_window_days
    request_interval_sec: float = _opt(600, gt=0)
    min_trades: int = _opt(20, ge=0)
    min_sharpe: float = 0.35
    min_psr: float = _opt(0.90, ge=0, le=1)
    max_looks: int = _opt(500, ge=1)

    @property
    def holdout_min_days(self) -> int:
        """min_window_days, or the deprecated window_days when an old config sets it."""
        return self.window_days if self.window_days is not None else self.min_window_days


@dataclass(frozen=True)
class WfvConfig:
    """[wfv]: walk-forward validation scheduling and decisions."""

    enabled: bool = True
    interval_sec: float = _opt(3600, ge=0)
    max_pending: int = _opt(2, ge=0)
    max_per_run: int = _opt(1, ge=0)
    folds: int = _opt(5, ge=2, le=50)
    mode: Literal["rolling", "anchored"] = "rolling"
    split_ratio: float = _opt(0.2, gt=0, lt=1)  # a fold's test share of its train + test bars
    pending_timeout_sec: float = _opt(1800, gt=0)
    required_oos_base: float = 0.0
    required_oos_step: float = 0.05
    required_oos_cap: float = 2.0
    min_psr: float = _opt(0.95, ge=0, le=1)
    min_wfe: float = 0.5
    min_profitable_folds: float = _opt(0.6, ge=0, le=1)
    affects_rank: bool = True


@dataclass(frozen=True)
class RankCriteria:
    """[ranks.X]: the IS thresholds a strategy must meet for rank X."""

    sharpe: float = 0.0
    profit_factor: float = _opt(0.0, ge=0)
    win_rate: float = _opt(0.0, ge=0, le=1)
    max_drawdown: float = _opt(1.0, ge=0, le=1)
    min_trades: int = _opt(0, ge=0)
    psr: float = _opt(0.0, ge=0, le=1)
    dsr: float = _opt(0.0, ge=0, le=1)


@dataclass(frozen=True)
class RanksConfig:
    """[ranks]: B, A and S criteria, each on top of the ranks below it (SPEC §5)."""

    B: RankCriteria = field(
        default_factory=lambda: RankCriteria(sharpe=0.15, profit_factor=1.05, max_drawdown=0.25, min_trades=20)
    )
    A: RankCriteria = field(
        default_factory=lambda: RankCriteria(sharpe=0.45, profit_factor=1.20, max_drawdown=0.20, min_trades=30,
                                             dsr=0.95)
    )
    S: RankCriteria = field(default_factory=lambda: RankCriteria(max_drawdown=0.15))


@dataclass(frozen=True)
class SyntheticUniverse:
    """[synthetic.SYMBOL]: a generated universe (swimmy/backtest/synth.py), plainly named as synthetic."""

    kind: Literal["random_walk", "planted_trend"] = "random_walk"
    seed: int = _opt(0, ge=0)
    bars: int = _opt(30_000, ge=100, le=10_000_000)
    noise: Literal["gaussian", "garch"] = "gaussian"


@dataclass(frozen=True)
class InstrumentConfig:
    """[instruments.SYMBOL]: the pip and the costs of one symbol (unset: the defaults of SPEC §4)."""

    pip: float | None = _opt(None, gt=0)  # default: 0.01 for a JPY quote, else 0.0001 (set it for XAUUSD, indices)
    spread_pips: float | None = _opt(None, ge=0)  # default: backtest.spread_pips
    slippage_pips: float | None = _opt(None, ge=0)  # default: backtest.slippage_pips


@dataclass(frozen=True)
class DiscordConfig:
    """[discord]: webhook env var names (never the URLs) and delivery limits."""

    heartbeat_webhook_env: str = "SWIMMY_DISCORD_HEARTBEAT"
    alerts_webhook_env: str = "SWIMMY_DISCORD_ALERTS"
    heartbeat_interval_sec: float = _opt(3600, gt=0)
    queue_size: int = _opt(100, ge=1)
    timeout_sec: float = _opt(10, gt=0)
    alert_cooldown_sec: float = _opt(300, ge=0)
    mute: tuple[str, ...] = _opt([], check=_check_mute)


@dataclass(frozen=True)
class SnapshotsConfig:
    """[snapshots]: metrics.json / status.json."""

    dir: Path = Path("var/snapshots")
    interval_sec: float = _opt(60, gt=0)


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint, the dashboard and the reports; empty `listen` disables it.

    `token_env` names the environment variable holding the bearer token (never the token itself): needed by a
    listener that is not loopback, and required by any listener while it is set (SPEC §7).
    """

    listen: str = _opt("127.0.0.1:9464", check=_check_listen)
    token_env: str = "SWIMMY_METRICS_TOKEN"


@dataclass(frozen=True)
class DebugConfig:
    """[debug]: test hooks; never enabled in production."""

    enabled: bool = False
    burst_on_start: int = _opt(0, ge=0, le=10_000_000)
    # Worker-side fault hooks (with `enabled` only), by strategy name: exit the worker process, or hang
    # the backtest thread (no BUSY beats) while the process and its loop stay alive.
    worker_exit_on: tuple[str, ...] = _opt([])
    worker_hang_on: tuple[str, ...] = _opt([])
    worker_sleep_sec: float = _opt(0.0, ge=0, le=60)  # every backtest takes this much longer (beating BUSY)


@dataclass(frozen=True)
class Config:
    """The whole effective config. `source` is the file it came from (None: defaults)."""

    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    zmq: ZmqConfig = field(default_factory=ZmqConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    school: SchoolConfig = field(default_factory=SchoolConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    oos: OosConfig = field(default_factory=OosConfig)
    wfv: WfvConfig = field(default_factory=WfvConfig)
    ranks: RanksConfig = field(default_factory=RanksConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    snapshots: SnapshotsConfig = field(default_factory=SnapshotsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    synthetic: dict[str, SyntheticUniverse] = field(default_factory=dict)
    instruments: dict[str, InstrumentConfig] = field(default_factory=dict)
    source: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)  # deprecated keys: loaded, said at start

    @property
    def config_hash(self) -> str:
        """A short, stable hash of the effective values (not of the file's bytes)."""
        blob = orjson.dumps(to_plain(self), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()[:12]
