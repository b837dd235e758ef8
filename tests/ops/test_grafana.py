"""Grafana dashboards and provisioning: JSON parses, wired to the provisioned datasource,
queries only metrics the code exports (or a scrape job in prometheus.yml provides)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ops import OPS, dashboard_queries, exported_metric_names, metrics_in_query, unknown_metrics

GRAFANA = OPS / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
REQUIRED = {"stagedoor-queue", "stagedoor-shop", "stagedoor-latency", "stagedoor-dependencies"}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    uids = [_load(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))
    assert REQUIRED <= set(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_wired_to_the_provisioned_datasource(path: Path) -> None:
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = _load(path)
    assert dashboard["title"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid and target["expr"].strip()
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_only_exported_metrics(path: Path) -> None:
    queries = dashboard_queries(_load(path))
    assert all(metrics_in_query(q) for q in queries), "a query selecting no metric is a parser or panel bug"
    assert unknown_metrics(queries, exported_metric_names()) == {}


def test_provisioning_points_at_the_mounted_dashboards() -> None:
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "stagedoor.yml").read_text())
    compose = yaml.safe_load((OPS.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    path = providers["providers"][0]["options"]["path"]
    assert f"./ops/grafana/dashboards:{path}:ro" in mounts
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
