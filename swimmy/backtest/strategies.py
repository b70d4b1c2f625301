"""Strategy rules (SPEC §4, §5): the families, their params, validation, the wire form and the rules hash. Pure."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, Protocol

from swimmy.config import default_pip
from swimmy.errors import BacktestError

FAMILIES: dict[str, tuple[str, ...]] = {
    "sma_cross": ("fast", "slow"),
    "ema_cross": ("fast", "slow"),
    "rsi_reversion": ("period", "lower", "upper"),
    "bollinger_breakout": ("period", "k"),
    "donchian_breakout": ("period",),
}
CROSS_FAMILIES = frozenset({"sma_cross", "ema_cross"})
# Params that count bars: they must be whole numbers.
PERIOD_PARAMS = frozenset({"fast", "slow", "period"})

TIMEFRAMES: tuple[str, ...] = ("M1", "M5", "M15", "M30", "H1", "H4", "D1")
TIMEFRAME_SEC: dict[str, int] = {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14_400,
                                 "D1": 86_400}
# FX trades 24 hours a day, 5 days a week, 52 weeks a year.
BARS_PER_YEAR: dict[str, int] = {
    "M1": 374_400,
    "M5": 74_880,
    "M15": 24_960,
    "M30": 12_480,
    "H1": 6_240,
    "H4": 1_560,
    "D1": 260,
}

# The symbol names a data file (SYMBOL_TIMEFRAME.csv), so nothing that could leave the data directory.
class ParamRange(NamedTuple):
    """The grid a param is drawn from: `low`, `low + step`, ... up to `high`."""

    low: float
    high: float
    kind: Literal["int", "float"]
    step: float = 1


# Sensible for H1 FX; every draw lies on the grid, so mutants and random specs collide on purpose
# (a duplicate is rejected by hash) rather than differing by a meaningless 1e-9.
PARAM_SPACE: Final[dict[str, dict[str, ParamRange]]] = {
    "sma_cross": {"fast": ParamRange(3, 50, "int"), "slow": ParamRange(10, 200, "int")},
    "ema_cross": {"fast": ParamRange(3, 50, "int"), "slow": ParamRange(10, 200, "int")},
    "rsi_reversion": {
        "period": ParamRange(5, 30, "int"),
        "lower": ParamRange(15, 40, "int"),
        "upper": ParamRange(60, 85, "int"),
    },
    "bollinger_breakout": {"period": ParamRange(10, 50, "int"), "k": ParamRange(1.0, 3.0, "float", 0.25)},
    "donchian_breakout": {"period": ParamRange(10, 100, "int")},
}
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._]{0,31}")
_WIRE_REQUIRED = ("family", "params", "symbol", "timeframe")
_WIRE_OPTIONAL = ("name", "sl_pips", "tp_pips")


def _is_finite_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


@dataclass(frozen=True)
class StrategySpec:
    """The rules of one strategy: family, params, market and optional stop-loss / take-profit in pips."""

    family: str
    params: Mapping[str, float]
    symbol: str
    timeframe: str
    sl_pips: float = 0.0  # 0 = none
    tp_pips: float = 0.0  # 0 = none

    def __post_init__(self) -> None:
        # A private sorted copy: the caller's mapping can't change the rules afterwards.
        object.__setattr__(self, "params", dict(sorted(self.params.items())))

    def __hash__(self) -> int:
        return hash((self.family, tuple(self.params.items()), self.symbol, self.timeframe, self.sl_pips, self.tp_pips))

    @classmethod
    def from_wire(cls, obj: object) -> StrategySpec:
        """Read the BACKTEST message's "strategy" object; BacktestError names what is wrong with it."""
        if not isinstance(obj, dict):
            raise BacktestError(f"strategy: expected an object, got {type(obj).__name__}")
        missing = [k for k in _WIRE_REQUIRED if k not in obj]
        if missing:
            raise BacktestError(f"strategy: missing field(s) {', '.join(missing)}")
        extra = sorted(str(k) for k in obj if k not in _WIRE_REQUIRED and k not in _WIRE_OPTIONAL)
        if extra:
            raise BacktestError(f"strategy: unknown field(s) {', '.join(extra)}")
        for key in ("family", "symbol", "timeframe"):
            if not isinstance(obj[key], str):
                raise BacktestError(f"strategy.{key}: expected a string, got {type(obj[key]).__name__}")
        if "name" in obj and not isinstance(obj["name"], str):
            raise BacktestError(f"strategy.name: expected a string, got {type(obj['name']).__name__}")
        stops: dict[str, float] = {}
        for key in ("sl_pips", "tp_pips"):
            value = obj.get(key, 0.0)
            if not _is_finite_number(value):
                raise BacktestError(f"strategy.{key}: expected a finite number, got {value!r:.40}")
            stops[key] = value
        params = obj["params"]
        if not isinstance(params, dict):
            raise BacktestError(f"strategy.params: expected an object, got {type(params).__name__}")
        for key, value in params.items():
            if not _is_finite_number(value):
                raise BacktestError(f"strategy.params.{key}: expected a finite number, got {value!r:.40}")
        spec = cls(obj["family"], params, obj["symbol"], obj["timeframe"], stops["sl_pips"], stops["tp_pips"])
        validate(spec)
        return spec

    def to_wire(self, name: str) -> dict[str, object]:
        """The "strategy" object of a BACKTEST message."""
        return {
            "name": name,
            "family": self.family,
            "params": dict(self.params),
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "sl_pips": self.sl_pips,
            "tp_pips": self.tp_pips,
        }

    def rules_hash(self) -> str:
        """8 hex chars of sha256 over the canonical rules; 10 and 10.0 hash alike, param order is irrelevant."""
        cached: str | None = self.__dict__.get("_rules_hash")
        if cached is None:  # the spec is frozen: computed once (breeding and naming ask several times)
            cached = self._compute_rules_hash()
            object.__setattr__(self, "_rules_hash", cached)
        return cached

    def _compute_rules_hash(self) -> str:
        canonical = [
            self.family,
            [[k, float(v)] for k, v in sorted(self.params.items())],
            self.symbol,
            self.timeframe,
            float(self.sl_pips),
            float(self.tp_pips),
        ]
        text = json.dumps(canonical, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def name(self) -> str:
        """`<family>-<symbol>-<timeframe>-<hash8>` (SPEC §5)."""
        return f"{self.family}-{self.symbol}-{self.timeframe}-{self.rules_hash()}"


def validate(spec: StrategySpec) -> None:
    """Raise BacktestError naming the first problem with the spec's rules; return None when it can be run."""
    if spec.family not in FAMILIES:
        raise BacktestError(f"unknown strategy family {spec.family!r}; known: {', '.join(FAMILIES)}")
    if spec.timeframe not in TIMEFRAMES:
        raise BacktestError(f"unknown timeframe {spec.timeframe!r}; known: {' '.join(TIMEFRAMES)}")
    if not isinstance(spec.symbol, str) or not spec.symbol:
        raise BacktestError("empty symbol")
    if not _SYMBOL.fullmatch(spec.symbol):
        raise BacktestError(f"bad symbol {spec.symbol!r}: up to 32 letters, digits, '.' or '_', starting alphanumeric")
    for key in ("sl_pips", "tp_pips"):
        value = getattr(spec, key)
        if not _is_finite_number(value) or value < 0:
            raise BacktestError(f"{key} must be a finite number >= 0 (0 = none), got {value!r:.40}")
    _validate_params(spec.family, spec.params)


def _validate_params(family: str, params: Mapping[str, float]) -> None:
    names = FAMILIES[family]
    missing = [k for k in names if k not in params]
    if missing:
        raise BacktestError(f"{family}: missing param(s) {', '.join(missing)}; it takes {', '.join(names)}")
    unknown = sorted(k for k in params if k not in names)
    if unknown:
        raise BacktestError(f"{family}: unknown param(s) {', '.join(unknown)}; it takes {', '.join(names)}")
    for key, value in params.items():
        if not _is_finite_number(value):
            raise BacktestError(f"{family}: param {key} must be a finite number, got {value!r:.40}")
        if key in PERIOD_PARAMS and value != int(value):
            raise BacktestError(f"{family}: param {key} counts bars and must be a whole number, got {value!r}")
    if family in CROSS_FAMILIES:
        if params["fast"] < 1:
            raise BacktestError(f"{family}: fast must be >= 1, got {params['fast']!r}")
        if params["fast"] >= params["slow"]:
            raise BacktestError(f"{family}: fast ({params['fast']!r}) must be < slow ({params['slow']!r})")
        return
    if params["period"] < 2:
        raise BacktestError(f"{family}: period must be >= 2, got {params['period']!r}")
    if family == "rsi_reversion":
        lower, upper = params["lower"], params["upper"]
        if not 0 <= lower <= 100 or not 0 <= upper <= 100:
            raise BacktestError(f"{family}: lower ({lower!r}) and upper ({upper!r}) must lie in 0..100")
        if lower >= upper:
            raise BacktestError(f"{family}: lower ({lower!r}) must be < upper ({upper!r})")
    elif family == "bollinger_breakout" and params["k"] <= 0:
        raise BacktestError(f"{family}: k must be > 0, got {params['k']!r}")


class HasRules(Protocol):
    """Anything that carries a strategy's rules (a store row): read, never written."""

    @property
    def family(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def symbol(self) -> str: ...
    @property
    def timeframe(self) -> str: ...
    @property
    def sl_pips(self) -> float: ...
    @property
    def tp_pips(self) -> float: ...


def spec_of(row: HasRules) -> StrategySpec:
    """The rules of a stored strategy, as a spec (no store import: breeding is pure)."""
    return StrategySpec(row.family, dict(row.params), row.symbol, row.timeframe, row.sl_pips, row.tp_pips)


def pip_size(symbol: str) -> float:
    """The default pip when no `[instruments.SYMBOL]` says otherwise: 0.01 for JPY pairs, else 0.0001."""
    return default_pip(symbol)
