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
from test_metrics_http import FULL  # every optional section filled: every family the collector builds

from swimmy.ops.metrics_http import MetricsServer

DASHBOARD = REPO / "deploy" / "grafana" / "swimmy.json"
NAME = re.compile(r"\bswimmy_[a-z0-9_]+")
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


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
