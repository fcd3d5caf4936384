"""Dashboards link districts to the command-centre page and alerts to their runbooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.centre import runbook_path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


def panels(name: str) -> list[dict[str, Any]]:
    return json.loads((DASHBOARDS / name).read_text())["panels"]  # type: ignore[no-any-return]


def links_of(p: dict[str, Any]) -> list[str]:
    urls = [link["url"] for link in p["fieldConfig"]["defaults"].get("links", [])]
    for o in p["fieldConfig"]["overrides"]:
        for prop in o["properties"]:
            if prop["id"] == "links":
                urls += [link["url"] for link in prop["value"]]
    return urls


def test_district_panels_link_to_the_page() -> None:
    linked = 0
    for p in panels("command-centre.json"):
        if p["type"] == "row":
            continue
        per_district = any("{{district}}" in t.get("legendFormat", "") for t in p["targets"])
        table_district = p["type"] == "table" and "District" in json.dumps(p["transformations"])
        if per_district or table_district:
            urls = links_of(p)
            assert any(u.startswith("${centre_url}#/district/") for u in urls), p["title"]
            assert any(u.startswith("${centre_url}#/overdue?district=") for u in urls), p["title"]
            linked += 1
    assert linked >= 5


def test_alert_tables_link_runbooks_that_exist() -> None:
    rules = (ROOT / "deploy" / "prometheus" / "rules" / "watchfloor-alerts.yml").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines()
              if line.strip().startswith("- alert:")]
    assert alerts and all(runbook_path(a) is not None for a in alerts), [
        a for a in alerts if runbook_path(a) is None]
    for name in ("command-centre.json", "pipeline-health.json"):
        tables = [p for p in panels(name) if p["title"].startswith("Firing alerts")]
        assert tables
        for p in tables:
            assert "${runbook_url}${__value.raw}" in links_of(p)


def test_link_bases_are_variables_nothing_points_outside() -> None:
    for path in DASHBOARDS.glob("*.json"):
        board = json.loads(path.read_text())
        names = {v["name"]: v for v in board["templating"]["list"]}
        assert names["centre_url"]["query"].endswith("/centre/")
        assert names["runbook_url"]["query"].endswith("/runbooks/")
        assert "github.com" not in path.read_text()
