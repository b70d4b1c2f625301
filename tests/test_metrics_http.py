"""/metrics, /healthz and /readyz on a real loopback listener, read with a real HTTP client."""

from __future__ import annotations

import math
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest
from helpers import free_port
from prometheus_client.parser import text_string_to_metric_families

from swimmy.ops.figures import (
    BacktestFigures,
    DiscordFigures,
    Figures,
    HeartbeatFigures,
    OosFigures,
    PeerFigures,
    TelemetryFigures,
    UniverseFigures,
    WfvFigures,
    WorkerFigures,
)
from swimmy.ops.metrics_http import MetricsServer

TELEMETRY = TelemetryFigures(written=10, dropped=2, failed_writes=1, queue_depth=4, rotations=0, failing=False,
                             fsync_errors=0, truncated=0)


def base_figures(**changes: Any) -> Figures:
    """A daemon with only its shell running (telemetry, status, workers), with `changes` applied."""
    figures = Figures(run_id="r1", pid=7, version="1.0", config_hash="abc", uptime_sec=12.5, rss_bytes=50_000_000,
                      loop_lag_ms=3.0, loop_stalls=0, telemetry=TELEMETRY, heartbeats=None, peers=None, backtests=None,
                      workers=WorkerFigures(configured=2, alive=1), strategies=None, oos=None, wfv=None,
                      universes=None, discord=None, status="OK", reasons=[], stale_tasks={})
    return replace(figures, **changes)


def universe(trials: int, n_eff: float, pbo: float | None) -> UniverseFigures:
    return UniverseFigures(trials=trials, n_eff=n_eff, data_hash=None, usable=True, oos_looks=2,
                           holdout_start_ts=None, pbo=pbo, audited_at=None, sr0=None)


FULL = base_figures(
    status="DEGRADED",
    rss_bytes=None,
    heartbeats=HeartbeatFigures(sent=7, send_failures=0, last_rtt_ms=None),
    peers=PeerFigures({"worker-a": 1.5, "worker-b": 30.0}, ["worker-b"], 3),
    strategies={"incubator": 5, "B": 2, "A": 1, "S": 0, "graveyard": 9},
    oos=OosFigures(pending=2, errors=0, oldest_age_sec=None, latency_p50_sec=None, requested=5, results=3),
    wfv=WfvFigures(pending=1, oldest_age_sec=42.0, results=0, timeouts=0),
    universes={"EURUSD_H1": universe(400, 31.5, None), "SYNTH_TREND_H1": universe(80, 6.0, 0.25)},
    backtests=BacktestFigures(inflight=3, sent=100, completed=99, timeouts=4, refused=0, resends=0, queued=6,
                              requeued=1, quarantined=0, workers_ready=2, workers_lost=0, free_credit=0),
    discord=DiscordFigures(delivered=5, failed=1, dropped=0, queued=0, rate_limited=0, coalesced=2, dry_run=False),
)


class Probe:
    """What the daemon would answer: the figures, the stale tasks and the DEGRADED reasons, changeable at will."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures
        self.stale: dict[str, float] = {}
        self.degraded: list[str] = []


Started = tuple[str, Probe]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Started]]]:
    """Start MetricsServers on free loopback ports; every one is closed at the end."""
    servers: list[MetricsServer] = []

    async def start(figures: Figures | None = None) -> Started:
        probe = Probe(figures or base_figures())
        port = free_port()
        server = MetricsServer(f"127.0.0.1:{port}", lambda: probe.figures, lambda: probe.stale,
                               lambda: probe.degraded)
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{port}", probe

    yield start
    for server in servers:
        await server.close()


async def get(url: str) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one GET."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.read()


async def scrape(base: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Each sample name of /metrics -> its (labels, value) pairs, as Prometheus would parse them."""
    status, _, body = await get(f"{base}/metrics")
    assert status == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    """The one value of an unlabelled series."""
    ((_, v),) = samples[name]
    return v


class TestHealthz:
    async def test_ok_while_every_task_makes_progress(self, serve: Callable[..., Awaitable[Started]]) -> None:
        """No stale task: 200 {"status": "ok"} as JSON, even when the daemon is DEGRADED (it is alive)."""
        base, probe = await serve()
        probe.degraded = ["no backtest worker connected"]
        status, content_type, body = await get(f"{base}/healthz")
        assert (status, orjson.loads(body)) == (200, {"status": "ok"})
        assert content_type.startswith("application/json")

    async def test_503_names_each_stale_task_and_recovers(self, serve: Callable[..., Awaitable[Started]]) -> None:
        """Stale tasks: 503 with one reason per task, sorted by name; read at each request, so it recovers."""
        base, probe = await serve()
        probe.stale = {"telemetry-writer": 7.54, "control": 12.0}
        status, _, body = await get(f"{base}/healthz")
        assert status == 503
        assert orjson.loads(body) == {"status": "unhealthy", "reasons": [
            "task control has made no progress for 12.0 s", "task telemetry-writer has made no progress for 7.5 s"]}
        probe.stale = {}
        assert (await get(f"{base}/healthz"))[0] == 200


class TestReadyz:
    async def test_ready_when_alive_and_not_degraded(self, serve: Callable[..., Awaitable[Started]]) -> None:
        """200 {"status": "ready"}."""
        base, _ = await serve()
        status, _, body = await get(f"{base}/readyz")
        assert (status, orjson.loads(body)) == (200, {"status": "ready"})

    async def test_not_ready_gives_the_stale_tasks_then_the_degraded_reasons(
        self, serve: Callable[..., Awaitable[Started]]
    ) -> None:
        """503 "not ready": the DEGRADED reasons (the words of `swimmy status`) after /healthz's own."""
        base, probe = await serve()
        probe.degraded = ["universe EURUSD_H1 paused: EURUSD_H1.csv:3: bad number"]
        status, _, body = await get(f"{base}/readyz")
        assert (status, orjson.loads(body)) == (503, {"status": "not ready", "reasons": probe.degraded})
        probe.stale = {"school": 9.0}
        _, _, body = await get(f"{base}/readyz")
        assert orjson.loads(body)["reasons"] == ["task school has made no progress for 9.0 s", *probe.degraded]


class TestMetrics:
    async def test_the_base_figures_in_prometheus_text_format(self, serve: Callable[..., Awaitable[Started]]) -> None:
        """Version 0.0.4 text; up, degraded, uptime, memory, loop lag in seconds, telemetry and worker figures."""
        base, _ = await serve()
        status, content_type, _ = await get(f"{base}/metrics")
        assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
        samples = await scrape(base)
        expected = {
            "swimmy_up": 1, "swimmy_degraded": 0, "swimmy_uptime_seconds": 12.5,
            "swimmy_resident_memory_bytes": 50_000_000, "swimmy_loop_lag_seconds": 0.003,
            "swimmy_telemetry_events_written_total": 10, "swimmy_telemetry_events_dropped_total": 2,
            "swimmy_telemetry_failed_writes_total": 1, "swimmy_telemetry_rotations_total": 0,
            "swimmy_telemetry_queue_depth": 4, "swimmy_telemetry_failing": 0,
            "swimmy_workers_alive": 1, "swimmy_workers_configured": 2,
        }
        assert {name: value(samples, name) for name in expected} == pytest.approx(expected)

    async def test_parts_that_do_not_run_have_no_series(self, serve: Callable[..., Awaitable[Started]]) -> None:
        """No heartbeats, peers, school, backtests or Discord in the figures: none of their series appear."""
        base, _ = await serve()
        names = set(await scrape(base))
        for absent in ("swimmy_heartbeats_sent_total", "swimmy_peers_silent", "swimmy_strategies",
                       "swimmy_oos_pending", "swimmy_wfv_pending", "swimmy_trials", "swimmy_backtests_inflight",
                       "swimmy_discord_delivered_total"):
            assert absent not in names

    async def test_every_part_with_labels_and_unknowns_as_nan(self, serve: Callable[..., Awaitable[Started]]) -> None:
        """Peers by source, strategies by rank, universes by name (a figure not known yet is left out); None is NaN."""
        base, _ = await serve(FULL)
        samples = await scrape(base)
        assert value(samples, "swimmy_degraded") == 1
        assert math.isnan(value(samples, "swimmy_resident_memory_bytes"))
        assert math.isnan(value(samples, "swimmy_heartbeat_rtt_seconds"))
        assert math.isnan(value(samples, "swimmy_oos_oldest_age_seconds"))
        assert value(samples, "swimmy_heartbeats_sent_total") == 7
        assert sorted(samples["swimmy_peer_last_seen_seconds"], key=str) == [
            ({"source": "worker-a"}, 1.5), ({"source": "worker-b"}, 30.0)]
        assert value(samples, "swimmy_peers_silent") == 1
        assert value(samples, "swimmy_peers_evicted_total") == 3
        assert {labels["rank"]: v for labels, v in samples["swimmy_strategies"]} == FULL.strategies
        assert (value(samples, "swimmy_oos_pending"), value(samples, "swimmy_wfv_pending")) == (2, 1)
        assert value(samples, "swimmy_wfv_oldest_age_seconds") == 42
        assert samples["swimmy_trials"] == [({"universe": "EURUSD_H1"}, 400), ({"universe": "SYNTH_TREND_H1"}, 80)]
        assert samples["swimmy_trials_effective"] == [({"universe": "EURUSD_H1"}, 31.5),
                                                      ({"universe": "SYNTH_TREND_H1"}, 6.0)]
        assert samples["swimmy_pbo"] == [({"universe": "SYNTH_TREND_H1"}, 0.25)]
        assert len(samples["swimmy_holdout_looks"]) == 2
        backtests = ("swimmy_backtests_inflight", "swimmy_backtests_completed_total", "swimmy_backtests_queued",
                     "swimmy_backtests_timeouts_total", "swimmy_backtests_requeued_total", "swimmy_workers_ready")
        assert [value(samples, name) for name in backtests] == [3, 99, 6, 4, 1, 2]
        assert (value(samples, "swimmy_discord_delivered_total"), value(samples, "swimmy_discord_failed_total"),
                value(samples, "swimmy_discord_coalesced_total")) == (5, 1, 2)

    async def test_each_scrape_reads_the_figures_afresh(self, serve: Callable[..., Awaitable[Started]]) -> None:
        """A figure that moves between two scrapes is seen moving."""
        base, probe = await serve()
        assert value(await scrape(base), "swimmy_telemetry_events_written_total") == 10
        probe.figures = base_figures(telemetry=replace(TELEMETRY, written=11))
        assert value(await scrape(base), "swimmy_telemetry_events_written_total") == 11


class TestLifecycle:
    async def test_a_taken_address_raises_oserror(self) -> None:
        """start() on a port another socket listens on raises OSError (the daemon names metrics.listen)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            server = MetricsServer(f"127.0.0.1:{port}", base_figures, dict)
            with pytest.raises(OSError):
                await server.start()
            await server.close()

    async def test_close_stops_serving_and_is_idempotent(self) -> None:
        """After close() nothing answers on the port; close() before start() and twice is harmless."""
        port = free_port()
        server = MetricsServer(f"127.0.0.1:{port}", base_figures, dict)
        await server.close()
        await server.start()
        assert (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
        await server.close()
        await server.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(f"http://127.0.0.1:{port}/healthz")

    async def test_an_ipv6_listen_address_in_brackets(self) -> None:
        """metrics.listen = "[::1]:PORT" serves on the IPv6 loopback."""
        with socket.socket(socket.AF_INET6) as probe:
            try:
                probe.bind(("::1", 0))
            except OSError as exc:
                pytest.skip(f"no IPv6 loopback here: {exc}")
            port = probe.getsockname()[1]
        server = MetricsServer(f"[::1]:{port}", base_figures, dict)
        await server.start()
        try:
            assert (await get(f"http://[::1]:{port}/healthz"))[0] == 200
        finally:
            await server.close()


class TestDeprecations:
    async def test_start_uses_no_deprecated_aiohttp_api(self) -> None:
        """start() runs with every warning an error: shutdown_timeout is the runner's (aiohttp >= 3.9), not the site's,
        whose argument a later release drops (and /metrics would not start)."""
        server = MetricsServer(f"127.0.0.1:{free_port()}", base_figures, dict)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                await server.start()
        finally:
            await server.close()
