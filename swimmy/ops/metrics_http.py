"""`/metrics` (Prometheus text format) and `/healthz` on `metrics.listen` (SPEC §7).

/healthz is 200 while every long-lived task makes progress (each wakes at least
once a second), 503 with the reasons otherwise: an idle daemon is healthy, a
wedged one is not. It is liveness: what systemd's watchdog follows, and what a
restart can fix. /readyz is 200 when the daemon is also doing its job (telemetry
writing, a backtest worker connected, no universe paused), 503 with the DEGRADED reasons otherwise
(the same words as `swimmy status` and the heartbeat): what a load balancer or
an alert asks; restarting does not fix a full disk.

With `pages` (swimmy/view/pages.py) the same listener serves the dashboard at `/`, its data at
/api/dashboard, its static files under /static/ and each strategy's report at /strategies/NAME. With a
token, every path but /healthz and /readyz needs it: `Authorization: Bearer TOKEN` (Prometheus, curl), or
the cookie that the form at /login sets for a browser (posted, so the token never sits in a URL, a history
or a proxy's log). A wrong or missing token gets 401. A loopback listener answers only requests whose Host
is a loopback name (DNS rebinding cannot make a web page read it), and the pages carry a Content-Security-
Policy that lets them load nothing from anywhere but the daemon.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swimmy.config import Secret
from swimmy.ops.figures import Figures
from swimmy.wire.security import is_loopback

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # liveness and readiness need no token (SPEC §7)
COOKIE = "swimmy_token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
# The dashboard loads its scripts and data from the daemon only; the report is one file: inline, nothing else.
DASHBOARD_CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:;"
              " frame-ancestors 'none'")
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
LOGIN_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>swimmy · token</title></head>
<body style="font: 15px system-ui, sans-serif; margin: 40px">
<h1 style="font-size: 20px">swimmy</h1><p>This listener needs the bearer token (metrics.token_env).</p>
<form method="post" action="/login"><input type="password" name="token" autocomplete="current-password" autofocus
 size="40"> <button type="submit">Open the dashboard</button></form></body></html>
"""


class Pages(Protocol):
    """What people look at, served beside /metrics (implemented in swimmy/view/pages.py)."""

    def index(self) -> bytes: ...

    def static(self, name: str) -> tuple[bytes, str] | None: ...

    def dashboard(self) -> bytes: ...

    def report(self, name: str) -> Awaitable[tuple[int, str]]: ...


class FiguresCollector(Collector):
    """Turns the daemon's figures into metric families at each scrape."""

    def __init__(self, figures: Callable[[], Figures]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        """One family per figure."""
        f = self._figures()
        t = f.telemetry

        def gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"swimmy_{name}", doc, value=float(value) if value is not None else float("nan"))

        def counter(name: str, doc: str, value: Any) -> CounterMetricFamily:
            return CounterMetricFamily(f"swimmy_{name}", doc, value=float(value or 0))

        yield gauge("up", "1 while the daemon serves; see swimmy_degraded", 1)
        yield gauge("degraded", "1 when the daemon knows something is wrong", f.status == "DEGRADED")
        yield gauge("uptime_seconds", "seconds since start", f.uptime_sec)
        yield gauge("resident_memory_bytes", "RSS of the daemon process", f.rss_bytes)
        yield gauge("loop_lag_seconds", "the event loop's last measured lag", f.loop_lag_ms / 1000)
        yield counter("telemetry_events_written", "JSONL lines written", t.written)
        yield counter("telemetry_events_dropped", "events dropped (queue full or after close)", t.dropped)
        yield counter("telemetry_failed_writes", "failed write attempts", t.failed_writes)
        yield counter("telemetry_rotations", "file rotations", t.rotations)
        yield gauge("telemetry_queue_depth", "events waiting for the writer", t.queue_depth)
        yield gauge("telemetry_failing", "1 while telemetry writes fail", t.failing)
        if f.heartbeats is not None:
            h = f.heartbeats
            yield counter("heartbeats_sent", "heartbeats published", h.sent)
            yield gauge("heartbeat_rtt_seconds", "round trip of the last acked heartbeat",
                        h.last_rtt_ms / 1000 if h.last_rtt_ms is not None else None)
        if f.peers is not None:
            ages = GaugeMetricFamily("swimmy_peer_last_seen_seconds", "seconds since each peer was heard",
                                     labels=["source"])
            for source, age in f.peers.last_seen_age_sec.items():
                ages.add_metric([source], age)
            yield ages
            yield gauge("peers_silent", "peers declared silent", len(f.peers.silent))
            yield counter("peers_evicted", "unknown heartbeat sources evicted from the full peer table",
                          f.peers.evicted)
        if f.strategies is not None:
            ranks = GaugeMetricFamily("swimmy_strategies", "strategies by rank", labels=["rank"])
            for rank, n in f.strategies.items():
                ranks.add_metric([rank], n)
            yield ranks
        if f.oos is not None:
            yield gauge("oos_pending", "OOS requests in flight", f.oos.pending)
            yield gauge("oos_errors", "OOS queue rows in error", f.oos.errors)
            yield gauge("oos_oldest_age_seconds", "age of the oldest OOS request in flight", f.oos.oldest_age_sec)
        if f.wfv is not None:
            yield gauge("wfv_pending", "WFV runs pending", f.wfv.pending)
            yield gauge("wfv_oldest_age_seconds", "age of the oldest pending WFV run", f.wfv.oldest_age_sec)
        if f.universes is not None:
            families = {
                "trials": GaugeMetricFamily("swimmy_trials", "distinct rule sets tried per universe (the ledger's N)",
                                            labels=["universe"]),
                "n_eff": GaugeMetricFamily("swimmy_trials_effective", "effective number of independent trials",
                                           labels=["universe"]),
                "oos_looks": GaugeMetricFamily("swimmy_holdout_looks", "OOS verdicts taken on the current holdout",
                                               labels=["universe"]),
                "pbo": GaugeMetricFamily("swimmy_pbo", "probability of backtest overfitting (last CSCV audit)",
                                         labels=["universe"]),
            }
            for universe, u in f.universes.items():
                for key, family in families.items():
                    value = getattr(u, key)
                    if value is not None:
                        family.add_metric([universe], value)
            yield from families.values()
        if f.backtests is not None:
            b = f.backtests
            yield gauge("backtests_queued", "backtest requests waiting for a worker's credit", b.queued)
            yield counter("backtests_requeued", "requests re-queued after a worker died or had other data", b.requeued)
            yield counter("backtests_quarantined", "poison requests given up", b.quarantined)
            yield gauge("workers_ready", "workers that sent READY and are alive", b.workers_ready)
            yield gauge("backtests_inflight", "backtest requests awaiting an answer", b.inflight)
            yield counter("backtests_completed", "backtest answers received", b.completed)
            yield counter("backtests_timeouts", "backtests that timed out twice", b.timeouts)
        yield gauge("workers_alive", "embedded worker processes running", f.workers.alive)
        yield gauge("workers_configured", "embedded workers configured", f.workers.configured)
        if f.discord is not None:
            d = f.discord
            yield counter("discord_delivered", "notifications Discord answered 2xx", d.delivered)
            yield counter("discord_failed", "notifications given up", d.failed)
            yield gauge("discord_queued", "notifications waiting", d.queued)
            yield counter("discord_dropped", "notifications dropped: the queue was full", d.dropped)
            yield counter("discord_coalesced", "alerts merged into a waiting alert of their kind", d.coalesced)


class MetricsServer:
    """An aiohttp server in the daemon's loop; start() binds, close() stops (idempotent)."""

    def __init__(self, listen: str, figures: Callable[[], Figures],
                 stale: Callable[[], dict[str, float]], degraded: Callable[[], list[str]] = list, *,
                 pages: Pages | None = None, token: Secret | None = None) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self._pages = pages
        self._token = token
        self.unauthorized = 0  # requests refused for a wrong or missing token
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(FiguresCollector(figures))
        self._stale = stale
        self._degraded = degraded
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the address is taken."""
        middlewares = [self._host] if is_loopback(f"tcp://{self.host}:{self.port}") else []
        if self._token is not None:
            middlewares.append(self._auth)
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self._pages is not None:
            add_pages(app, self._pages)
        if self._token is not None:
            app.router.add_get("/login", self._login_form)
            app.router.add_post("/login", self._login)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner

    async def close(self) -> None:
        """Stop serving."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @web.middleware
    async def _host(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """A loopback listener serves loopback names only: a rebound DNS name gets 421, not the dashboard."""
        try:
            host = urlsplit(f"//{request.host}").hostname
        except ValueError:  # a Host header that is no host at all
            host = None
        if request.path in OPEN_PATHS or host in LOOPBACK_NAMES or host == self.host:
            return await handler(request)
        return web.Response(status=421, text="421: this listener answers loopback names only\n")

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Every path but the probes needs the token: a bearer header, or the cookie /login set."""
        if request.path in OPEN_PATHS or request.path == "/login" or self._authorized(request):
            return await handler(request)
        self.unauthorized += 1
        if request.path == "/":  # a browser at the dashboard: the form that trades the token for a cookie
            return web.Response(status=401, text=LOGIN_FORM, content_type="text/html",
                                headers={"WWW-Authenticate": 'Bearer realm="swimmy"', "Content-Security-Policy":
                                         REPORT_CSP, **PAGE_HEADERS})
        return web.Response(status=401, text="401: this listener needs the bearer token (metrics.token_env)\n",
                            headers={"WWW-Authenticate": 'Bearer realm="swimmy"'})

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() == "bearer" and self._matches(presented.strip()):
            return True
        return self._matches(request.cookies.get(COOKIE, ""))

    def _matches(self, presented: str) -> bool:
        token = self._token
        return token is not None and bool(presented) and hmac.compare_digest(presented.encode(),
                                                                                 token.reveal().encode())

    async def _login_form(self, request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_FORM, content_type="text/html",
                            headers={"Content-Security-Policy": REPORT_CSP, **PAGE_HEADERS})

    async def _login(self, request: web.Request) -> web.Response:
        """A browser can't send a bearer header on navigation: trade the posted token for an HttpOnly cookie."""
        form = await request.post()
        presented = form.get("token")
        if not isinstance(presented, str) or not self._matches(presented):
            self.unauthorized += 1
            return web.Response(status=401, text="401: wrong or missing token\n",
                                headers={"WWW-Authenticate": 'Bearer realm="swimmy"'})
        response = web.Response(status=303, headers={"Location": "/"})
        secure = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"
        response.set_cookie(COOKIE, presented, httponly=True, samesite="Strict", path="/", secure=secure)
        return response

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE})

    def _stale_reasons(self) -> list[str]:
        return [f"task {name} has made no progress for {age:.1f} s" for name, age in sorted(self._stale().items())]

    async def _healthz(self, request: web.Request) -> web.Response:
        reasons = self._stale_reasons()
        if not reasons:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "unhealthy", "reasons": reasons}, status=503)

    async def _readyz(self, request: web.Request) -> web.Response:
        """Alive and doing its job: the DEGRADED reasons of `swimmy status` and the heartbeat, plus /healthz's."""
        reasons = self._stale_reasons() + self._degraded()
        if not reasons:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reasons": reasons}, status=503)


def add_pages(app: web.Application, pages: Pages) -> None:
    """The dashboard, its data and static files, and the reports."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=pages.index(), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": DASHBOARD_CSP,
                                     **PAGE_HEADERS})

    async def dashboard(request: web.Request) -> web.Response:
        return web.Response(body=pages.dashboard(), content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.Response:
        found = pages.static(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="404: no such file\n")
        body, content_type = found
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "max-age=3600"})

    async def report(request: web.Request) -> web.Response:
        status, page = await pages.report(request.match_info["name"])
        kind = "text/html" if status == 200 else "text/plain"
        return web.Response(status=status, text=page, content_type=kind,
                            headers={"Cache-Control": "no-cache", "Content-Security-Policy": REPORT_CSP,
                                     **PAGE_HEADERS})

    app.router.add_get("/", index)
    app.router.add_get("/api/dashboard", dashboard)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/strategies/{name}", report)
