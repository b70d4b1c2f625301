"""Strategy rules: the wire form, validation, names and the rules hash, pip sizes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from swimmy.backtest.strategies import (
    BARS_PER_YEAR,
    FAMILIES,
    TIMEFRAMES,
    StrategySpec,
    pip_size,
    validate,
)
from swimmy.errors import BacktestError


def wire(**changes: Any) -> dict[str, Any]:
    """A good "strategy" object of a BACKTEST message, with `changes` applied (None deletes a key)."""
    obj: dict[str, Any] = {
        "name": "sma_cross-EURUSD-H1-00000000",
        "family": "sma_cross",
        "params": {"fast": 10, "slow": 30},
        "symbol": "EURUSD",
        "timeframe": "H1",
        "sl_pips": 0,
        "tp_pips": 0,
    }
    for key, value in changes.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    return obj


GOOD_SPECS = [
    StrategySpec("sma_cross", {"fast": 1, "slow": 2}, "EURUSD", "M1"),
    StrategySpec("ema_cross", {"fast": 12, "slow": 26}, "USDJPY", "D1", 30.0, 60.0),
    StrategySpec("rsi_reversion", {"period": 14, "lower": 30, "upper": 70}, "GBPUSD", "H4"),
    StrategySpec("rsi_reversion", {"period": 2, "lower": 0, "upper": 100}, "GBPUSD", "H4"),
    StrategySpec("bollinger_breakout", {"period": 20, "k": 2.5}, "EURJPY", "M15"),
    StrategySpec("donchian_breakout", {"period": 20.0}, "XAUUSD.m", "M30", 0.5),
]


class TestTables:
    def test_families_and_their_params(self) -> None:
        """The five families of SPEC §4 take exactly these params."""
        assert FAMILIES == {
            "sma_cross": ("fast", "slow"),
            "ema_cross": ("fast", "slow"),
            "rsi_reversion": ("period", "lower", "upper"),
            "bollinger_breakout": ("period", "k"),
            "donchian_breakout": ("period",),
        }

    @pytest.mark.parametrize(
        ("timeframe", "minutes"),
        [("M1", 1), ("M5", 5), ("M15", 15), ("M30", 30), ("H1", 60), ("H4", 240), ("D1", 1440)],
    )
    def test_bars_per_year(self, timeframe: str, minutes: int) -> None:
        """A year is 52 weeks of 5 days of 24 hours (H1: 6,240 bars), divided by the bar's length."""
        assert timeframe in TIMEFRAMES
        assert BARS_PER_YEAR[timeframe] == 52 * 5 * 24 * 60 // minutes

    @pytest.mark.parametrize(
        ("symbol", "pip"),
        [("EURUSD", 0.0001), ("GBPUSD", 0.0001), ("USDJPY", 0.01), ("EURJPY", 0.01), ("usdjpy", 0.01)],
    )
    def test_pip_size(self, symbol: str, pip: float) -> None:
        """A pip is 0.01 for a JPY pair, else 0.0001."""
        assert pip_size(symbol) == pip


class TestFromWire:
    def test_a_good_strategy(self) -> None:
        """Every field is read; "name" is allowed and not part of the rules; params are stored sorted."""
        spec = StrategySpec.from_wire(wire(params={"slow": 30, "fast": 10}, sl_pips=25, tp_pips=50.5))
        assert spec == StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1", 25, 50.5)
        assert list(spec.params) == ["fast", "slow"]
        assert type(spec.params) is dict and type(spec.params["fast"]) is int

    def test_optional_fields(self) -> None:
        """name, sl_pips and tp_pips may be left out: no name, no stop, no target."""
        spec = StrategySpec.from_wire(wire(name=None, sl_pips=None, tp_pips=None))
        assert (spec.sl_pips, spec.tp_pips) == (0.0, 0.0)

    @pytest.mark.parametrize(
        ("obj", "message"),
        [
            ([1, 2], "strategy: expected an object, got list"),
            (wire(family=None), "missing field(s) family"),
            (wire(params=None, symbol=None), "missing field(s) params, symbol"),
            (wire(timeframe=None), "missing field(s) timeframe"),
            (wire(extra=1), "unknown field(s) extra"),
            (wire(family=3), "strategy.family: expected a string, got int"),
            (wire(symbol=["EURUSD"]), "strategy.symbol: expected a string"),
            (wire(timeframe=1), "strategy.timeframe: expected a string"),
            (wire(name=5), "strategy.name: expected a string"),
            (wire(params=[10, 30]), "strategy.params: expected an object, got list"),
            (wire(params={"fast": "10", "slow": 30}), "strategy.params.fast: expected a finite number"),
            (wire(params={"fast": True, "slow": 30}), "strategy.params.fast: expected a finite number"),
            (wire(params={"fast": 10, "slow": float("inf")}), "strategy.params.slow: expected a finite number"),
            (wire(params={"fast": 10, "slow": 10**400}), "strategy.params.slow: expected a finite number"),
            (wire(sl_pips="5"), "strategy.sl_pips: expected a finite number"),
            (wire(tp_pips=float("nan")), "strategy.tp_pips: expected a finite number"),
            (wire(sl_pips=False), "strategy.sl_pips: expected a finite number"),
            (wire(family="macd"), "unknown strategy family 'macd'"),
            (wire(timeframe="H2"), "unknown timeframe 'H2'"),
            (wire(timeframe="h1"), "unknown timeframe 'h1'"),
            (wire(symbol=""), "empty symbol"),
            (wire(symbol="../etc/passwd"), "bad symbol '../etc/passwd'"),
            (wire(symbol="EUR-USD"), "bad symbol"),
            (wire(params={"fast": 10}), "sma_cross: missing param(s) slow"),
            (wire(params={"fast": 10, "slow": 30, "mid": 20}), "sma_cross: unknown param(s) mid"),
            (wire(params={"fast": 30, "slow": 10}), "fast (30) must be < slow (10)"),
            (wire(params={"fast": 10, "slow": 10.0}), "fast (10) must be < slow (10.0)"),
            (wire(family="ema_cross", params={"fast": 0, "slow": 10}), "ema_cross: fast must be >= 1"),
            (wire(params={"fast": 10.5, "slow": 30}), "param fast counts bars and must be a whole number"),
            (wire(family="donchian_breakout", params={"period": 1}), "donchian_breakout: period must be >= 2"),
            (
                wire(family="rsi_reversion", params={"period": 14, "lower": 70, "upper": 30}),
                "lower (70) must be < upper",
            ),
            (
                wire(family="rsi_reversion", params={"period": 14, "lower": 50, "upper": 50}),
                "lower (50) must be < upper",
            ),
            (wire(family="rsi_reversion", params={"period": 14, "lower": -5, "upper": 70}), "must lie in 0..100"),
            (wire(family="rsi_reversion", params={"period": 14, "lower": 30, "upper": 120}), "must lie in 0..100"),
            (wire(family="rsi_reversion", params={"period": 1, "lower": 30, "upper": 70}), "period must be >= 2"),
            (wire(family="bollinger_breakout", params={"period": 20, "k": 0}), "bollinger_breakout: k must be > 0"),
            (wire(family="bollinger_breakout", params={"period": 20, "k": -1.5}), "k must be > 0"),
            (wire(sl_pips=-1), "sl_pips must be a finite number >= 0"),
            (wire(tp_pips=-0.5), "tp_pips must be a finite number >= 0"),
        ],
    )
    def test_bad_strategies(self, obj: object, message: str) -> None:
        """Anything wrong in the strategy object is a BacktestError whose message names the field and the problem."""
        with pytest.raises(BacktestError) as info:
            StrategySpec.from_wire(obj)
        assert message in str(info.value)

    @pytest.mark.parametrize("spec", GOOD_SPECS, ids=lambda s: s.family)
    def test_wire_round_trip(self, spec: StrategySpec) -> None:
        """to_wire carries every rule and the name; from_wire reads it back to an equal spec."""
        obj = spec.to_wire(spec.name())
        assert obj["name"] == spec.name()
        assert set(obj) == {"name", "family", "params", "symbol", "timeframe", "sl_pips", "tp_pips"}
        assert StrategySpec.from_wire(obj) == spec


class TestValidate:
    @pytest.mark.parametrize("spec", GOOD_SPECS, ids=lambda s: s.family)
    def test_good_specs_pass(self, spec: StrategySpec) -> None:
        """Specs within every family's limits are accepted (whole-number floats count as bars)."""
        validate(spec)

    def test_spec_built_in_code_is_checked_too(self) -> None:
        """validate() catches what the type checker can't: a wrong-typed param value."""
        spec = StrategySpec("sma_cross", {"fast": "10", "slow": 30}, "EURUSD", "H1")  # type: ignore[dict-item]
        with pytest.raises(BacktestError, match="param fast must be a finite number"):
            validate(spec)


class TestNameAndHash:
    def test_name_format(self) -> None:
        """The name is <family>-<symbol>-<timeframe>-<8 hex chars of the rules hash>."""
        spec = StrategySpec("ema_cross", {"fast": 12, "slow": 26}, "USDJPY", "H4")
        assert re.fullmatch(r"ema_cross-USDJPY-H4-[0-9a-f]{8}", spec.name())
        assert spec.name().endswith(spec.rules_hash())

    def test_hash_is_stable(self) -> None:
        """The hash is sha256 of canonical JSON: the same rules hash alike in every process, every release."""
        # sha256('["sma_cross",[["fast",10.0],["slow",30.0]],"EURUSD","H1",0.0,0.0]')[:8]
        spec = StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1")
        assert spec.rules_hash() == "53a47e60"

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            (
                StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1", 20, 0),
                StrategySpec("sma_cross", {"fast": 10.0, "slow": 30.0}, "EURUSD", "H1", 20.0, 0.0),
            ),
            (
                StrategySpec("sma_cross", {"slow": 30, "fast": 10}, "EURUSD", "H1"),
                StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1"),
            ),
        ],
        ids=["10 == 10.0", "param order"],
    )
    def test_same_rules_same_hash(self, a: StrategySpec, b: StrategySpec) -> None:
        """10 and 10.0 hash alike and the order of params is irrelevant; such specs are equal and hash alike."""
        assert a.rules_hash() == b.rules_hash()
        assert a.name() == b.name()
        assert a == b and hash(a) == hash(b) and len({a, b}) == 1

    @pytest.mark.parametrize(
        "other",
        [
            StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1", sl_pips=20),
            StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1", tp_pips=20),
            StrategySpec("sma_cross", {"fast": 10, "slow": 31}, "EURUSD", "H1"),
            StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "GBPUSD", "H1"),
            StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H4"),
            StrategySpec("ema_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1"),
        ],
        ids=["sl", "tp", "param", "symbol", "timeframe", "family"],
    )
    def test_different_rules_different_hash(self, other: StrategySpec) -> None:
        """Any rule that differs (stop, target, a param, symbol, timeframe, family) changes the hash."""
        base = StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1")
        assert other.rules_hash() != base.rules_hash()

    def test_params_are_a_private_copy(self) -> None:
        """Changing the caller's dict afterwards does not change the spec's rules."""
        params = {"fast": 10, "slow": 30}
        spec = StrategySpec("sma_cross", params, "EURUSD", "H1")
        before = spec.rules_hash()
        params["fast"] = 5
        assert spec.params["fast"] == 10 and spec.rules_hash() == before
