"""The metrics listener's pages and its token (SPEC §7): a real aiohttp listener on loopback, a real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from helpers import free_port, write_config
from test_metrics_http import FULL

from swimmy.cli.main import main
from swimmy.config import Secret
from swimmy.ops.metrics_http import MetricsServer

TOKEN = "s3cret-token-of-the-operator"


class FakePages:
    """Pages with fixed answers: what the listener does with them is under test here, not the pages."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def index(self) -> bytes:
        return b"<!doctype html><title>dash</title>"

    def static(self, name: str) -> tuple[bytes, str] | None:
        return (b"console.log(1)", "application/javascript") if name == "app.js" else None

    def dashboard(self) -> bytes:
        return b'{"status": "OK"}'

    async def report(self, name: str) -> tuple[int, str]:
        self.reports.append(name)
        return (200, f"<h1>{name}</h1>") if name == "known" else (404, f"404: no strategy called {name!r}\n")


@pytest.fixture
async def listener() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    servers: list[MetricsServer] = []

    async def start(token: str | None) -> str:
        port = free_port()
        server = MetricsServer(f"127.0.0.1:{port}", lambda: FULL, dict, list, pages=FakePages(),
                               token=Secret(token) if token else None)
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.close()


async def get(url: str, **kwargs: object) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False, **kwargs) as r:
        return r.status, await r.text(), dict(r.headers)


async def test_pages_without_a_token(listener: Callable[..., Awaitable[str]]) -> None:
    base = await listener(None)
    assert (await get(f"{base}/"))[:2] == (200, "<!doctype html><title>dash</title>")
    assert (await get(f"{base}/api/dashboard"))[:2] == (200, '{"status": "OK"}')
    status, _, headers = await get(f"{base}/static/app.js")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "application/javascript")
    assert (await get(f"{base}/static/../../etc/passwd"))[0] == 404
    assert (await get(f"{base}/strategies/known"))[:2] == (200, "<h1>known</h1>")
    assert (await get(f"{base}/strategies/unknown"))[0] == 404
    assert (await get(f"{base}/login"))[0] == 404  # no token configured: no login either
    status, _, headers = await get(f"{base}/")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, _, headers = await get(f"{base}/strategies/known")
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")  # the report loads nothing


async def test_a_loopback_listener_answers_loopback_names_only(listener: Callable[..., Awaitable[str]]) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    base = await listener(None)
    for path in ("/", "/api/dashboard", "/metrics", "/strategies/known"):
        status, body, _ = await get(base + path, headers={"Host": "evil.example:9464"})
        assert (status, body) == (421, "421: this listener answers loopback names only\n")
    assert (await get(f"{base}/healthz", headers={"Host": "evil.example"}))[0] == 200  # probes: any name
    for host in ("localhost:9464", "127.0.0.1", "[::1]:9464"):
        assert (await get(f"{base}/api/dashboard", headers={"Host": host}))[0] == 200


@pytest.mark.parametrize("path", ["/", "/api/dashboard", "/metrics", "/strategies/known", "/static/app.js"])
async def test_every_page_but_the_probes_needs_the_token(listener: Callable[..., Awaitable[str]], path: str) -> None:
    base = await listener(TOKEN)
    status, body, headers = await get(base + path)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in body
    assert (await get(base + path, headers={"Authorization": "Bearer wrong"}))[0] == 401
    assert (await get(base + path, headers={"Authorization": f"Basic {TOKEN}"}))[0] == 401
    assert (await get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}))[0] == 200


async def test_probes_stay_open(listener: Callable[..., Awaitable[str]]) -> None:
    base = await listener(TOKEN)
    assert (await get(f"{base}/healthz"))[0] == 200
    assert (await get(f"{base}/readyz"))[0] == 200

async def test_a_browser_trades_the_posted_token_for_a_cookie(listener: Callable[..., Awaitable[str]]) -> None:
    base = await listener(TOKEN)
    status, page, _ = await get(f"{base}/")
    assert status == 401 and '<form method="post" action="/login">' in page and TOKEN not in page
    assert (await get(f"{base}/login"))[0] == 200
    # unsafe=True: aiohttp's jar, unlike a browser's, keeps no cookie of an IP address by default.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base}/login?token={TOKEN}", allow_redirects=False) as r:
            assert r.status == 200 and "Set-Cookie" not in r.headers  # a token in a URL logs nobody in
        async with session.post(f"{base}/login", data={"token": "wrong"}, allow_redirects=False) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers
        async with session.post(f"{base}/login", data={"token": TOKEN}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        async with session.get(f"{base}/api/dashboard") as r:  # the session sends the cookie back
            assert r.status == 200
        async with session.post(f"{base}/login", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"},
                                allow_redirects=False) as r:
            assert "Secure" in r.headers["Set-Cookie"]  # behind a TLS proxy the cookie never goes out in clear


def test_a_listener_other_hosts_reach_needs_a_token(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, {"metrics": {"listen": "0.0.0.0:9464", "token_env": "TEST_SWIMMY_TOKEN"}})
    monkeypatch.delenv("TEST_SWIMMY_TOKEN", raising=False)
    assert main(["run", "--config", str(path), "--exit-after", "1"]) == 2
    err = capsys.readouterr().err
    assert "metrics.listen: 0.0.0.0:9464 is reachable from other hosts" in err and "TEST_SWIMMY_TOKEN" in err
    assert not (tmp_path / "var").exists()  # refused before anything was touched
    monkeypatch.setenv("TEST_SWIMMY_TOKEN", TOKEN)
    assert main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "metrics bearer token ($TEST_SWIMMY_TOKEN): set (redacted)" in out and TOKEN not in out
