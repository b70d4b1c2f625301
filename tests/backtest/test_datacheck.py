"""`swimmy data check`'s findings: one per kind of problem, with how many bars and the first."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from swimmy.backtest.datacheck import GAP_LIMIT_SEC, check_arrays

H = 3600
MONDAY = 1_483_315_200  # 2017-01-02T00:00Z


def week_of_hours(start: int = MONDAY, days: int = 5) -> np.ndarray:
    return start + H * np.arange(24 * days, dtype=np.int64)


def clean(ts: np.ndarray) -> tuple[np.ndarray, ...]:
    close = 1.1 + 1e-4 * np.sin(np.arange(len(ts)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return ts, open_, np.maximum(open_, close) + 1e-4, np.minimum(open_, close) - 1e-4, close


def kinds(ts: np.ndarray, timeframe: str = "H1", **prices: np.ndarray) -> dict[str, tuple[int, str]]:
    t, o, h, lo, c = clean(ts)
    o, h, lo, c = (prices.get(k, v) for k, v in (("open", o), ("high", h), ("low", lo), ("close", c)))
    return {f.kind: (f.count, f.message) for f in check_arrays(t, o, h, lo, c, timeframe)}


def test_clean_weeks_with_their_weekends_are_clean() -> None:
    """Two FX weeks of H1 bars with the weekend between them: nothing to report."""
    ts = np.concatenate([week_of_hours(), week_of_hours(MONDAY + 7 * 86_400)])
    assert kinds(ts) == {}


def test_duplicates_and_unordered_times_are_counted_and_the_first_named() -> None:
    ts = week_of_hours()
    ts[10] = ts[9]
    ts[20], ts[21] = ts[21], ts[20]
    found = kinds(ts)
    assert found["duplicate"][0] == 1 and "bar 11 (2017-01-02T09:00Z)" in found["duplicate"][1]
    assert found["unordered"][0] == 1 and "bar 22 (2017-01-02T20:00Z)" in found["unordered"][1]


def test_a_file_of_another_timeframe_than_its_name_is_spacing() -> None:
    """M5 bars in a file named H1: every annualised figure would be off by sqrt(12)."""
    ts = MONDAY + 300 * np.arange(500, dtype=np.int64)
    count, message = kinds(ts, "H1")["spacing"]
    assert count == 499 and "usually 5 min apart, but H1 is 1 h" in message


def test_steps_that_are_not_whole_bars_are_spacing() -> None:
    ts = week_of_hours()
    ts[50:] += 1800  # half an hour off from bar 51 on
    count, message = kinds(ts, "H1")["spacing"]
    assert count == 1 and "not a whole number of H1 bars" in message and "bar 51" in message


def test_a_gap_longer_than_a_weekend_is_reported_with_the_longest() -> None:
    ts = np.concatenate([week_of_hours(), week_of_hours(MONDAY + 21 * 86_400)])  # two weeks missing
    count, message = kinds(ts)["gap"]
    assert count == 1 and "longest is 385 h" in message and "bar 121 (2017-01-23T00:00Z)" in message
    ts = np.concatenate([week_of_hours(), week_of_hours(MONDAY + 5 * 86_400 - H + GAP_LIMIT_SEC)])
    assert "gap" not in kinds(ts)  # exactly the limit is a long weekend, not a gap


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [
        ("high", lambda bar: bar["low"] - 1e-3, "high below low"),
        ("close", lambda bar: bar["high"] + 1e-3, "open or close outside [low, high]"),
        ("open", lambda bar: 0.0, "not a positive finite number"),
        ("close", lambda bar: float("nan"), "not a positive finite number"),
    ],
)
def test_ohlc_inconsistencies_are_counted_once_per_bar(column: str, value: Any, what: str) -> None:
    ts = week_of_hours()
    _, o, h, lo, c = clean(ts)
    cols = {"open": o.copy(), "high": h.copy(), "low": lo.copy(), "close": c.copy()}
    cols[column][7] = value({k: float(v[7]) for k, v in cols.items()})
    (finding,) = check_arrays(ts, cols["open"], cols["high"], cols["low"], cols["close"], "H1")
    assert finding.kind == "ohlc" and finding.count == 1 and what in finding.message and "bar 8" in finding.message
