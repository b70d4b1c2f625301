"""One strategy's report (SPEC §7, docs/reports.md): its figures and verdicts, and the series the charts draw.

`build_report` reads the store and the universe's data, backtests the strategy in this process over its IS
range (and the holdout once an OOS verdict has counted the look), and returns a `Report`: plain data that
swimmy/view/reporthtml.py turns into one self-contained HTML file. Before the OOS verdict the holdout's bars
are not backtested at all: a look at the holdout that nothing would count is never taken (SPEC §5).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from swimmy.backtest.data import data_hash, load_bars, universe_dir, universe_name
from swimmy.backtest.engine import EXIT_REASONS, Bars, Costs, simulate
from swimmy.backtest.metrics import compute_metrics
from swimmy.backtest.strategies import spec_of
from swimmy.config import Config, instrument_costs
from swimmy.errors import SwimmyError, UsageError
from swimmy.rfc3339 import format_rfc3339
from swimmy.school.universes import holdout_start
from swimmy.store import Store, StrategyRow, WfvRow

MAX_POINTS = 2_000  # chart points per series: a curve of a million bars still weighs ~60 KB in the file
MAX_TRADES = 1_000  # the newest trades listed; the count says how many there were


@dataclass(frozen=True)
class Report:
    """Everything the report page shows, JSON-able through `as_json`."""

    name: str
    row: dict[str, Any]  # the strategy's stored row (rules, rank, IS/OOS figures, verdicts)
    universe: str
    generated_at: str  # RFC 3339 UTC
    trials: int
    n_eff: float | None
    is_range: tuple[int, int]  # first and last IS bar (Unix seconds)
    holdout: tuple[int, int] | None  # first and last holdout bar; None when the data has no split
    holdout_shown: bool  # False before the OOS verdict: the curve stops at the IS range's end
    metrics: dict[str, float | int | None]  # of the range drawn (IS, or IS + holdout)
    curve: dict[str, list[float]]  # t (Unix seconds), equity (% growth of 1), drawdown (% below the peak)
    monthly: list[dict[str, Any]]  # {year, month, ret (%), holdout}
    trades: list[dict[str, Any]]
    trade_count: int
    wfv: dict[str, Any] | None  # the newest walk-forward: status, decision, its summary (folds with test windows)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> bytes:
        """The report's data, as the page embeds it (NaN and infinities become null)."""
        return orjson.dumps(_clean(self.__dict__), option=orjson.OPT_SERIALIZE_NUMPY)


def build_report(cfg: Config, store: Store, name: str, *, now: float | None = None) -> Report:
    """The report of stored strategy `name`; UsageError when it is unknown or its data can't be read."""
    row = store.get_strategy(name)
    if row is None:
        raise UsageError(f"unknown strategy {name!r} (see `swimmy strategies list`)")
    spec = spec_of(row)
    directory = universe_dir(cfg, spec.symbol)
    universe = universe_name(spec.symbol, spec.timeframe)
    try:
        bars = load_bars(directory, spec.symbol, spec.timeframe)
    except SwimmyError as exc:
        raise UsageError(f"{name}: cannot read the data of {universe}: {exc}") from None
    oos_start, shown = holdout_view(cfg, store, row, bars)
    end_ts = None if shown or oos_start is None else oos_start
    sim = simulate(spec, bars, end_ts=end_ts, costs=Costs(**instrument_costs(cfg, spec.symbol)))
    ts = bars.timestamps[sim.first_bar:sim.first_bar + len(sim.returns)]
    cut = len(ts) if oos_start is None else int(np.searchsorted(ts, oos_start, side="left"))
    if cut == 0:
        raise UsageError(f"{name}: {universe} has no bars before its holdout")
    holdout = None
    if oos_start is not None and len(bars) and oos_start <= int(bars.timestamps[-1]):
        first = int(np.searchsorted(bars.timestamps, oos_start, side="left"))
        holdout = (int(bars.timestamps[first]), int(bars.timestamps[-1]))
    trades = sim.trades(bars)
    trials, n_eff, _ = store.trial_totals(universe)
    notes = [] if shown or holdout is None else [
        "The holdout is not drawn: this strategy has no OOS verdict yet, and a look at the holdout that no "
        "verdict counts would spend it (SPEC §5)."]
    return Report(
        name=name,
        row=_row_fields(row),
        universe=universe,
        generated_at=format_rfc3339(now if now is not None else time.time()),
        trials=trials,
        n_eff=n_eff,
        is_range=(int(ts[0]), int(ts[cut - 1])),
        holdout=holdout,
        holdout_shown=shown,
        metrics=compute_metrics(sim.returns, sim.pnl_pips, spec.timeframe),
        curve=equity_series(ts, sim.returns),
        monthly=monthly_returns(ts, sim.returns, oos_start),
        trades=[{"entry_ts": t.entry_ts, "exit_ts": t.exit_ts, "side": "long" if t.side > 0 else "short",
                 "entry_price": t.entry_price, "exit_price": t.exit_price, "pnl_pips": t.pnl_pips,
                 "exit_reason": t.exit_reason, "holdout": oos_start is not None and t.entry_ts >= oos_start}
                for t in trades[-MAX_TRADES:]],
        trade_count=len(trades),
        wfv=_wfv_fields(store.latest_wfv_run(name)),
        notes=notes,
    )


LOOKED: Final = frozenset({"pass", "fail", "ungated"})  # verdicts whose look at the holdout was counted


def holdout_view(cfg: Config, store: Store, row: StrategyRow, bars: Bars) -> tuple[int | None, bool]:
    """(where the universe's holdout starts, whether this strategy's returns there may be shown).

    The start is the school's recorded split for the data on disk, else where it would split it now. The
    holdout may be shown only after a verdict whose look was counted (SPEC §5: pass, fail or ungated; not a
    mirror rejection, not an error), and only on the data that look was on (`oos_data_hash`; a store from
    before it was kept: only while the universe has never had other data).
    """
    universe = universe_name(row.symbol, row.timeframe)
    digest = data_hash(universe_dir(cfg, row.symbol), row.symbol, row.timeframe)
    split = store.holdout_split(universe, digest) if digest is not None else None
    start = split[0] if split is not None else holdout_start(bars.timestamps, cfg.oos.window_fraction,
                                                              cfg.oos.holdout_min_days)
    looked = row.oos_decision in LOOKED if row.oos_decision is not None else row.oos_sharpe is not None
    if not looked or digest is None:
        return start, False
    if row.oos_data_hash is not None:
        return start, row.oos_data_hash == digest
    return start, store.holdout_hashes(universe) == [digest]


def equity_series(ts: npt.NDArray[np.int64], returns: npt.NDArray[np.float64],
                  max_points: int = MAX_POINTS) -> dict[str, list[float]]:
    """The compounded equity (% growth of 1) and the drawdown (% below the running peak), thinned for the chart.

    Thinning keeps, per bucket of bars, the last equity and the deepest drawdown, so the chart never hides the
    worst drawdown the metrics report.
    """
    growth = np.cumprod(1.0 + returns)
    drawdown = growth / np.maximum.accumulate(np.maximum(growth, 1.0)) - 1.0
    n = len(growth)
    if n > max_points:
        edges = np.linspace(0, n, max_points + 1).astype(np.int64)
        last = edges[1:] - 1
        ts, growth = ts[last], growth[last]
        drawdown = np.minimum.reduceat(drawdown, edges[:-1])
    return {"t": [int(t) for t in ts], "equity": np.round((growth - 1.0) * 100.0, 4).tolist(),
            "drawdown": np.round(drawdown * 100.0, 4).tolist()}


def monthly_returns(ts: npt.NDArray[np.int64], returns: npt.NDArray[np.float64],
                    oos_start: int | None) -> list[dict[str, Any]]:
    """Compounded return (%) of each calendar month (UTC); `holdout` marks the months that reach into it."""
    if len(ts) == 0:
        return []
    months = ts.astype("datetime64[s]").astype("datetime64[M]")
    starts = np.flatnonzero(np.r_[True, months[1:] != months[:-1]])
    growth = np.multiply.reduceat(1.0 + returns, starts)
    out = []
    for i, start in enumerate(starts):
        month = str(months[start])  # YYYY-MM
        end_ts = int(ts[starts[i + 1] - 1]) if i + 1 < len(starts) else int(ts[-1])
        out.append({"year": int(month[:4]), "month": int(month[5:7]), "ret": round(float(growth[i] - 1) * 100, 4),
                    "holdout": oos_start is not None and end_ts >= oos_start})
    return out


def _row_fields(row: StrategyRow) -> dict[str, Any]:
    return {k: v for k, v in row.__dict__.items() if k not in ("created_at", "updated_at")} | {
        "created_at": _rfc3339(row.created_at), "updated_at": _rfc3339(row.updated_at)}


def _wfv_fields(run: WfvRow | None) -> dict[str, Any] | None:
    if run is None:
        return None
    summary: dict[str, Any] = {}
    if run.summary_json:
        try:
            loaded = orjson.loads(run.summary_json)
        except orjson.JSONDecodeError:
            loaded = None
        summary = loaded if isinstance(loaded, dict) else {}
    return {"wfv_id": run.wfv_id, "status": run.status, "decision": run.decision, "trigger": run.trigger,
            "started_at": _rfc3339(run.started_at), "summary": summary}


def _rfc3339(t: float | None) -> str | None:
    return format_rfc3339(t) if t else None


def _clean(value: Any) -> Any:
    """NaN and infinities -> None, tuples -> lists: JSON that every reader takes."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


__all__ = ["EXIT_REASONS", "LOOKED", "MAX_POINTS", "Report", "build_report", "equity_series", "holdout_view",
           "monthly_returns"]
