"""The TOML config: one frozen dataclass per section, validated purely and early.

Every key has a default, so an empty file is valid. Errors name the key path
(`wfv.max_pending: must be >= 0, got -1`). Nothing here touches a file other
than the config itself, so a bad config exits before anything is created.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from swimmy.errors import ConfigError

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
    """[metrics]: the Prometheus endpoint; empty `listen` disables it."""

    listen: str = _opt("127.0.0.1:9464", check=_check_listen)


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


# Keys a SIGHUP may change without a restart (SPEC §1). A prefix ending in "." covers a section.
RELOADABLE = ("heartbeat.", "oos.", "wfv.", "ranks.", "discord.", "snapshots.interval_sec", "telemetry.log_level")


class Secret:
    """A value that must never be printed: its repr and str are '***'."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def default_pip(symbol: str) -> float:
    """SPEC §4's default pip: 0.01 for a JPY quote, else 0.0001 (gold and indices must set theirs)."""
    return 0.01 if "JPY" in symbol.upper() else 0.0001


def instrument_costs(cfg: Config, symbol: str) -> dict[str, float]:
    """The `costs` of a BACKTEST for `symbol`: `[instruments.SYMBOL]`, else the defaults."""
    inst = cfg.instruments.get(symbol, InstrumentConfig())
    return {
        "spread_pips": cfg.backtest.spread_pips if inst.spread_pips is None else inst.spread_pips,
        "slippage_pips": cfg.backtest.slippage_pips if inst.slippage_pips is None else inst.slippage_pips,
        "pip": default_pip(symbol) if inst.pip is None else inst.pip,
    }


def webhook_urls(cfg: DiscordConfig, env: Mapping[str, str] | None = None) -> tuple[Secret | None, Secret | None]:
    """(heartbeat, alerts) webhook URLs from the environment, each falling back to the other."""
    env = os.environ if env is None else env
    heartbeat = env.get(cfg.heartbeat_webhook_env) or None
    alerts = env.get(cfg.alerts_webhook_env) or None
    heartbeat, alerts = heartbeat or alerts, alerts or heartbeat
    return (Secret(heartbeat) if heartbeat else None, Secret(alerts) if alerts else None)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML file; relative paths resolve against its directory."""
    path = Path(path)
    try:
        # A FIFO or a device would block the read (or never end): only a regular file is a config.
        if not stat.S_ISREG(path.stat().st_mode):
            raise ConfigError([f"{path}: cannot read config: not a regular file"])
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return config_from_mapping(doc, base_dir=path.resolve().parent, source=path.resolve())


def config_from_mapping(doc: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> Config:
    """Validate a parsed document; raise ConfigError listing every bad key path."""
    problems: list[str] = []
    values: Config = _build(Config(), doc, "", base_dir, problems)
    school = doc.get("school")
    if values.school.timeframe is not None and isinstance(school, Mapping):
        if "timeframes" in school:
            problems.append("school.timeframe: deprecated and contradicts school.timeframes; remove it")
        else:
            values = dataclasses.replace(values, school=dataclasses.replace(
                values.school, timeframes=(values.school.timeframe,), timeframe=None))
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(values, source=source, warnings=tuple(_deprecations(doc)))


def _deprecations(doc: Mapping[str, Any]) -> list[str]:
    """Keys that still load but no longer do anything, each with what to do instead."""
    out = []
    oos = doc.get("oos")
    if isinstance(oos, Mapping) and "window_days" in oos:
        out.append("oos.window_days is deprecated: it is read as oos.min_window_days (the holdout is the newest "
                   "oos.window_fraction of the bars, at least that many days); rename the key")
    school = doc.get("school")
    if isinstance(school, Mapping) and "timeframe" in school:
        out.append("school.timeframe is deprecated: it is read as school.timeframes = [its value]; rename the key")
    zmq = doc.get("zmq")
    if isinstance(zmq, Mapping) and "result_endpoint" in zmq:
        out.append("zmq.result_endpoint is deprecated and no longer used: workers return results on "
                   "zmq.backtest_endpoint (work protocol v2); remove the key")
    return out


def _build(base: Any, doc: Any, prefix: str, base_dir: Path, problems: list[str]) -> Any:
    """Overlay one TOML table on `base` (a section's defaults), collecting problems by key path."""
    if not isinstance(doc, Mapping):
        problems.append(f"{prefix.rstrip('.')}: must be a table, got {_describe(doc)}")
        return _resolve_paths(base, base_dir)
    hints = typing.get_type_hints(type(base))
    fields = {f.name: f for f in dataclasses.fields(base) if f.name not in ("source", "warnings")}
    for key in doc:
        if key not in fields:
            problems.append(f"{prefix}{key}: unknown key (known: {', '.join(sorted(fields))})")
    changes: dict[str, Any] = {}
    for name, f in fields.items():
        default = getattr(base, name)
        if name in TABLES_OF_TABLES:
            changes[name] = _build_tables(TABLES_OF_TABLES[name](), doc.get(name, {}), f"{prefix}{name}.", base_dir,
                                          problems)
            continue
        if dataclasses.is_dataclass(default):
            changes[name] = _build(default, doc.get(name, {}), f"{prefix}{name}.", base_dir, problems)
            continue
        if name not in doc:
            if hints[name] is float and type(default) is int:
                default = float(default)  # so a default and the same value written in the file hash alike
            changes[name] = _resolve(default, base_dir)
            continue
        value, error = _coerce(doc[name], hints[name], f.metadata)
        if error:
            problems.append(f"{prefix}{name}: {error}")
            value = default
        changes[name] = _resolve(value, base_dir)
    return dataclasses.replace(base, **changes)


TABLES_OF_TABLES: dict[str, Any] = {"synthetic": SyntheticUniverse, "instruments": InstrumentConfig}


def _build_tables(template: Any, doc: Any, prefix: str, base_dir: Path, problems: list[str]) -> dict[str, Any]:
    """A table of tables keyed by name (`[synthetic.SYNTH_RW]`), each built on `template`'s defaults."""
    if not isinstance(doc, Mapping):
        problems.append(f"{prefix.rstrip('.')}: must be a table of tables, got {_describe(doc)}")
        return {}
    out = {}
    for key, table in doc.items():
        if not isinstance(key, str) or not key.replace("_", "").isalnum() or len(key) > 32:
            problems.append(f"{prefix}{key}: a name of letters, digits and _ (at most 32)")
            continue
        out[key] = _build(template, table, f"{prefix}{key}.", base_dir, problems)
    return out


def _resolve(value: Any, base_dir: Path) -> Any:
    if isinstance(value, Path) and not value.is_absolute():
        return Path(os.path.normpath(base_dir / value))
    return value


def _resolve_paths(section: Any, base_dir: Path) -> Any:
    return _build(section, {}, "", base_dir, [])


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}.get(
        type(value), "a table" if isinstance(value, Mapping) else type(value).__name__
    )
    return f"{kind} ({_toml_value(value)})" if not isinstance(value, Mapping | list) else kind


def _coerce(value: Any, hint: Any, rules: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Convert one TOML value to the field's type; return (value, error)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # `X | None`: TOML has no null, so a given value is an X
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            return None, f"must be one of {', '.join(repr(a) for a in args)}, got {_describe(value)}"
        return value, None
    if hint is bool:
        if not isinstance(value, bool):
            return None, f"must be true or false, got {_describe(value)}"
        return value, None
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be an integer, got {_describe(value)}"
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"must be a number, got {_describe(value)}"
        value = float(value)
        if not math.isfinite(value):
            return None, f"must be a finite number, got {_describe(value)}"
    elif hint is str:
        if not isinstance(value, str):
            return None, f"must be a string, got {_describe(value)}"
    elif hint is Path:
        if not isinstance(value, str) or not value:
            return None, f"must be a non-empty path string, got {_describe(value)}"
        value = Path(value)
    elif origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f"must be an array of strings, got {_describe(value)}"
        value = tuple(value)
    else:  # pragma: no cover - a new field type without a rule is a programming error
        raise TypeError(f"no coercion rule for {hint!r}")
    return value, _check_rules(value, rules)


def _check_rules(value: Any, rules: Mapping[str, Any]) -> str | None:
    if "ge" in rules and value < rules["ge"]:
        return f"must be >= {rules['ge']}, got {value!r}"
    if "gt" in rules and value <= rules["gt"]:
        return f"must be > {rules['gt']}, got {value!r}"
    if "le" in rules and value > rules["le"]:
        return f"must be <= {rules['le']}, got {value!r}"
    if "lt" in rules and value >= rules["lt"]:
        return f"must be < {rules['lt']}, got {value!r}"
    check = rules.get("check")
    return check(value) if check else None


# ---------------------------------------------------------------------------------------------
# Views: plain dicts, flat keys, reload


def to_plain(cfg: Any) -> dict[str, Any]:
    """The config as plain TOML-able values (paths as strings, tuples as lists, None dropped)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.name in ("source", "warnings"):
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_plain(value)
        elif value is None:
            continue
        elif isinstance(value, Path):
            out[f.name] = str(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        elif isinstance(value, dict):
            out[f.name] = {k: to_plain(v) for k, v in value.items()}
        else:
            out[f.name] = value
    return out


def flatten(plain: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in plain.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Inside reloadable sections, but read once at start: the webhook URLs come from the environment then.
NOT_RELOADABLE = ("discord.heartbeat_webhook_env", "discord.alerts_webhook_env")


def is_reloadable(key: str) -> bool:
    """Whether a SIGHUP may change this flat key path."""
    if key in NOT_RELOADABLE:
        return False
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in RELOADABLE)


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload changes: the config to run with, the keys applied, the keys that need a restart."""

    config: Config
    changed: list[str]
    needs_restart: list[str]


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Take the reloadable keys from `new`, keep the rest of `old`, and say which is which."""
    old_flat, new_flat = flatten(to_plain(old)), flatten(to_plain(new))
    differing = sorted(k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k))
    changed = [k for k in differing if is_reloadable(k)]
    needs_restart = [k for k in differing if not is_reloadable(k)]
    merged = dataclasses.replace(
        old,
        heartbeat=new.heartbeat,
        oos=new.oos,
        wfv=new.wfv,
        ranks=new.ranks,
        discord=dataclasses.replace(new.discord, heartbeat_webhook_env=old.discord.heartbeat_webhook_env,
                                    alerts_webhook_env=old.discord.alerts_webhook_env),
        snapshots=dataclasses.replace(old.snapshots, interval_sec=new.snapshots.interval_sec),
        telemetry=dataclasses.replace(old.telemetry, log_level=new.telemetry.log_level),
    )
    return ReloadPlan(merged, changed, needs_restart)


def render_toml(cfg: Config, env: Mapping[str, str] | None = None) -> str:
    """The effective config as TOML, with the webhook secrets reported as set/unset, never shown."""
    lines = [f"# effective config{f' of {cfg.source}' if cfg.source else ''} (hash {cfg.config_hash})"]

    def emit_table(name: str, table: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        if scalars:
            lines.append("")
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in table.items():
            if isinstance(v, Mapping):
                emit_table(f"{name}.{k}", v)

    for section, table in to_plain(cfg).items():
        emit_table(section, table)
    heartbeat, alerts = webhook_urls(cfg.discord, env)
    lines.append("")
    lines.append(f"# discord heartbeat webhook: {'set (redacted)' if heartbeat else 'not set: notifications run dry'}")
    lines.append(f"# discord alerts webhook: {'set (redacted)' if alerts else 'not set: notifications run dry'}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    return repr(value)
