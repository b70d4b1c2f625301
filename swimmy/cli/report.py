"""`swimmy report NAME [--out FILE]`: one strategy's report as a self-contained HTML file (docs/reports.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from swimmy.cli.progress import progress
from swimmy.config import Config
from swimmy.errors import StoreError, UsageError
from swimmy.files import atomic_write
from swimmy.store import Store


def report_html(cfg: Config, name: str) -> str:
    """The report page of stored strategy `name` (UsageError: unknown strategy, no store, unreadable data)."""
    from swimmy.view.report import build_report
    from swimmy.view.reporthtml import render_report

    if not cfg.school.db_path.exists():
        raise UsageError(f"no strategy store at {cfg.school.db_path} yet")
    try:
        with Store.open_readonly(cfg.school.db_path) as store:
            return render_report(build_report(cfg, store, name))
    except StoreError as exc:
        raise UsageError(f"cannot read the strategy store: {exc}") from None


def run_report(cfg: Config, name: str, out: Path | None, stdout: TextIO | None = None) -> int:
    """Write the report (`-`: standard output); print where it went; exit code."""
    stdout = stdout or sys.stdout
    with progress(f"report of {name}: backtest and charts", None, transient=True):  # a spinner, on a terminal only
        page = report_html(cfg, name)
    if out is not None and str(out) == "-":
        stdout.write(page)
        return 0
    path = out if out is not None else Path(f"{name}.html")
    atomic_write(path, page.encode(), mode=0o644)
    print(f"{path} ({len(page.encode()) / 1024:.0f} KB): open it in a browser; it needs no network", file=stdout)
    return 0
