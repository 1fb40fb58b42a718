"""deploy/grafana: every dashboard is valid JSON with unique panel ids, sane grid positions,
every panel and query on the `${datasource}` template variable, and every metric its queries
use one wardwatch really exports (or a recording rule of deploy/prometheus defines)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.known_metrics import ROOT, promql_metric_names

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE = "${datasource}"
LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,")


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))   # panels inside a collapsed row
    return out


def test_the_five_dashboards_are_there() -> None:
    assert {p.stem for p in DASHBOARDS} == {
        "fleet-overview", "system-availability", "host-detail", "middleware", "databases"}
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_well_formed(path: Path) -> None:
    board = load(path)
    assert board["title"].startswith("wardwatch / ")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    found = panels(board)
    assert len(found) >= 5
    ids = [p["id"] for p in found]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for panel in found:
        where = f"{path.name} panel {panel['id']} {panel.get('title')!r}"
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] >= 0 and grid["y"] >= 0, where
        assert grid["x"] + grid["w"] <= 24, where
        assert panel["datasource"]["uid"] == DATASOURCE, where
        if panel["type"] == "row":
            continue
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, where
            assert target["expr"].strip(), where
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE, variable["name"]
    # panels do not overlap
    cells: dict[tuple[int, int], int] = {}
    for panel in found:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{path.name}: panels {cells[(x, y)]} and " \
                                            f"{panel['id']} overlap at {(x, y)}"
                cells[(x, y)] = panel["id"]
    # every variable a query uses is defined
    used = {m for p in found for t in p.get("targets", [])
            for m in re.findall(r"\$\{?(\w+)", t["expr"])}
    assert used - {"__rate_interval", "__interval", "__range"} <= set(variables), path.name


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_metric_in_the_dashboards_is_exported(
        path: Path, known_metrics: frozenset[str]) -> None:
    board = load(path)
    used: set[str] = set()
    for panel in panels(board):
        for target in panel.get("targets", []):
            used |= promql_metric_names(target["expr"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            used |= set(LABEL_VALUES.findall(variable["definition"]))
    assert used, path.name
    assert sorted(used - known_metrics) == [], path.name


def test_provisioning_files() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "wardwatch.yml").read_text())
    assert datasources["apiVersion"] == 1
    assert datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "wardwatch.yml").read_text())
    assert providers["apiVersion"] == 1
    assert providers["providers"][0]["type"] == "file"
    assert providers["providers"][0]["options"]["path"]
