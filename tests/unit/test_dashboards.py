"""Grafana dashboards and provisioning are valid, and every query names a metric that exists."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DS = {"type": "prometheus", "uid": "${datasource}"}

# Series Prometheus makes itself: per-target scrape figures and the alerts' state.
PROMETHEUS_BUILTINS = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s", "__range_ms"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset"}
PROMQL_KEYWORDS |= {"bool", "and", "or", "unless", "atan2", "inf", "nan"}


# Catalogue ------------------------------------------------------------------------------


@cache
def design_metrics() -> frozenset[str]:
    """Metric names fixed in docs/design.md, histograms expanded to their series."""
    section = DESIGN.read_text(encoding="utf-8").split("## Metric names", 1)[1]
    rows = re.findall(r"^\|\s*`(watchfloor_\w+)`(.*?)\|\s*(\w+)\s*\|(.*)$", section, re.M)
    names: set[str] = set()
    measures: list[str] = []
    for name, rest, kind, labels in rows:
        span = re.search(r"…\s*`(watchfloor_\w+)`", rest)
        if span:
            # "`watchfloor_cases_filed_total` … `watchfloor_patrols_completed_total`": one
            # counter per rolling measure listed above, first to last.
            first = name.removeprefix("watchfloor_").removesuffix("_total")
            last = span.group(1).removeprefix("watchfloor_").removesuffix("_total")
            run = measures[measures.index(first) : measures.index(last) + 1]
            assert run, f"cannot expand the range {name} … {span.group(1)}"
            names.update(f"watchfloor_{m}_total" for m in run)
            continue
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        measure = name.removeprefix("watchfloor_rolling_")
        # Flow measures have all-time counters; cohort numerators ("(cohort: ...") do not.
        if measure != name and "(cohort" not in labels:
            measures.append(measure)
    return frozenset(names)


@cache
def recorded_metrics() -> frozenset[str]:
    names: set[str] = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return frozenset(names)


def known_metrics() -> frozenset[str]:
    return design_metrics() | recorded_metrics() | PROMETHEUS_BUILTINS


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels and keywords left out)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[\w${}]+", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?", s):
        if m.group(2) or m.group(1).lower() in PROMQL_KEYWORDS:
            continue
        names.add(m.group(1))
    return names


def test_metric_name_extraction_sees_through_promql_syntax() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, topic) (rate(foo_seconds_bucket{topic=~"$topic",'
        'le!="+Inf"}[$__rate_interval]))) / on (job) group_left (version) bar:baz:max offset 7d '
        '> bool 1e9 unless count_values("v", qux) and time() - vector(0) or max(x) without (a)'
    )
    assert metric_names(expr) == {"foo_seconds_bucket", "bar:baz:max", "qux", "x"}


def test_catalogue_is_read_from_design_md() -> None:
    names = design_metrics()
    # Spot checks of each kind of row: plain, range-expanded counter, histogram series.
    assert "watchfloor_cohort_rectification_ratio" in names
    assert "watchfloor_hazards_found_total" in names
    assert "watchfloor_patrols_completed_total" in names
    assert "watchfloor_processing_latency_seconds_bucket" in names
    assert "watchfloor_ready" in names
    assert "watchfloor_not_a_metric" not in names
    assert len(names) > 50


def test_metric_catalogue_documents_every_design_metric() -> None:
    doc = METRICS_DOC.read_text(encoding="utf-8")
    histogram_series = re.compile(r"_(bucket|sum|count)$")
    missing = sorted(
        n
        for n in design_metrics()
        if f"`{n}`" not in doc
        and not (histogram_series.search(n) and f"`{histogram_series.sub('', n)}`" in doc)
    )
    assert not missing, f"docs/metrics.md does not describe: {missing}"


# Dashboards -----------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def all_panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    yield from walk(doc["panels"])


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_dashboards", GRAFANA / "generate_dashboards.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_dashboards_exist() -> None:
    uids = {load(p)["uid"] for p in DASHBOARDS}
    assert uids == {"watchfloor-command-centre", "watchfloor-pipeline-health"}


def test_dashboard_json_is_what_the_generator_writes() -> None:
    rendered: dict[str, str] = generator().render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text(encoding="utf-8") == rendered[path.name], (
            f"{path.name} differs from generate_dashboards.py: run "
            "`python deploy/grafana/generate_dashboards.py`"
        )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    doc = load(path)
    assert isinstance(doc["schemaVersion"], int) and doc["schemaVersion"] >= 36
    assert doc["title"] and re.fullmatch(r"[a-z0-9-]{1,40}", doc["uid"])
    assert "watchfloor" in doc["tags"]
    panels = list(all_panels(doc))
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        grid = p["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"}
        assert all(isinstance(v, int) for v in grid.values())
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] > 0 and grid["h"] > 0
        assert grid["x"] + grid["w"] <= 24, f"{p['title']!r} runs past the 24 columns"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        assert p["title"] and p.get("description"), f"panel {p['id']} needs a title and description"
        assert p["datasource"] == DS, f"{p['title']!r} does not use the datasource variable"
        assert p["targets"], f"{p['title']!r} has no query"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{p['title']!r} repeats a refId"
        for t in p["targets"]:
            assert t["datasource"] == DS, f"a target of {p['title']!r} has another datasource"
            assert t.get("expr", "").strip(), f"a target of {p['title']!r} has no expr"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_variables(path: Path) -> None:
    doc = load(path)
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"][0]
    assert ds["current"]["value"] == provisioned["uid"]
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == DS
            assert re.fullmatch(r"label_values\(.+,\s*\w+\)", v["definition"])
    defined = set(variables) | GRAFANA_BUILTINS
    for panel in all_panels(doc):
        texts = [panel.get("title", "")] + [t.get("expr", "") for t in panel.get("targets", [])]
        for text in texts:
            for name in re.findall(r"\$\{?(\w+)", text):
                assert name in defined, f"{panel['title']!r} uses undefined ${name}"


def test_command_centre_has_district_and_window_from_label_values() -> None:
    doc = load(GRAFANA / "dashboards" / "command-centre.json")
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["district"]["definition"].endswith(", district)")
    assert variables["district"]["multi"] and variables["district"]["includeAll"]
    assert variables["window"]["definition"].endswith(", window)")
    exprs = [t["expr"] for p in all_panels(doc) for t in p.get("targets", [])]
    assert any("offset 7d" in e for e in exprs), "no comparison with the week before"
    assert any("offset $window" in e for e in exprs), "no comparison with the period before"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_metric_is_in_the_catalogue_or_a_recording_rule(path: Path) -> None:
    doc = load(path)
    exprs = [t["expr"] for p in all_panels(doc) for t in p.get("targets", [])]
    for v in doc["templating"]["list"]:
        if v["type"] == "query":
            exprs.append(re.sub(r",\s*\w+\)$", ")", v["definition"]).removeprefix("label_values"))
    unknown = {
        (name, expr) for expr in exprs for name in metric_names(expr) if name not in known_metrics()
    }
    assert not unknown, f"metrics neither in docs/design.md nor recorded: {sorted(unknown)}"


def test_every_rule_reads_only_catalogue_metrics() -> None:
    unknown: set[str] = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                exprs = [rule["expr"]]
                # PromQL inside annotation templates: {{ with query (printf "...") }}
                for text in rule.get("annotations", {}).values():
                    for q in re.findall(r'query \(printf "((?:\\.|[^"\\])*)"', text):
                        exprs.append(q.replace('\\"', '"').replace("%s", "x"))
                for expr in exprs:
                    unknown.update(n for n in metric_names(expr) if n not in known_metrics())
    assert not unknown, f"rules read metrics missing from docs/design.md: {sorted(unknown)}"


def test_unknown_metric_is_caught() -> None:
    # The check above must be able to fail: a made-up name is not "known".
    assert "watchfloor_made_up_total" not in known_metrics()
    assert metric_names("rate(watchfloor_made_up_total[5m])") == {"watchfloor_made_up_total"}


# Provisioning ---------------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    doc = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy"
    assert ds["uid"] == generator().DATASOURCE_UID
    prometheus = yaml.safe_load(
        (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    )
    assert ds["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]


def test_dashboard_provisioning_points_at_the_dashboards_folder() -> None:
    doc = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "watchfloor.yml").read_text(encoding="utf-8")
    )
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    # Grafana reads the folder where deploy/grafana/dashboards is mounted; the README's
    # provisioning table is where that mount is documented.
    readme = (GRAFANA / "README.md").read_text(encoding="utf-8")
    assert f"| `dashboards/` | `{path}` |" in readme
    folder = GRAFANA / "dashboards"
    assert folder.is_dir() and sorted(folder.glob("*.json")) == DASHBOARDS and DASHBOARDS
    for mount_hint in re.findall(
        r"-v \$PWD/(\S+):(\S+?):ro",
        Path(GRAFANA / "provisioning" / "dashboards" / "watchfloor.yml").read_text(
            encoding="utf-8"
        ),
    ):
        assert (ROOT / mount_hint[0]).resolve() == folder.resolve()
        assert mount_hint[1] == path
