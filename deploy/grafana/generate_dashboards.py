"""Writes Watchfloor's Grafana dashboards (deploy/grafana/dashboards/*.json) from one definition."""

# ruff: noqa: E501  (PromQL expressions and panel descriptions read better unbroken)

# The JSON files are what Grafana loads and what is committed; this script is how they
# are changed, so that panel ids, grid positions and datasource references stay
# consistent. After an edit: `python deploy/grafana/generate_dashboards.py`; the unit test
# tests/unit/test_dashboards.py fails while the JSON and this script disagree.

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"

SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x
# Every panel and target names the datasource through the dashboard's `datasource`
# variable, whose default is the provisioned datasource (uid below): the dashboards work
# as provisioned and can be imported into a Grafana whose Prometheus has another uid.
DATASOURCE_UID = "watchfloor-prometheus"
DS: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
# Where people's browsers find the command-centre page and the runbooks. Both default to
# a worker (it serves /centre/ and /runbooks/); an air-gapped centre points them at its
# own copies with --centre-url and --runbook-url, or edits the two dashboard variables.
LINKS: dict[str, str] = {
    "centre_url": "http://localhost:6066/centre/",
    "runbook_url": "http://localhost:6066/runbooks/",
}
DISTRICT_LINKS: list[dict[str, Any]] = [
    {"title": "District drill-down (command centre)",
     "url": "${centre_url}#/district/${__field.labels.district}", "targetBlank": True},
    {"title": "Overdue list of the district (督办清单)",
     "url": "${centre_url}#/overdue?district=${__field.labels.district}", "targetBlank": True},
]

Json = dict[str, Any]


# Building blocks ---------------------------------------------------------------------


def target(
    expr: str,
    legend: str = "__auto",
    *,
    ref: str = "",
    instant: bool = False,
    table: bool = False,
) -> Json:
    t: Json = {
        "datasource": dict(DS),
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if table:
        t["format"] = "table"
    return t


def thresholds(*steps: tuple[str, float | None]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in steps],
    }


GREEN_RED_AT_1 = thresholds(("green", None), ("red", 1))
RATE_TARGET = thresholds(("red", None), ("orange", 0.8), ("green", 0.9))


def panel(
    kind: str,
    title: str,
    targets: list[Json],
    *,
    w: int,
    h: int,
    description: str,
    unit: str | None = None,
    decimals: int | None = None,
    steps: Json | None = None,
    options: Json | None = None,
    custom: Json | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    mappings: list[Json] | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
    links: list[Json] | None = None,
) -> Json:
    for i, t in enumerate(targets):
        t["refId"] = t["refId"] or chr(ord("A") + i)
    defaults: Json = {
        "color": {"mode": "palette-classic" if kind == "timeseries" else "thresholds"}
    }
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    defaults["thresholds"] = steps or thresholds(("green", None))
    if custom:
        defaults["custom"] = custom
    if mappings:
        defaults["mappings"] = mappings
    if links is None and kind in ("bargauge", "timeseries") and any(
        str(t.get("legendFormat", "")).startswith("{{district}}") for t in targets
    ):
        links = DISTRICT_LINKS
    if links:
        defaults["links"] = links
    p: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(DS),
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": targets,
    }
    if transformations:
        p["transformations"] = transformations
    return p


def stat(title: str, expr: str, *, description: str, w: int = 4, h: int = 4, **kw: Any) -> Json:
    return panel(
        "stat",
        title,
        [target(expr, instant=True)],
        w=w,
        h=h,
        description=description,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value",
            "justifyMode": "center",
            "orientation": "auto",
        },
        **kw,
    )


def timeseries(
    title: str, targets: list[Json], *, description: str, w: int = 12, h: int = 8, **kw: Any
) -> Json:
    kw.setdefault(
        "custom",
        {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 0,
            "showPoints": "never",
            "spanNulls": False,
        },
    )
    return panel(
        "timeseries",
        title,
        targets,
        w=w,
        h=h,
        description=description,
        options={
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull", "max"],
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        **kw,
    )


def bargauge(
    title: str,
    expr: str,
    *,
    description: str,
    legend: str = "{{district}}",
    w: int = 12,
    h: int = 8,
    **kw: Any,
) -> Json:
    return panel(
        "bargauge",
        title,
        [target(expr, legend, instant=True)],
        w=w,
        h=h,
        description=description,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "basic",
            "showUnfilled": True,
            "valueMode": "color",
            "namePlacement": "left",
            "minVizHeight": 16,
            "maxVizHeight": 24,
        },
        **kw,
    )


def table(
    title: str,
    targets: list[Json],
    *,
    description: str,
    rename: dict[str, str],
    exclude: tuple[str, ...] = ("Time",),
    sort_by: tuple[str, bool] | None = None,
    overrides: list[Json] | None = None,
    w: int = 24,
    h: int = 9,
    **kw: Any,
) -> Json:
    transformations: list[Json] = []
    if len(targets) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append(
        {
            "id": "organize",
            "options": {
                "excludeByName": {name: True for name in exclude},
                "renameByName": rename,
                "indexByName": {name: i for i, name in enumerate(rename)},
            },
        }
    )
    options: Json = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "fields": ""},
    }
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by[0], "desc": sort_by[1]}]
    if "District" in rename.values():
        overrides = [*(overrides or []), column("District", ("links", [
            {"title": "District drill-down (command centre)",
             "url": "${centre_url}#/district/${__value.raw}", "targetBlank": True},
            {"title": "Overdue list of the district (督办清单)",
             "url": "${centre_url}#/overdue?district=${__value.raw}", "targetBlank": True},
        ]))]
    return panel(
        "table",
        title,
        targets,
        w=w,
        h=h,
        description=description,
        options=options,
        overrides=overrides,
        transformations=transformations,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
        **kw,
    )


def column(name: str, *props: tuple[str, Any]) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k, "value": v} for k, v in props],
    }


def colour_cells(steps: Json) -> tuple[tuple[str, Any], tuple[str, Any]]:
    return ("custom.cellOptions", {"type": "color-background", "mode": "basic"}), (
        "thresholds",
        steps,
    )


def dashed(regex: str) -> Json:
    return {
        "matcher": {"id": "byRegexp", "options": regex},
        "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
    }


def row(title: str) -> Json:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"w": 24, "h": 1},
    }


def query_variable(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool,
    include_all: bool,
    description: str,
    default: str | None = None,
) -> Json:
    v: Json = {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": dict(DS),
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,  # on time-range change: districts and topics come and go
        "regex": "",
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "hide": 0,
        "options": [],
    }
    if include_all:
        # An explicit ".*" keeps the query short instead of listing every value.
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    elif default:
        v["current"] = {"selected": True, "text": default, "value": default}
    return v


def link_variables() -> list[Json]:
    """The two base URLs of links, as text boxes an operator can change."""
    described = {
        "centre_url": ("Command centre", "Base URL of the command-centre page (a worker's "
                       "/centre/, or your own copy); district links open its drill-down."),
        "runbook_url": ("Runbooks", "Base URL of the runbooks (a worker's /runbooks/, or "
                        "your own copy); alert names are appended."),
    }
    return [
        {
            "name": name,
            "label": label,
            "description": text,
            "type": "textbox",
            "query": LINKS[name],
            "current": {"selected": False, "text": LINKS[name], "value": LINKS[name]},
            "options": [{"selected": True, "text": LINKS[name], "value": LINKS[name]}],
            "hide": 2,
        }
        for name, (label, text) in described.items()
    ]


DATASOURCE_VARIABLE: Json = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {"selected": False, "text": "Watchfloor Prometheus", "value": DATASOURCE_UID},
    "hide": 0,
    "refresh": 1,
    "regex": "",
    "options": [],
}


def layout(panels: list[Json]) -> list[Json]:
    """Give panels ids and grid positions: left to right, wrapping at 24 columns."""
    x = y = row_height = 0
    for pid, p in enumerate(panels, start=1):
        p["id"] = pid
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24 or p["type"] == "row":
            x, y = 0, y + row_height
            row_height = 0
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        row_height = max(row_height, h)
        if p["type"] == "row":
            x, y, row_height = 0, y + h, 0
    return panels


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[Json],
    panels: list[Json],
    *,
    refresh: str,
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["watchfloor"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {
                "type": "dashboards",
                "title": "Watchfloor",
                "tags": ["watchfloor"],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": [DATASOURCE_VARIABLE, *variables, *link_variables()]},
        "panels": layout(panels),
    }


# Command centre ------------------------------------------------------------------------

D = 'district=~"$district"'
DW = 'window="$window",district=~"$district"'


def firing_alerts_table(team: str, columns: dict[str, str], description: str, h: int = 6) -> Json:
    runbook = column("Alert", ("links", [
        {"title": "Runbook", "url": "${runbook_url}${__value.raw}", "targetBlank": True}
    ]))
    return table(
        "Firing alerts" + (" (operators)" if team == "operators" else " (on-call)"),
        [target(f'ALERTS{{alertstate="firing",team="{team}"}}', instant=True, table=True)],
        description=description,
        rename=columns,
        exclude=("Time", "Value", "__name__", "alertstate", "team"),
        sort_by=("Severity", False),
        overrides=[runbook],
        h=h,
    )


def command_centre() -> Json:
    ranking_rename = {
        "district": "District",
        "Value #A": "Rectification rate",
        "Value #B": "Hazards found",
        "Value #C": "Of those, rectified",
        "Value #D": "Rate, found 7-35 d ago",
        "Value #E": "Overdue hazards",
        "Value #F": "Overdue major",
        "Value #G": "Clearance rate",
        "Value #H": "Dispute resolution",
        "Value #I": "Open disputes",
    }
    comparison_rename = {
        "district": "District",
        "Value #A": "Cases filed",
        "Value #B": "Cases, period before",
        "Value #C": "Disputes reported",
        "Value #D": "Disputes, period before",
        "Value #E": "Hazards found",
        "Value #F": "Hazards, period before",
        "Value #G": "Rectification rate",
        "Value #H": "Rate, period before",
    }
    percent = ("unit", "percentunit")
    panels: list[Json] = [
        row("Now"),
        stat(
            "Overdue major hazards (挂牌督办)",
            f"sum(district:watchfloor_overdue_major_hazards:max{{{D}}}) or vector(0)",
            description="Hazards under listed supervision that are past their deadline and not rectified, in the selected districts. Each one paged once (WatchfloorOverdueMajorHazard) when its deadline passed; this is the standing count, to be worked down.",
            steps=GREEN_RED_AT_1,
        ),
        stat(
            "Overdue hazards",
            f"sum(district:watchfloor_overdue_hazards:max{{{D}}}) or vector(0)",
            description="All hazards past their deadline and not rectified, in the selected districts.",
            steps=thresholds(("green", None), ("orange", 1), ("red", 10)),
        ),
        stat(
            "Rectification rate, city ($window)",
            'window:watchfloor_cohort_rectification_ratio:city{window="$window"}',
            description="整改率, a cohort: of all hazards found in the window (every district), the share rectified now: total rectified over total found, not an average of district rates. Short windows hold hazards not due yet.",
            unit="percentunit",
            decimals=1,
            steps=RATE_TARGET,
        ),
        stat(
            "Clearance rate, city ($window)",
            'window:watchfloor_cohort_clearance_ratio:city{window="$window"}',
            description="结案率, a cohort: of the cases filed in the window (every district), the share cleared now. Cases cleared in the window whatever their filing date are a count (the trends), not this rate.",
            unit="percentunit",
            decimals=1,
        ),
        stat(
            "Dispute resolution, city ($window)",
            'window:watchfloor_cohort_dispute_resolution_ratio:city{window="$window"}',
            description="化解率, a cohort: of the disputes reported in the window (every district), the share resolved now (escalated ones are not resolved).",
            unit="percentunit",
            decimals=1,
            steps=RATE_TARGET,
        ),
        stat(
            "Districts with no patrol for 12 h",
            f"count((time() - district:watchfloor_last_patrol_timestamp_seconds:max{{{D}}}) > 12 * 3600) or vector(0)",
            description="Selected districts whose last completed patrol ended more than 12 hours ago.",
            steps=GREEN_RED_AT_1,
        ),
        firing_alerts_table(
            "operators",
            {
                "alertname": "Alert",
                "district": "District",
                "severity": "Severity",
                "page": "Pages",
            },
            "Operator alerts firing now (Prometheus' ALERTS series). 'once' marks an alert about an event (a deadline passed, a line crossed) that ends by itself; the standing lists are below. Each alert's name links to its runbook (base URL: the hidden runbook_url variable).",
        ),
        row("District ranking"),
        table(
            "District ranking ($window): lowest rectification rate first",
            [
                target(
                    f"district_window:watchfloor_cohort_rectification_ratio:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_rolling_hazards_found:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_rolling_hazards_found_rectified:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district:watchfloor_matured_cohort_rectification_ratio:max{{{D}}}",
                    instant=True,
                    table=True,
                ),
                target(f"district:watchfloor_overdue_hazards:max{{{D}}}", instant=True, table=True),
                target(
                    f"district:watchfloor_overdue_major_hazards:max{{{D}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_cohort_clearance_ratio:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_cohort_dispute_resolution_ratio:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(f"district:watchfloor_open_disputes:max{{{D}}}", instant=True, table=True),
            ],
            description=(
                "The daily bulletin's table. Every rate is a cohort: of what was found (filed, reported) in the "
                "window, the share closed now (整改率, 结案率, 化解率). 'Rate, found 7-35 d ago' is the rectification "
                "rate of hazards old enough to be past most deadlines, the fairer figure for ranking and the one "
                "WatchfloorRectificationRateLow reads. An empty rate means nothing was found or filed in the window."
            ),
            rename=ranking_rename,
            exclude=("Time", "window"),
            sort_by=("Rectification rate", False),
            overrides=[
                column("Rectification rate", percent, *colour_cells(RATE_TARGET)),
                column("Rate, found 7-28 d ago", percent, *colour_cells(RATE_TARGET)),
                column("Clearance rate", percent),
                column("Dispute resolution", percent),
                column(
                    "Overdue hazards",
                    *colour_cells(thresholds(("transparent", None), ("orange", 1), ("red", 10))),
                ),
                column(
                    "Overdue major", *colour_cells(thresholds(("transparent", None), ("red", 1)))
                ),
            ],
            h=10,
        ),
        row("Overdue hazards"),
        table(
            "Overdue hazards by district and category",
            [
                target(
                    f"sort_desc(district_category:watchfloor_overdue_hazards_by_category:max{{{D}}})",
                    instant=True,
                    table=True,
                )
            ],
            description="Every district and hazard category with at least one hazard past its deadline and not rectified.",
            rename={"district": "District", "category": "Category", "Value": "Overdue"},
            sort_by=("Overdue", True),
            w=12,
            h=9,
        ),
        bargauge(
            "Overdue hazards by district",
            f"sort_desc(district:watchfloor_overdue_hazards:max{{{D}}})",
            description="Hazards past their deadline and not rectified, per district.",
            steps=thresholds(("green", None), ("orange", 1), ("red", 10)),
            w=12,
            h=9,
        ),
        timeseries(
            "Overdue hazards over time",
            [
                target(f"district:watchfloor_overdue_hazards:max{{{D}}}", "{{district}}"),
                target(
                    f"district:watchfloor_overdue_major_hazards:max{{{D}}}", "{{district}} major"
                ),
            ],
            description="Overdue hazards per district (solid) and the major ones among them. A line that climbs is a district falling behind.",
            overrides=[dashed(".* major$")],
            decimals=0,
        ),
        table(
            "Open hazards by category",
            [
                target(
                    f"sort_desc(sum by (category) (district_category:watchfloor_open_hazards_by_category:max{{{D}}}))",
                    instant=True,
                    table=True,
                )
            ],
            description="Hazards found and not yet rectified (overdue or not), per category, over the selected districts.",
            rename={"category": "Category", "Value": "Open"},
            sort_by=("Open", True),
            w=12,
            h=8,
        ),
        row("Trends"),
        timeseries(
            "Cases filed in the last 24 h, against the week before",
            [
                target(
                    f'district_window:watchfloor_rolling_cases_filed:max{{window="24h",{D}}}',
                    "{{district}}",
                ),
                target(
                    f'district_window:watchfloor_rolling_cases_filed:max{{window="24h",{D}}} offset 7d',
                    "{{district}} week before",
                ),
            ],
            description="Cases filed in the 24 hours up to each point (solid) and the same a week earlier (dashed).",
            overrides=[dashed(".* week before$")],
            decimals=0,
        ),
        timeseries(
            "Case surge score (Poisson z)",
            [target(f"district:watchfloor_cases_filed:surge_zscore{{{D}}}", "{{district}}")],
            description=(
                "2*(sqrt(cases in the last 24 h) - sqrt(the worker's daily average of up to 28 days before)). About "
                "-2..2 on an ordinary day whatever the district's size; above 3 (the red line) raises "
                "WatchfloorCaseSurge. No line for a district with under 7 days of history."
            ),
            decimals=1,
            steps=thresholds(("transparent", None), ("red", 3)),
            custom={
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 0,
                "showPoints": "never",
                "spanNulls": False,
                "thresholdsStyle": {"mode": "line"},
            },
        ),
        timeseries(
            "Disputes in the last 24 h",
            [
                target(
                    f'sum(district_window:watchfloor_rolling_disputes_reported:max{{window="24h",{D}}})',
                    "reported",
                ),
                target(
                    f'sum(district_window:watchfloor_rolling_disputes_resolved:max{{window="24h",{D}}})',
                    "resolved",
                ),
                target(
                    f'sum(district_window:watchfloor_rolling_disputes_escalated:max{{window="24h",{D}}})',
                    "escalated",
                ),
                target(
                    f'sum(district_window:watchfloor_rolling_disputes_reported:max{{window="24h",{D}}} offset 7d)',
                    "reported, week before",
                ),
            ],
            description="Disputes reported, resolved and escalated in the 24 hours up to each point, over the selected districts; dashed: reported a week earlier.",
            overrides=[dashed(".*week before$")],
            decimals=0,
        ),
        timeseries(
            "Hazards in the last 24 h",
            [
                target(
                    f'sum(district_window:watchfloor_rolling_hazards_found:max{{window="24h",{D}}})',
                    "found",
                ),
                target(
                    f'sum(district_window:watchfloor_rolling_hazards_rectified:max{{window="24h",{D}}})',
                    "rectified",
                ),
                target(
                    f'sum(district_window:watchfloor_rolling_hazards_found:max{{window="24h",{D}}} offset 7d)',
                    "found, week before",
                ),
            ],
            description="Hazards found and rectified in the 24 hours up to each point ('one down, one up': fewer found, more rectified); dashed: found a week earlier.",
            overrides=[dashed(".*week before$")],
            decimals=0,
        ),
        row("Against the period before"),
        table(
            "This $window against the $window before",
            [
                target(
                    f"district_window:watchfloor_rolling_cases_filed:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_rolling_cases_filed:max{{{DW}}} offset $window",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_rolling_disputes_reported:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_rolling_disputes_reported:max{{{DW}}} offset $window",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_rolling_hazards_found:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_rolling_hazards_found:max{{{DW}}} offset $window",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_cohort_rectification_ratio:max{{{DW}}}",
                    instant=True,
                    table=True,
                ),
                target(
                    f"district_window:watchfloor_cohort_rectification_ratio:max{{{DW}}} offset $window",
                    instant=True,
                    table=True,
                ),
            ],
            description=(
                "Counts in the current window next to the window just before it (offset by its own length). "
                "Counts, not % change: on small counts a % change swings wildly (2 to 4 cases is +100 %). "
                "Empty 'before' columns mean Prometheus has no data that old yet."
            ),
            rename=comparison_rename,
            exclude=("Time", "window"),
            sort_by=("District", False),
            overrides=[
                column("Rectification rate", percent),
                column("Rate, period before", percent),
            ],
        ),
        timeseries(
            "Rectification rate of hazards found 7-35 days ago, against four weeks before",
            [
                target(
                    f"district:watchfloor_matured_cohort_rectification_ratio:max{{{D}}}",
                    "{{district}}",
                ),
                target(
                    f"district:watchfloor_matured_cohort_rectification_ratio:max{{{D}}} offset 28d",
                    "{{district}} 4 weeks before",
                ),
            ],
            description="The matured-cohort rectification rate per district (solid) and the same four weeks earlier (dashed). Below 80 % with 50 or more hazards for an hour raises WatchfloorRectificationRateLow.",
            unit="percentunit",
            min_value=0,
            max_value=1,
            overrides=[dashed(".* 4 weeks before$")],
            w=24,
        ),
        row("Patrols and disputes"),
        bargauge(
            "Time since the last completed patrol",
            f"sort_desc(time() - district:watchfloor_last_patrol_timestamp_seconds:max{{{D}}})",
            description="How long ago each district's last completed patrol ended. Red from 12 hours (WatchfloorPatrolGap).",
            unit="s",
            steps=thresholds(("green", None), ("orange", 8 * 3600), ("red", 12 * 3600)),
        ),
        bargauge(
            "Patrols completed ($window)",
            f"sort(district_window:watchfloor_rolling_patrols_completed:max{{{DW}}})",
            description="Completed patrol runs per district in the window, fewest first.",
            decimals=0,
        ),
        bargauge(
            "Oldest open dispute",
            f"sort_desc(district:watchfloor_oldest_open_dispute_age_seconds:max{{{D}}})",
            description="Age of each district's oldest dispute still open (not resolved or escalated). Red from 30 days: each dispute reaching 30 days pages once (WatchfloorDisputeOpenTooLong).",
            unit="s",
            steps=thresholds(("green", None), ("orange", 14 * 86400), ("red", 30 * 86400)),
        ),
        timeseries(
            "Open cases and disputes",
            [
                target(f"sum(district:watchfloor_open_cases:max{{{D}}})", "open cases"),
                target(f"sum(district:watchfloor_open_disputes:max{{{D}}})", "open disputes"),
                target(f"sum(district:watchfloor_open_hazards:max{{{D}}})", "open hazards"),
            ],
            description="Cases filed and not cleared, disputes reported and not closed, hazards found and not rectified, over the selected districts.",
            decimals=0,
        ),
        *work_safety_row(),
    ]
    return dashboard(
        "watchfloor-command-centre",
        "Watchfloor: command centre",
        "Per-district public-safety figures for command-centre operators: ranking, overdue hazards, trends, patrols.",
        [
            query_variable(
                "district",
                "District",
                "label_values(watchfloor_open_hazards, district)",
                multi=True,
                include_all=True,
                description="Districts currently exported by the workers.",
            ),
            query_variable(
                "window",
                "Window",
                "label_values(watchfloor_rolling_cases_filed, window)",
                multi=False,
                include_all=False,
                default="24h",
                description="Rolling window of the ranking and the rates: 1h, 24h, 7d or 28d.",
            ),
        ],
        panels,
        refresh="1m",
    )


YTD = 'period="year_to_date"'
LAST_YEAR = 'period="same_period_last_year"'
TARGET_USED = thresholds(("green", None), ("orange", 0.8), ("red", 1))


def work_safety_row() -> list[Json]:
    """The four indicators (四项指标) year on year, and the death control target's use."""
    indicators = (
        ("accidents", "Accidents"),
        ("deaths", "Deaths"),
        ("serious_injuries", "Serious injuries"),
        ("direct_loss_yuan", "Direct loss"),
    )
    rename = {"district": "District"}
    targets: list[Json] = []
    for i, (stem, name) in enumerate(indicators):
        metric = f"district_period:watchfloor_work_safety_{stem}:max"
        rename[f"Value #{chr(ord('A') + 2 * i)}"] = name
        rename[f"Value #{chr(ord('B') + 2 * i)}"] = f"{name}, last year"
        for period in (YTD, LAST_YEAR):
            targets.append(
                target(f"max without (period) ({metric}{{{period},{D}}})", instant=True, table=True)
            )
    rename["Value #I"] = "Death target"
    rename["Value #J"] = "Target used"
    targets.append(
        target(f"district:watchfloor_work_safety_deaths_target:max{{{D}}}", instant=True, table=True)
    )
    targets.append(
        target(
            f"district:watchfloor_work_safety_deaths_target:used_ratio{{{D}}}",
            instant=True,
            table=True,
        )
    )
    yuan = ("unit", "currencyCNY")
    return [
        row("Work safety (四项指标)"),
        stat(
            "Work-safety deaths this year, city",
            f"sum(district_period:watchfloor_work_safety_deaths:max{{{YTD}}}) or vector(0)",
            description="Deaths in work-safety accidents from 1 January to the end of today, every district (by each accident's own time; revisions included).",
            decimals=0,
        ),
        stat(
            "Same dates last year, city",
            f"sum(district_period:watchfloor_work_safety_deaths:max{{{LAST_YEAR}}}) or vector(0)",
            description="Deaths in work-safety accidents over the same dates a year earlier, every district.",
            decimals=0,
        ),
        stat(
            "City death target (死亡人数控制指标)",
            "city:watchfloor_city_work_safety_deaths_target:max",
            description="This year's control target on work-safety deaths for the city, from the reference data (seeds/reference/city.json, work_safety).",
            decimals=0,
        ),
        stat(
            "City death target used",
            "city:watchfloor_work_safety_deaths_target:used_ratio",
            description="The city's deaths this year over its control target. Orange from 80 %, red when overrun.",
            unit="percentunit",
            decimals=1,
            steps=TARGET_USED,
        ),
        stat(
            "Accidents this year, city",
            f"sum(district_period:watchfloor_work_safety_accidents:max{{{YTD}}}) or vector(0)",
            description="Work-safety accidents from 1 January to the end of today, every district.",
            decimals=0,
        ),
        stat(
            "Direct loss this year, city",
            f"sum(district_period:watchfloor_work_safety_direct_loss_yuan:max{{{YTD}}}) or vector(0)",
            description="Direct economic loss of this year's work-safety accidents, every district, in yuan.",
            unit="currencyCNY",
        ),
        table(
            "The four indicators: this year against the same dates last year",
            targets,
            description=(
                "Accidents, deaths, serious injuries and direct economic loss (四项指标) from 1 January to the end "
                "of today, each beside the same dates last year; and each district's death control target and "
                "the share of it used. A district reaching the reference data's alert share of its target pages "
                "once (WatchfloorDeathTargetShareReached)."
            ),
            rename=rename,
            exclude=("Time",),
            sort_by=("Target used", True),
            overrides=[
                column("Direct loss", yuan),
                column("Direct loss, last year", yuan),
                column("Target used", percent_unit(), *colour_cells(TARGET_USED)),
            ],
            w=16,
        ),
        bargauge(
            "Death target used, per district",
            f"sort_desc(district:watchfloor_work_safety_deaths_target:used_ratio{{{D}}})",
            description="Each district's work-safety deaths this year over its control target. Orange from 80 %, red when overrun.",
            unit="percentunit",
            steps=TARGET_USED,
            min_value=0,
            max_value=1,
            w=8,
            h=9,
        ),
    ]


def percent_unit() -> tuple[str, Any]:
    return ("unit", "percentunit")


# Pipeline health -----------------------------------------------------------------------

INST = 'instance=~"$instance"'
INST_TOPIC = 'instance=~"$instance",topic=~"$topic"'


def pipeline_health() -> Json:
    ready_mappings = [
        {
            "type": "value",
            "options": {
                "0": {"text": "not ready", "color": "red", "index": 0},
                "1": {"text": "ready", "color": "green", "index": 1},
            },
        }
    ]
    panels: list[Json] = [
        row("Workers"),
        stat(
            "Workers up",
            'sum(up{job="watchfloor"}) or vector(0)',
            description="Workers Prometheus scraped successfully at the last attempt.",
            steps=thresholds(("red", None), ("green", 1)),
        ),
        stat(
            "Workers ready",
            "sum(watchfloor_ready) or vector(0)",
            description="Workers serving correct figures (tables recovered, partitions assigned).",
            steps=thresholds(("red", None), ("green", 1)),
        ),
        stat(
            "Recovering",
            "sum(watchfloor_recovery_in_progress) or vector(0)",
            description="Workers rebuilding their tables from the changelog now.",
            steps=thresholds(("green", None), ("orange", 1)),
        ),
        stat(
            "Assigned partitions",
            "sum(watchfloor_assigned_partitions) or vector(0)",
            description="District partitions assigned over all workers (partition n of the three co-partitioned source topics counts once); should equal WATCHFLOOR_PARTITIONS.",
        ),
        stat(
            "Owned districts",
            "sum(watchfloor_owned_districts) or vector(0)",
            description="Districts counted over all workers; should equal the districts in the reference data.",
        ),
        stat(
            "Dead letters lost (1 h)",
            "sum(increase(watchfloor_dead_letter_errors_total[1h])) or vector(0)",
            description="Rejected records that could not be written to the dead-letter topic in the last hour: lost for good.",
            steps=GREEN_RED_AT_1,
            decimals=0,
        ),
        firing_alerts_table(
            "oncall",
            {
                "alertname": "Alert",
                "instance": "Instance",
                "topic": "Topic",
                "partition": "Partition",
                "severity": "Severity",
                "job": "Job",
            },
            "On-call alerts firing now (Prometheus' ALERTS series).",
        ),
        panel(
            "state-timeline",
            "Readiness per worker",
            [target(f"watchfloor_ready{{{INST}}}", "{{instance}}")],
            w=12,
            h=6,
            description="Green: the worker serves correct figures. Red: recovering or not assigned; its districts have no figures.",
            mappings=ready_mappings,
            steps=thresholds(("red", None), ("green", 1)),
            options={
                "showValue": "never",
                "mergeValues": True,
                "alignValue": "left",
                "rowHeight": 0.8,
                "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
                "tooltip": {"mode": "single", "sort": "none"},
            },
        ),
        table(
            "Build",
            [target(f"watchfloor_build_info{{{INST}}}", instant=True, table=True)],
            description="Version of every worker. Mixed versions outside a rolling deploy deserve a look.",
            rename={
                "instance": "Instance",
                "version": "Version",
                "kafka_client": "Kafka client",
                "python": "Python",
            },
            exclude=("Time", "Value", "__name__", "job"),
            sort_by=("Instance", False),
            w=12,
            h=6,
        ),
        row("Throughput and rejections"),
        timeseries(
            "Records read and counted per second",
            [
                target(
                    f"sum by (topic) (rate(watchfloor_events_received_total{{{INST_TOPIC}}}[$__rate_interval]))",
                    "read {{topic}}",
                ),
                target(
                    f"sum by (topic) (rate(watchfloor_events_processed_total{{{INST_TOPIC}}}[$__rate_interval]))",
                    "counted {{topic}}",
                ),
            ],
            description="Records read from each source topic and records counted. The gap between the two is rejections.",
            unit="ops",
            overrides=[dashed("^counted .*")],
        ),
        timeseries(
            "Rejections per second by reason",
            [
                target(
                    f"sum by (reason) (rate(watchfloor_events_rejected_total{{{INST_TOPIC}}}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            description="Records sent to the dead-letter topic, by reason (see docs/design.md). `duplicate` from a retrying producer is harmless; the rest are missing from the figures.",
            unit="ops",
            custom={
                "drawStyle": "bars",
                "lineWidth": 1,
                "fillOpacity": 80,
                "showPoints": "never",
                "stacking": {"mode": "normal", "group": "A"},
            },
        ),
        timeseries(
            "Share of records rejected (duplicates excluded)",
            [
                target(
                    f'sum by (topic) (rate(watchfloor_events_rejected_total{{{INST_TOPIC},reason!="duplicate"}}[$__rate_interval]))'
                    f" / sum by (topic) (rate(watchfloor_events_received_total{{{INST_TOPIC}}}[$__rate_interval]))",
                    "{{topic}}",
                )
            ],
            description="The figure WatchfloorDeadLetterRateHigh watches (alerts above 5 %).",
            unit="percentunit",
            steps=thresholds(("transparent", None), ("red", 0.05)),
            custom={
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 0,
                "showPoints": "never",
                "spanNulls": False,
                "thresholdsStyle": {"mode": "line"},
            },
        ),
        timeseries(
            "Late and duplicate events per district",
            [
                target(
                    "sum by (district) (rate(watchfloor_late_events_total[$__rate_interval]))",
                    "late {{district}}",
                ),
                target(
                    "sum by (district) (rate(watchfloor_duplicate_events_total[$__rate_interval]))",
                    "duplicate {{district}}",
                ),
            ],
            description="Events older than the district's watermark minus the grace (too late, dead-lettered) and repeats of a counted transition. Late events usually mean a device uploaded a backlog.",
            unit="ops",
            overrides=[dashed("^duplicate .*")],
        ),
        timeseries(
            "State records written per second",
            [
                target(
                    f"sum by (instance) (rate(watchfloor_changelog_records_total{{{INST}}}[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            description="Changelog records written by each worker: the cost of keeping district state recoverable.",
            unit="ops",
        ),
        timeseries(
            "Time since the last record read",
            [
                target(
                    f"time() - max by (topic) (watchfloor_last_event_timestamp_seconds{{{INST_TOPIC}}} > 0)",
                    "{{topic}}",
                )
            ],
            description="Wall-clock time since any worker last read a record of each topic (topics never read are left out). High on a quiet topic is normal; high with lag is a stall.",
            unit="s",
        ),
        row("Lag and latency"),
        timeseries(
            "Consumer lag per partition",
            [
                target(
                    f"sum by (topic, partition) (watchfloor_consumer_lag{{{INST_TOPIC}}})",
                    "{{topic}}[{{partition}}]",
                )
            ],
            description="Records behind the end of each partition. Growing for 15 minutes above 1000 raises WatchfloorConsumerLagGrowing.",
            decimals=0,
        ),
        timeseries(
            "Processing latency, event time to counted",
            [
                target(
                    f"histogram_quantile(0.5, sum by (le, topic) (rate(watchfloor_processing_latency_seconds_bucket{{{INST_TOPIC}}}[$__rate_interval])))",
                    "p50 {{topic}}",
                ),
                target(
                    f"histogram_quantile(0.95, sum by (le, topic) (rate(watchfloor_processing_latency_seconds_bucket{{{INST_TOPIC}}}[$__rate_interval])))",
                    "p95 {{topic}}",
                ),
                target(
                    f"histogram_quantile(0.99, sum by (le, topic) (rate(watchfloor_processing_latency_seconds_bucket{{{INST_TOPIC}}}[$__rate_interval])))",
                    "p99 {{topic}}",
                ),
            ],
            description="From the event's own time to the moment it was counted. Includes the time a report spent on a device before upload, so p99 can be large while the pipeline is healthy; a rise of p50 points at the pipeline.",
            unit="s",
            overrides=[dashed("^p9.*")],
        ),
        timeseries(
            "Batch duration",
            [
                target(
                    f"histogram_quantile(0.5, sum by (le) (rate(watchfloor_batch_duration_seconds_bucket{{{INST}}}[$__rate_interval])))",
                    "p50",
                ),
                target(
                    f"histogram_quantile(0.99, sum by (le) (rate(watchfloor_batch_duration_seconds_bucket{{{INST}}}[$__rate_interval])))",
                    "p99",
                ),
            ],
            description="Time to validate, count and write the state of one batch.",
            unit="s",
        ),
        timeseries(
            "Batches per second",
            [
                target(
                    f"sum by (instance) (rate(watchfloor_batch_duration_seconds_count{{{INST}}}[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            description="Batches completed per worker; with the records counted per second this gives the batch size.",
            unit="ops",
        ),
        row("Recovery and rebalances"),
        timeseries(
            "Recovery in progress",
            [target(f"watchfloor_recovery_in_progress{{{INST}}}", "{{instance}}")],
            description="1 while a worker rebuilds its tables from the changelog (after a start or a rebalance).",
            custom={
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 30,
                "showPoints": "never",
                "lineInterpolation": "stepAfter",
            },
            min_value=0,
            max_value=1,
            w=8,
        ),
        bargauge(
            "Last recovery took",
            f"watchfloor_last_recovery_duration_seconds{{{INST}}}",
            legend="{{instance}}",
            description="Duration of each worker's last completed table recovery. WatchfloorRecoveryStuck fires when one runs past 15 minutes.",
            unit="s",
            steps=thresholds(("green", None), ("orange", 300), ("red", 900)),
            w=8,
        ),
        timeseries(
            "Rebalances (per 5 minutes)",
            [
                target(
                    f"sum by (instance) (increase(watchfloor_rebalances_total{{{INST}}}[5m]))",
                    "{{instance}}",
                )
            ],
            description="Consumer-group rebalances seen by each worker. Each pauses counting; 10 in 30 minutes raises WatchfloorRebalanceStorm.",
            decimals=0,
            w=8,
        ),
        timeseries(
            "Partitions and districts per worker",
            [
                target(f"watchfloor_assigned_partitions{{{INST}}}", "partitions {{instance}}"),
                target(f"watchfloor_owned_districts{{{INST}}}", "districts {{instance}}"),
            ],
            description="How the work is spread. A worker with 0 partitions is idle (more workers than partitions).",
            decimals=0,
            overrides=[dashed("^districts .*")],
            w=24,
        ),
        row("Scrape"),
        timeseries(
            "Scrape up",
            [target(f'up{{job="watchfloor",{INST}}}', "{{instance}}")],
            description="1 when Prometheus' last scrape of the worker succeeded.",
            min_value=0,
            max_value=1,
            w=8,
        ),
        timeseries(
            "Scrape duration",
            [target(f'scrape_duration_seconds{{job="watchfloor",{INST}}}', "{{instance}}")],
            description="Time each /metrics scrape took; near the scrape timeout (10 s) scrapes start failing.",
            unit="s",
            w=8,
        ),
        timeseries(
            "Series per scrape",
            [target(f'scrape_samples_scraped{{job="watchfloor",{INST}}}', "{{instance}}")],
            description="Samples in each worker's /metrics (docs/metrics.md gives the expected count per district and worker).",
            decimals=0,
            w=8,
        ),
    ]
    return dashboard(
        "watchfloor-pipeline-health",
        "Watchfloor: pipeline health",
        "For on-call engineers: workers, throughput, rejections, lag, latency, recovery, rebalances and scrapes.",
        [
            query_variable(
                "instance",
                "Worker",
                'label_values(up{job="watchfloor"}, instance)',
                multi=True,
                include_all=True,
                description="Workers scraped by the job 'watchfloor'.",
            ),
            query_variable(
                "topic",
                "Topic",
                "label_values(watchfloor_events_received_total, topic)",
                multi=True,
                include_all=True,
                description="Source topics.",
            ),
        ],
        panels,
        refresh="30s",
    )


DASHBOARDS = {
    "command-centre.json": command_centre,
    "pipeline-health.json": pipeline_health,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the JSON files are out of date"
    )
    parser.add_argument("--centre-url", default=LINKS["centre_url"],
                        help="base URL of the command-centre page, for district links")
    parser.add_argument("--runbook-url", default=LINKS["runbook_url"],
                        help="base URL of the runbooks, for alert links")
    args = parser.parse_args(argv)
    LINKS.update(centre_url=args.centre_url, runbook_url=args.runbook_url)
    stale = []
    for name, text in render().items():
        path = OUT_DIR / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            OUT_DIR.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run {Path(__file__).name})", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {OUT_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
