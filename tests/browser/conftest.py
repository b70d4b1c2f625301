"""Fixtures of the browser tests: Debian's `chromium` driven by Playwright's sync API, and a recording page.

`browser` (session) is one headless chromium per test process (per xdist worker); `page_watch` (function) is a new
page in a fresh context (1280x900) that records every request, every console error and warning, and every uncaught
page error, and aborts any request that would leave loopback, so no real traffic is ever sent (the attempt is still
recorded). Write browser tests as plain sync functions (`def test_...`): the sync API cannot run inside a running
event loop.

Playwright's sync API leaves its event loop marked as running in this thread between its calls. pytest-asyncio then
refuses to run the async fixtures of the same test (the autouse `_no_leaked_tasks`) and every later async test of the
process. So the loop is marked running only while Playwright code runs: in these fixtures' own setup and teardown,
and around the call of a test that uses them (`pytest_runtest_call` below).

The browser is Debian's chromium (`make browser` installs it as root), never Playwright's download. SWIMMY_CHROMIUM
names another binary. Without a binary, without playwright, or when the launch fails, the tests skip and say why;
with SWIMMY_REQUIRE_BROWSER=1 (set by .ci/run once chromium is installed) they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, WebSocket

INSTALL_HINT = "run `make browser` as root (installs Debian's chromium), or set SWIMMY_CHROMIUM to a chromium binary"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1280, 900
LAUNCH_TIMEOUT_MS = 30_000
DEFAULT_TIMEOUT_MS = 10_000  # any wait of a test fails well before pytest-timeout's 60 s

_LOOP = pytest.StashKey[asyncio.AbstractEventLoop]()


def is_local(url: str) -> bool:
    """True for a URL that stays on this host: loopback HTTP(S)/WS, or data:, blob:, about:."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname in LOCAL_HOSTS


def chromium_path() -> str | None:
    """SWIMMY_CHROMIUM if set, else `chromium` on PATH, else /usr/bin/chromium if it is there."""
    override = os.environ.get("SWIMMY_CHROMIUM")
    if override:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _unavailable(reason: str) -> None:
    message = f"{reason}: {INSTALL_HINT}"
    if os.environ.get("SWIMMY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SWIMMY_REQUIRE_BROWSER=1 and {message}", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def _playwright_running(loop: asyncio.AbstractEventLoop | None) -> Iterator[None]:
    """Mark Playwright's loop as the running one for the block (its sync calls expect that), and unmark it after."""
    if loop is not None:
        asyncio._set_running_loop(loop)
    try:
        yield
    finally:
        asyncio._set_running_loop(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test that uses the browser calls Playwright with its loop marked running; other tests never see it."""
    if "browser" not in getattr(item, "fixturenames", ()):
        return (yield)
    with _playwright_running(item.config.stash.get(_LOOP, None)):
        return (yield)


@pytest.fixture(scope="session")
def browser(pytestconfig: pytest.Config) -> Iterator[Browser]:
    """One headless Debian chromium for this test process, closed at the end of the session."""
    path = chromium_path()
    if path is None:
        override = os.environ.get("SWIMMY_CHROMIUM")
        _unavailable(f"SWIMMY_CHROMIUM={override} is not executable" if override else "no chromium binary")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"cannot import playwright ({exc})")
    try:
        pw = sync_playwright().start()  # leaves its loop marked running: the `with` below unmarks it
    except Exception as exc:
        asyncio._set_running_loop(None)
        _unavailable(f"playwright's driver did not start ({exc})")
    loop = asyncio.get_running_loop()
    with _playwright_running(loop):
        try:
            # Playwright itself passes --headless, --no-sandbox (chromiumSandbox is off by default, so root works)
            # and --disable-dev-shm-usage; Debian's chromium (156 here) needs nothing more.
            launched = pw.chromium.launch(executable_path=path, headless=True, timeout=LAUNCH_TIMEOUT_MS)
        except Exception as exc:
            pw.stop()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _unavailable(f"chromium at {path} did not launch ({first})")
    pytestconfig.stash[_LOOP] = loop
    try:
        yield launched
    finally:
        with _playwright_running(loop):
            try:
                launched.close()
            finally:
                pw.stop()
        del pytestconfig.stash[_LOOP]


@dataclass
class PageWatch:
    """A page and what it did: request URLs, console errors and warnings, uncaught page errors, blocked requests."""

    page: Page
    requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text): "error" and "warning" only
    page_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # requests that would have left loopback, aborted

    def offhost(self) -> list[str]:
        """Every request or WebSocket URL that was not local (see is_local), in order."""
        return [u for u in [*self.requests, *self.websockets] if not is_local(u)]

    def errors(self, *, warnings: bool = False) -> list[str]:
        """Console errors (and warnings if asked) and uncaught page errors, as readable lines."""
        kinds = {"error", "warning"} if warnings else {"error"}
        lines = [f"console.{kind}: {text}" for kind, text in self.console if kind in kinds]
        return lines + [f"uncaught: {e}" for e in self.page_errors]

    def assert_local_only(self) -> None:
        """No request (nor WebSocket) went, or tried to go, anywhere but this host."""
        offhost = self.offhost()
        assert not offhost, f"requests left the host: {offhost}"

    def assert_no_console_errors(self, *, warnings: bool = False) -> None:
        """No console error (nor warning, with warnings=True) and no uncaught error in the page."""
        errors = self.errors(warnings=warnings)
        assert not errors, "the page logged errors:\n" + "\n".join(errors)

    def assert_clean(self, *, warnings: bool = False) -> None:
        """Both checks: everything stayed on loopback, and the console had no error."""
        self.assert_local_only()
        self.assert_no_console_errors(warnings=warnings)

    def screenshot(self, path: Path) -> Path:
        """A full-page PNG at path (its folder is created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page_watch(browser: Browser, pytestconfig: pytest.Config) -> Iterator[PageWatch]:
    """A new page in a fresh 1280x900 context, recording what it does; off-loopback requests are aborted."""
    loop = pytestconfig.stash[_LOOP]
    with _playwright_running(loop):
        context = browser.new_context(viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        watch = PageWatch(page=context.new_page())

        def on_route(route: Route) -> None:
            url = route.request.url
            if is_local(url):
                route.fallback()
            else:
                watch.blocked.append(url)
                route.abort("blockedbyclient")

        def on_request(request: Request) -> None:
            watch.requests.append(request.url)

        def on_console(message: ConsoleMessage) -> None:
            if message.type in {"error", "warning"}:
                location = message.location
                where = f" ({location.get('url')}:{location.get('lineNumber')})" if location.get("url") else ""
                watch.console.append((message.type, message.text + where))

        def on_websocket(ws: WebSocket) -> None:
            watch.websockets.append(ws.url)

        context.route("**/*", on_route)
        context.on("request", on_request)  # the context's requests: the page's, its workers' and any popup's
        watch.page.on("console", on_console)
        watch.page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
        watch.page.on("websocket", on_websocket)
    try:
        yield watch
    finally:
        with _playwright_running(loop):
            context.close()
