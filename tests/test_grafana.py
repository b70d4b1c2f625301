"""deploy/grafana/swimmy.json stays in step with /metrics: each swimmy_* series it queries is one /metrics exports."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import REPO, free_port
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

DASHBOARD = REPO / "deploy" / "grafana" / "swimmy.json"
NAME = re.compile(r"\bswimmy_[a-z0-9_]+")
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def universe(pbo: float) -> UniverseFigures:
    return UniverseFigures(trials=400, n_eff=31.5, data_hash="h", usable=True, oos_looks=2, holdout_start_ts=1,
                           pbo=pbo, audited_at=1.0, sr0=0.1)


# Every optional section filled and every figure known, so every family the collector can build has samples.
FULL = Figures(
    run_id="r1", pid=7, version="1.0", config_hash="abc", uptime_sec=12.5, rss_bytes=50_000_000, loop_lag_ms=3.0,
    loop_stalls=0,
    telemetry=TelemetryFigures(written=10, dropped=2, failed_writes=1, queue_depth=4, rotations=1, failing=False,
                               fsync_errors=0, truncated=0),
    heartbeats=HeartbeatFigures(sent=7, send_failures=0, last_rtt_ms=2.0),
    peers=PeerFigures({"worker-a": 1.5, "worker-b": 30.0}, ["worker-b"], 3),
    backtests=BacktestFigures(inflight=3, sent=100, completed=99, timeouts=4, refused=0, resends=0, queued=6,
                              requeued=1, quarantined=1, workers_ready=2, workers_lost=0, free_credit=0),
    workers=WorkerFigures(configured=2, alive=1),
    strategies={"incubator": 5, "B": 2, "A": 1, "S": 0, "graveyard": 9},
    oos=OosFigures(pending=2, errors=1, oldest_age_sec=5.0, latency_p50_sec=1.0, requested=5, results=3),
    wfv=WfvFigures(pending=1, oldest_age_sec=42.0, results=0, timeouts=0),
    universes={"EURUSD_H1": universe(0.6), "SYNTH_TREND_H1": universe(0.25)},
    discord=DiscordFigures(delivered=5, failed=1, dropped=1, queued=2, rate_limited=0, coalesced=2, dry_run=False),
    status="DEGRADED", reasons=["x"], stale_tasks={},
)


def load() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD.read_text())
    assert isinstance(dashboard, dict)
    return dashboard


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL text of the dashboard: each target's expr and each templating query/definition."""
    texts = [target["expr"] for panel in all_panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        texts.append(query.get("query", "") if isinstance(query, dict) else query or "")
        texts.append(variable.get("definition", ""))
    return texts


def referenced(dashboard: dict[str, Any]) -> set[str]:
    return {name for text in queries(dashboard) for name in NAME.findall(text)}


async def exported() -> set[str]:
    """The sample names of /metrics, fetched over HTTP from a real MetricsServer over FULL."""
    port = free_port()
    server = MetricsServer(f"127.0.0.1:{port}", lambda: FULL, dict)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            body = await response.text()
    finally:
        await server.close()
    return {sample.name for family in text_string_to_metric_families(body) for sample in family.samples}


def test_valid_json_with_panels_each_with_targets() -> None:
    """Parses; has panels; every non-row panel has at least one target with a non-empty expr."""
    dashboard = load()
    panels = [p for p in all_panels(dashboard) if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_importable_shape() -> None:
    """A DS_PROMETHEUS input, and the instance variable from label_values(swimmy_up, instance)."""
    dashboard = load()
    assert [(i["name"], i["type"], i["pluginId"]) for i in dashboard["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")]
    assert dashboard["schemaVersion"] >= 36
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "instance"]
    assert variable["definition"] == "label_values(swimmy_up, instance)"


def test_every_datasource_is_the_prometheus_input() -> None:
    """No panel, target or variable names a data source other than ${DS_PROMETHEUS}."""
    dashboard = load()
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            assert panel.get("datasource") in (None, DATASOURCE), panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == DATASOURCE


def test_panel_ids_are_unique() -> None:
    ids = Counter(panel["id"] for panel in all_panels(load()))
    assert [i for i, n in ids.items() if n > 1] == []


def test_each_counter_is_queried_by_its_total_series() -> None:
    """A counter's family name without _total has no samples: the dashboard must use the _total name."""
    names = referenced(load())
    assert "swimmy_telemetry_events_written_total" in names
    assert "swimmy_telemetry_events_written" not in names


async def test_every_queried_series_is_exported() -> None:
    """Each swimmy_* name in an expr or the templating is a sample name of /metrics."""
    names = referenced(load())
    samples = await exported()
    assert len(names) >= 30  # the regex found the dashboard's series, not nothing
    assert sorted(names - samples) == []


async def test_the_comparison_catches_an_unknown_series() -> None:
    """A made-up series is found by the regex and is not exported: the check above can fail."""
    samples = await exported()
    assert NAME.findall('rate(swimmy_no_such_series_total{instance=~"$instance"}[5m])') == [
        "swimmy_no_such_series_total"]
    assert "swimmy_no_such_series" not in samples
    assert "swimmy_no_such_series_total" not in samples
    assert {"swimmy_up", "swimmy_pbo", "swimmy_backtests_completed_total"} <= samples


@pytest.mark.parametrize("path", [DASHBOARD, DASHBOARD.with_name("README.md")])
def test_files_exist(path: Path) -> None:
    assert path.is_file()
