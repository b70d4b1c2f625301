"""The dashboard in a real browser (Debian's chromium): rendered from a running daemon, a report one click away.

The page must draw the population chart and the best-strategies table with the daemon's data, tell the OOS
verdict the test asked for, link to the strategy's report, load nothing from off the host and log no console
error. Screenshots go to the test's temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import DaemonProcess
from integration.kit import RunningDaemon
from viewkit import NAME, seeded

REPORT_TIMEOUT_MS = 45_000  # the report is a backtest in a subprocess: a few seconds on a loaded 2-core machine


def test_dashboard_renders_and_links_to_a_report(page_watch: Any, daemon_factory: Callable[..., DaemonProcess],
                                                  tmp_path: Path) -> None:
    daemon = RunningDaemon(daemon_factory(seeded(tmp_path)))
    daemon.wait_workers_ready(1)
    assert daemon.cli("oos", "request", NAME).returncode == 0
    verdict = daemon.wait_for("oos.result", timeout=30, strategy=NAME)[0]["data"]["decision"]
    page = page_watch.page
    page.goto(f"http://{daemon.cfg.metrics.listen}/")
    page.wait_for_selector("#population[data-points] canvas")
    page.wait_for_selector('#top[data-rows="1"]')
    link = page.locator("#top tbody a")
    assert link.inner_text() == NAME and link.get_attribute("href") == f"/strategies/{NAME}"
    page.wait_for_function(
        "name => [...document.querySelectorAll('#milestones li')].some(li => li.textContent.includes(name))", arg=NAME)
    assert f"OOS {verdict} for {NAME}" in page.locator("#milestones").inner_text()
    assert page.locator("#status").inner_text() in ("OK", "DEGRADED")
    page_watch.screenshot(tmp_path / "dashboard.png")

    with page.expect_navigation(timeout=REPORT_TIMEOUT_MS):
        link.click()
    page.wait_for_selector("#equity[data-rendered] canvas")
    assert page.locator("h1").inner_text().startswith(NAME)
    assert int(page.locator("#equity").get_attribute("data-rendered") or 0) > 100
    page_watch.screenshot(tmp_path / "report.png")
    page_watch.assert_clean()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000 and (tmp_path / "report.png").stat().st_size > 10_000
    assert daemon.stop() == 0


def test_a_browser_with_the_token_form_reaches_the_dashboard(page_watch: Any,
                                                             daemon_factory: Callable[..., DaemonProcess],
                                                             tmp_path: Path) -> None:
    """With a token set, / answers the form; the posted token sets the cookie; no URL ever carries it."""
    token = "a-long-random-operator-token-0123456789"
    daemon = RunningDaemon(daemon_factory(seeded(tmp_path), env={"SWIMMY_METRICS_TOKEN": token}))
    daemon.wait_started()
    base = f"http://{daemon.cfg.metrics.listen}"
    daemon.wait_http("/healthz", 200)  # the probes need no token
    page = page_watch.page
    response = page.goto(f"{base}/")
    assert response is not None and response.status == 401
    page.fill("input[name=token]", "wrong")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "wrong or missing token" in page.content()
    page.goto(f"{base}/login")
    page.fill("input[name=token]", token)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_selector('#top[data-rows="1"]')
    assert all(token not in url for url in page_watch.requests)
    page_watch.assert_local_only()
    assert daemon.stop() == 0
