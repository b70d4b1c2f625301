"""The school's milestones in words: one line per event, shared by the terminal story and the dashboard.

`describe` turns an accepted event into a line a trader or an operator reads at a glance, or None when the
event is not a milestone (an IS promotion to B, a routine heartbeat). The figures are the event's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Every event the story and the dashboard may tell; `describe` decides which occurrences are milestones.
MILESTONE_EVENTS: tuple[str, ...] = (
    "strategy.ranked",
    "oos.result",
    "wfv.result",
    "wfv.timeout",
    "school.audit",
    "school.holdout_worn",
    "backtest.quarantined",
    "data.invalid",
    "data.recovered",
    "data.imported",
    "peer.silent",
    "peer.recovered",
    "worker.exited",
    "worker.restarted",
    "worker.incompatible",
    "worker.data_mismatch",
    "telemetry.failing",
    "telemetry.recovered",
    "telemetry.dropped",
    "config.reloaded",
    "config.reload_failed",
    "discord.failed",
)
TOLD_RANKS = frozenset({"A", "S"})  # B promotions are many: the summary line counts them instead


def _f(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "-" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value * 100:.0f}%"


def describe(event_type: str, data: Mapping[str, Any] | None) -> str | None:
    """The milestone's line, or None when this event is not one."""
    d: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    if event_type == "strategy.ranked":
        to, frm = d.get("to_rank"), d.get("from_rank")
        if to not in TOLD_RANKS and frm not in TOLD_RANKS:
            return None
        verb = "promoted" if _order(to) > _order(frm) else "demoted"
        return (f"{d.get('strategy')} {verb} {frm} -> {to}: Sharpe {_f(d.get('sharpe'))}, DSR {_f(d.get('dsr'), 3)}, "
                f"trials {_f(d.get('trials'))} ({d.get('reason', '')})")
    if event_type == "oos.result":
        if d.get("status") == "error":
            return f"OOS error for {d.get('strategy')}: {d.get('error', 'no answer')}"
        return (f"OOS {d.get('decision', '?')} for {d.get('strategy')}: Sharpe {_f(d.get('oos_sharpe'))}, "
                f"PSR {_f(d.get('oos_psr'), 3)}, {_f(d.get('oos_trades'))} trades")
    if event_type == "wfv.result":
        folds = d.get("folds")
        fold_sharpes = " ".join(_f(f.get("oos_sharpe")) for f in folds if isinstance(f, Mapping)) \
            if isinstance(folds, list) else ""
        return (f"WFV {d.get('decision', '?')} for {d.get('strategy')}: WF Sharpe {_f(d.get('wf_sharpe'))}, "
                f"WF PSR {_f(d.get('wf_psr'), 3)}, WFE {_f(d.get('wfe'))}, profitable folds "
                f"{_pct(d.get('profitable_folds'))}" + (f"; fold test Sharpes {fold_sharpes}" if fold_sharpes else ""))
    if event_type == "wfv.timeout":
        return f"WFV timed out for {d.get('strategy')} after {_f(d.get('age_sec'), 0)} s"
    if event_type == "school.audit":
        return (f"audit {d.get('universe')}: PBO {_f(d.get('pbo'))} over {_f(d.get('strategies'))} strategies, "
                f"{_f(d.get('trials'))} trials (N_eff {_f(d.get('n_eff'), 1)})")
    if event_type == "school.holdout_worn":
        return f"holdout of {d.get('universe')} worn: {_f(d.get('oos_looks'))} looks (max {_f(d.get('max_looks'))})"
    if event_type == "backtest.quarantined":
        return f"quarantined {d.get('strategy')} ({d.get('purpose')}) after {_f(d.get('attempts'))} attempts"
    if event_type in ("data.invalid", "data.recovered", "data.imported"):
        what = {"data.invalid": "data invalid", "data.recovered": "data usable again",
                "data.imported": "data imported"}[event_type]
        return f"{what}: {d.get('universe')}" + (f": {d['error']}" if d.get("error") else "")
    if event_type.startswith(("peer.", "worker.", "telemetry.", "config.", "discord.")):
        who = d.get("source") or d.get("worker") or d.get("kind") or ""
        detail = d.get("error") or d.get("reason") or (f"exit {d['exit_code']}" if "exit_code" in d else "")
        return " ".join(str(x) for x in (event_type, who, detail) if x not in ("", None))
    return None


def _order(rank: Any) -> int:
    return {"graveyard": -1, "incubator": 0, "B": 1, "A": 2, "S": 3}.get(str(rank), 0)
