"""A `Report` as one self-contained HTML page: uPlot, its CSS and the data are inlined; nothing is fetched.

The figures, the verdicts, the monthly returns and the trades are HTML tables (they read without JavaScript);
the equity curve and the drawdown are uPlot charts drawn from the JSON the page embeds. The same page is what
`swimmy report NAME` writes and what the daemon serves at /strategies/NAME (docs/reports.md).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from swimmy.view.report import Report

DASH = "&ndash;"  # an unknown figure
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@cache
def static_bytes(name: str) -> bytes:
    """A file of swimmy/view/static (uPlot, the CSS, the pages' scripts), read once per process."""
    return resources.files("swimmy.view").joinpath("static", name).read_bytes()


def static_text(name: str) -> str:
    """The same file as text, to inline into a page."""
    return static_bytes(name).decode("utf-8")


def render_report(report: Report) -> str:
    """The whole page."""
    r = report.row
    esc = html.escape
    title = f"{report.name} · swimmy report"
    params = ", ".join(f"{k}={v}" for k, v in sorted(r["params"].items()))
    rules = f"{r['family']} ({params}), SL {r['sl_pips']:g} / TP {r['tp_pips']:g} pips"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{static_text('uPlot.min.css')}\n{static_text('swimmy.css')}</style>",
        "</head><body>",
        f'<h1>{esc(report.name)} <span class="badge rank-{esc(r["rank"])}">{esc(r["rank"])}</span></h1>',
        f'<p class="muted">{esc(rules)} · {esc(report.universe)} · generation {r["generation"]}'
        f' · report made {esc(report.generated_at)}</p>',
        *(f'<p class="note">{esc(n)}</p>' for n in report.notes),
        '<div class="cards">',
        _card("In sample", [
            ("Sharpe (annual)", _num(r["is_sharpe"])), ("DSR", _num(r["is_dsr"], 3)), ("PSR", _num(r["is_psr"], 3)),
            ("trades", _num(r["is_trades"], 0)), ("profit factor", _num(r["is_profit_factor"])),
            ("win rate", _pct(r["is_win_rate"])), ("max drawdown", _pct(r["is_max_drawdown"])),
            ("Sortino", _num(r["is_sortino"])), ("P&L pips", _num(r["is_pnl_pips"], 1)),
        ]),
        _card("Trials", [("rule sets tried (N)", _num(report.trials, 0)), ("effective N", _num(report.n_eff, 1)),
                         ("IS bars", _num(r["is_bars"], 0))]),
        _card("Holdout (OOS)", [("verdict", _verdict(r["oos_decision"])), ("Sharpe", _num(r["oos_sharpe"])),
                                ("PSR", _num(r["oos_psr"], 3)), ("trades", _num(r["oos_trades"], 0))]),
        _wfv_card(report.wfv),
        "</div>",
        "<h2>Equity</h2>",
        _band_legend(report),
        f'<div id="equity" class="chart" data-points="{len(report.curve["t"])}"></div>',
        "<h2>Drawdown</h2>",
        '<div id="drawdown" class="chart"></div>',
        f'<p class="muted">Drawn: {_span(report)} · {_num(report.metrics.get("trades"), 0)} trades · Sharpe '
        f'{_num(report.metrics.get("sharpe"))} · max drawdown {_pct(report.metrics.get("max_drawdown"))}. '
        "Per-bar returns net of spread and slippage, compounded.</p>",
        "<h2>Monthly returns (%)</h2>",
        _monthly_table(report),
        *_folds_table(report.wfv),
        f"<h2>Trades ({report.trade_count:,})</h2>",
        _trades_table(report),
        f'<script type="application/json" id="report-data">{_script_json(report.as_json())}</script>',
        f"<script>{static_text('uPlot.iife.min.js')}</script>",
        f"<script>{static_text('report.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _script_json(raw: bytes) -> str:
    """JSON safe inside <script>: no <, > or & at all (as \\u escapes), so no text can end or confuse it."""
    return raw.decode().replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool) or not isinstance(value, int | float):  # a figure from a worker's JSON: shown, escaped
        return html.escape(str(value))
    if isinstance(value, int) or digits == 0:
        return f"{round(value):,}"
    return f"{value:,.{digits}f}"


def _pct(value: Any) -> str:
    if value is None:
        return DASH
    return f"{value * 100:.1f} %" if isinstance(value, int | float) else html.escape(str(value))


def _verdict(decision: str | None) -> str:
    if decision is None:
        return '<span class="muted">none yet</span>'
    return f'<span class="{html.escape(decision)}">{html.escape(decision)}</span>'


def _card(title: str, rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section class="card"><h3>{html.escape(title)}</h3><dl>{body}</dl></section>'


def _wfv_card(wfv: dict[str, Any] | None) -> str:
    if wfv is None:
        return _card("Walk-forward", [("verdict", _verdict(None))])
    s = wfv["summary"]
    folds = s.get("folds") or []
    return _card("Walk-forward", [
        ("verdict", _verdict(wfv["decision"]) if wfv["decision"] else html.escape(wfv["status"])),
        ("WF Sharpe", _num(s.get("wf_sharpe"))), ("WF PSR", _num(s.get("wf_psr"), 3)),
        ("WFE", _num(s.get("wfe"))), ("profitable folds", f"{_pct(s.get('profitable_folds'))} of {len(folds)}"),
    ])


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return DASH
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _span(report: Report) -> str:
    t = report.curve["t"]
    what = "IS range and holdout" if report.holdout_shown and report.holdout else "IS range"
    return f"{what}, {_when(t[0])} .. {_when(t[-1])} UTC" if t else what


def _band_legend(report: Report) -> str:
    items = ['<span><i style="background:rgba(152,162,179,0.35)"></i>IS range</span>']
    if report.wfv and (report.wfv["summary"].get("folds") or []):
        items.append('<span><i style="background:rgba(47,111,219,0.35)"></i>walk-forward test windows</span>')
    if report.holdout:
        hidden = "" if report.holdout_shown else " (not drawn until the OOS verdict)"
        items.append(f'<span><i style="background:rgba(224,123,0,0.4)"></i>holdout{hidden}: '
                     f"{_when(report.holdout[0])} .. {_when(report.holdout[1])}</span>")
    return f'<p class="legend-bands">{"".join(items)}</p>'


def _heat(ret: float) -> str:
    """A red-to-green background for a monthly return, saturating at ±5 %."""
    x = max(-1.0, min(1.0, ret / 5.0))
    color = f"rgba(26,127,55,{abs(x) * 0.55:.2f})" if x >= 0 else f"rgba(198,40,40,{abs(x) * 0.55:.2f})"
    return f' style="background:{color}"'


def _monthly_table(report: Report) -> str:
    if not report.monthly:
        return '<p class="muted">No bars.</p>'
    years: dict[int, dict[int, dict[str, Any]]] = {}
    for entry in report.monthly:
        years.setdefault(entry["year"], {})[entry["month"]] = entry
    head = "".join(f"<th>{m}</th>" for m in MONTHS)
    rows = []
    for year, months in sorted(years.items()):
        cells, growth = [], 1.0
        for month in range(1, 13):
            m = months.get(month)
            if m is None:
                cells.append("<td></td>")
                continue
            growth *= 1 + m["ret"] / 100
            mark = ' title="holdout"' if m["holdout"] else ""
            cells.append(f'<td{_heat(m["ret"])}{mark}>{m["ret"]:+.2f}{"*" if m["holdout"] else ""}</td>')
        total = (growth - 1) * 100
        rows.append(f'<tr><th class="l">{year}</th>{"".join(cells)}<td{_heat(total / 3)}><b>{total:+.2f}</b></td></tr>')
    foot = '<p class="muted">* a month that reaches into the holdout.</p>' if any(
        m["holdout"] for m in report.monthly) else ""
    return (f'<table class="heat"><thead><tr><th></th>{head}<th>year</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{foot}')


def _folds_table(wfv: dict[str, Any] | None) -> list[str]:
    folds = (wfv or {}).get("summary", {}).get("folds") or []
    if not folds:
        return []
    rows = "".join(
        f'<tr><td>{_num(f.get("index"), 0)}</td><td class="l">{_when(f.get("train_start_ts"))} .. '
        f'{_when(f.get("train_end_ts"))}</td><td class="l">{_when(f.get("test_start_ts"))} .. '
        f'{_when(f.get("test_end_ts"))}</td><td>{_num(f.get("is_sharpe"))}</td><td>{_num(f.get("oos_sharpe"))}</td>'
        f'<td class="l">{html.escape(str(f.get("status", "")))}</td></tr>' for f in folds)
    return ["<h2>Walk-forward folds</h2>",
            '<table><thead><tr><th>fold</th><th class="l">train</th><th class="l">test</th><th>train Sharpe</th>'
            f'<th>test Sharpe</th><th class="l">status</th></tr></thead><tbody>{rows}</tbody></table>']


def _trades_table(report: Report) -> str:
    if not report.trades:
        return '<p class="muted">No trades.</p>'
    shown = "" if len(report.trades) == report.trade_count else (
        f'<p class="muted">The newest {len(report.trades):,} of {report.trade_count:,}.</p>')
    rows = "".join(
        f'<tr{" class=ho" if t["holdout"] else ""}><td class="l">{_when(t["entry_ts"])}</td>'
        f'<td class="l">{_when(t["exit_ts"])}</td><td class="l">{t["side"]}</td><td>{t["entry_price"]:.5f}</td>'
        f'<td>{t["exit_price"]:.5f}</td><td>{t["pnl_pips"]:+.1f}</td><td class="l">{t["exit_reason"]}</td>'
        f'<td class="l">{"holdout" if t["holdout"] else "IS"}</td></tr>'
        for t in reversed(report.trades))
    return (f'{shown}<div class="scroll"><table id="trades"><thead><tr><th class="l">entry (UTC)</th>'
            '<th class="l">exit</th><th class="l">side</th><th>entry</th><th>exit</th><th>pips</th>'
            f'<th class="l">exit by</th><th class="l">range</th></tr></thead><tbody>{rows}</tbody></table></div>')
