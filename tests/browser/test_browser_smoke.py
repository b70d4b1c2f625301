"""The browser fixtures themselves: a page from a real loopback HTTP server runs its script, stays on loopback and
logs no error; and the recorder does catch a console error and a request that would leave the host (aborted by the
fixture's route, so nothing is sent)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# No favicon request: the icon is inline.
HEAD = '<!doctype html><html><head><meta charset="utf-8"><title>t</title><link rel="icon" href="data:,"></head>'

PAGES = {
    "/": HEAD + '<body><main id="app"></main><script src="/app.js"></script></body></html>',
    "/app.js": (
        "const p = document.createElement('p');\n"
        "p.id = 'ready';\n"
        "p.textContent = 'rendered ' + (6 * 7);\n"
        "document.getElementById('app').appendChild(p);\n"
    ),
    "/bad": HEAD + '<body><img src="http://192.0.2.1/x.png" alt=""><script>console.error("x")</script></body></html>',
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGES.get(self.path)
        if body is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        data = body.encode()
        kind = "text/javascript" if self.path.endswith(".js") else "text/html"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    """PAGES, served by a real HTTP server on 127.0.0.1 (a free port) in a thread: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_page_renders_on_loopback_without_errors(page_watch, site: str, tmp_path: Path) -> None:
    page = page_watch.page
    page.goto(f"{site}/")
    page.wait_for_selector("#ready")
    assert page.text_content("#ready") == "rendered 42"
    assert page_watch.requests == [f"{site}/", f"{site}/app.js"]
    page_watch.assert_clean(warnings=True)
    shot = page_watch.screenshot(tmp_path / "page.png")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000


def test_recorder_catches_console_error_and_offhost_request(page_watch, site: str) -> None:
    page_watch.page.goto(f"{site}/bad")  # waits for "load": the image has been tried (and aborted) by then
    assert page_watch.offhost() == ["http://192.0.2.1/x.png"]
    assert page_watch.blocked == ["http://192.0.2.1/x.png"]  # aborted by the fixture's route: never sent
    assert ("error", "x") in [(kind, text.split(" (")[0]) for kind, text in page_watch.console]
    with pytest.raises(AssertionError, match=r"requests left the host: \['http://192\.0\.2\.1/x\.png'\]"):
        page_watch.assert_local_only()
    with pytest.raises(AssertionError, match=r"console\.error: x"):
        page_watch.assert_no_console_errors()


def test_uncaught_page_error_is_recorded(page_watch) -> None:
    with page_watch.page.expect_event("pageerror"):
        page_watch.page.set_content("<script>setTimeout(() => { throw new Error('boom') }, 0)</script>")
    assert any("boom" in e for e in page_watch.page_errors), page_watch.page_errors
    with pytest.raises(AssertionError, match=r"uncaught: .*boom"):
        page_watch.assert_no_console_errors()
