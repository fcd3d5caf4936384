"""Alert and recording rules: promtool checks and tests, runbooks, and a real Prometheus."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests.conftest import need
from tests.integration.prometheus import (
    DASHBOARDS_DIR,
    PrometheusHarnessError,
    PrometheusServer,
    ScrapeJob,
    dashboard_queries,
    grafana_expr,
    project_rule_files,
    prometheus_binary,
    promtool_binary,
)

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
RUNBOOK_PREFIX = "https://github.com/watchfloor/watchfloor/blob/main/"
ALERTS_DOC = ROOT / "docs" / "alerts.md"


def rules() -> list[dict[str, Any]]:
    found = []
    for path in project_rule_files():
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            found.extend(group["rules"])
    return found


def alert_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def rule_test_docs() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in RULE_TESTS]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def promtool() -> str:
    path = promtool_binary()
    need(path is not None, "promtool is not installed (apt-get install prometheus)")
    assert path is not None
    return path


# promtool and amtool ----------------------------------------------------------------------


@pytest.mark.prometheus
def test_promtool_check_rules() -> None:
    files = [str(p) for p in project_rule_files()]
    assert len(files) >= 2
    done = run(promtool(), "check", "rules", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files), done.stdout


@pytest.mark.prometheus
def test_promtool_check_config() -> None:
    done = run(promtool(), "check", "config", str(PROM / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 rule files found" in done.stdout


@pytest.mark.prometheus
@pytest.mark.slow
def test_promtool_unit_tests_of_every_rule_pass() -> None:
    done = run(promtool(), "test", "rules", *(str(p) for p in RULE_TESTS))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "FAILED" not in output
    assert output.count("SUCCESS") == len(RULE_TESTS), output


@pytest.mark.prometheus
def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    # A copy of the rules with the overdue-major threshold broken must fail its tests: the
    # suite above is not vacuous.
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    for path in project_rule_files():
        text = path.read_text(encoding="utf-8")
        broken = text.replace(
            "district:watchfloor_overdue_major_hazard_newest_deadline_timestamp_seconds:max\n"
            "          < 3600",
            "district:watchfloor_overdue_major_hazard_newest_deadline_timestamp_seconds:max\n"
            "          < 60",
        )
        assert broken != text or path.name != "watchfloor-alerts.yml", "the rule moved"
        text = broken
        (tmp_path / "rules" / path.name).write_text(text, encoding="utf-8")
    test_file = PROM / "tests" / "watchfloor-operators.test.yml"
    (tmp_path / "tests" / test_file.name).write_text(
        test_file.read_text(encoding="utf-8"), encoding="utf-8"
    )
    done = run(promtool(), "test", "rules", str(tmp_path / "tests" / test_file.name))
    assert done.returncode != 0
    assert "WatchfloorOverdueMajorHazard" in done.stdout + done.stderr


@pytest.mark.prometheus
def test_alertmanager_config_routes_operators_and_oncall_apart() -> None:
    amtool = shutil.which("amtool")
    need(amtool is not None, "amtool is not installed (apt-get install prometheus-alertmanager)")
    assert amtool is not None
    config = str(PROM / "alertmanager.yml")
    done = run(amtool, "check-config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = {
        ("team=operators", "severity=critical"): "operators-urgent",
        ("team=operators", "severity=warning"): "operators",
        ("team=operators", "severity=critical", "page=once"): "operators-urgent-once",
        ("team=operators", "severity=warning", "page=once"): "operators-once",
        ("team=oncall", "severity=critical"): "oncall-page",
        ("team=oncall", "severity=warning"): "oncall",
        ("alertname=SomethingElse",): "oncall",
    }
    for labels, receiver in expected.items():
        done = run(amtool, "config", "routes", "test", f"--config.file={config}", *labels)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == receiver, (labels, done.stdout)


# Structure of rules, tests and runbooks (no binary needed) -------------------------------


def test_every_alert_has_a_firing_and_a_not_firing_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for doc in rule_test_docs():
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert len(names) >= 14
    assert names - firing == set(), "alerts without a firing case"
    assert names - quiet == set(), "alerts without a not-firing case"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_recording_rule_has_an_expression_test() -> None:
    tested = {
        check["expr"]
        for doc in rule_test_docs()
        for case in doc["tests"]
        for check in case.get("promql_expr_test", [])
    }
    missing = {r["record"] for r in rules() if "record" in r} - tested
    assert not missing, f"recording rules without promql_expr_test: {sorted(missing)}"


def test_rule_tests_load_the_project_rule_files() -> None:
    for path, doc in zip(RULE_TESTS, rule_test_docs(), strict=True):
        for rule_file in doc["rule_files"]:
            loaded = {p.resolve() for p in project_rule_files()}
            assert (path.parent / rule_file).resolve() in loaded


# Alerts whose value is only the condition (up == 0, absent(), ready == 0): there is no
# figure in $value to state.
CONDITION_ONLY = {"WatchfloorWorkerDown", "WatchfloorWorkersAbsent", "WatchfloorWorkerNotReady"}


def test_alerts_carry_severity_team_and_annotations() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"Watchfloor[A-Z]\w+", name)
        labels, notes = rule["labels"], rule["annotations"]
        assert labels["severity"] in {"critical", "warning"}, name
        assert labels["team"] in {"operators", "oncall"}, name
        assert {"summary", "description", "runbook_url"} <= set(notes), name
        if name not in CONDITION_ONLY:
            assert "$value" in notes["description"], f"{name} does not state its figure"
        if labels["team"] == "operators":
            assert "$labels.district" in notes["summary"] + notes["description"], name


def test_every_runbook_url_maps_to_a_runbook_page() -> None:
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_PREFIX + "docs/runbooks/"), url
        page = ROOT / url.removeprefix(RUNBOOK_PREFIX)
        assert page.is_file(), f"{rule['alert']}: {page} does not exist"
        assert rule["alert"] in page.read_text(encoding="utf-8"), f"{page.name} never names it"


def test_runbook_pages_say_what_it_means_what_to_check_and_what_to_do() -> None:
    pages = {
        ROOT / r["annotations"]["runbook_url"].removeprefix(RUNBOOK_PREFIX) for r in alert_rules()
    }
    for page in pages:
        text = page.read_text(encoding="utf-8")
        headings = re.findall(r"^## (.+)$", text, re.M)
        assert headings[:3] == ["What it means", "What to check", "What to do"], page.name
        assert "```promql" in text, f"{page.name} gives no query to run"


def test_alerts_doc_covers_every_alert() -> None:
    text = ALERTS_DOC.read_text(encoding="utf-8")
    missing = [r["alert"] for r in alert_rules() if f"`{r['alert']}`" not in text]
    assert not missing, f"docs/alerts.md does not describe {missing}"


# The rules in a real Prometheus ----------------------------------------------------------

DISTRICTS = ("jinshui", "erqi")
WINDOWS = ("1h", "24h", "7d", "28d")
TOPICS = ("watchfloor.incidents", "watchfloor.disputes", "watchfloor.patrols")
MEASURES = (
    "cases_filed",
    "cases_cleared",
    "disputes_reported",
    "disputes_resolved",
    "disputes_escalated",
    "hazards_found",
    "hazards_rectified",
    "hazards_found_rectified",
    "patrols_completed",
    "cases_filed_cleared",
    "disputes_reported_resolved",
)
COHORT_MEASURES = {"hazards_found_rectified", "cases_filed_cleared", "disputes_reported_resolved"}


@dataclass
class StandIn:
    """An exporter of docs/design.md's metrics, served by prometheus_client as the worker does.

    It stands in for the worker until the worker exists; the lead's end-to-end test
    scrapes the real one. jinshui has 2 overdue major hazards; erqi's last patrol
    ended 13 hours ago.
    """

    port: int
    ready: Gauge


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandIn]:
    reg = CollectorRegistry()
    now = time.time()

    def gauge(name: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, name, labels, registry=reg)

    for i, measure in enumerate(MEASURES):
        rolling = gauge(f"watchfloor_rolling_{measure}", ("district", "window"))
        for d, district in enumerate(DISTRICTS):
            for w, window in enumerate(WINDOWS):
                rolling.labels(district, window).set((i + 1) * (d + 1) * (w + 1) * 3)
        if measure not in COHORT_MEASURES:
            total = Counter(f"watchfloor_{measure}", measure, ("district",), registry=reg)
            for district in DISTRICTS:
                total.labels(district).inc(100 + i)
    for ratio, value in (
        ("rectification_ratio", 0.85),
        ("clearance_ratio", 0.6),
        ("dispute_resolution_ratio", 0.7),
    ):
        g = gauge(f"watchfloor_cohort_{ratio}", ("district", "window"))
        for district in DISTRICTS:
            for window in WINDOWS:
                g.labels(district, window).set(value)
    per_district = {
        "watchfloor_open_cases": (12, 4),
        "watchfloor_open_disputes": (5, 2),
        "watchfloor_oldest_open_dispute_age_seconds": (3 * 86400, 0),
        "watchfloor_open_hazards": (9, 3),
        "watchfloor_overdue_hazards": (4, 1),
        "watchfloor_overdue_major_hazards": (2, 0),
        "watchfloor_last_patrol_timestamp_seconds": (now - 3600, now - 13 * 3600),
        # jinshui's newest overdue major hazard passed its deadline 10 minutes ago (news);
        # erqi's has been overdue for two days (the list's, not news).
        "watchfloor_overdue_major_hazard_newest_deadline_timestamp_seconds": (
            now - 600,
            now - 2 * 86400,
        ),
        "watchfloor_disputes_open_over_30d": (1, 0),
        "watchfloor_dispute_open_30d_newest_timestamp_seconds": (now - 5 * 86400, now - 86400),
        "watchfloor_matured_cohort_hazards_found": (120, 40),
        "watchfloor_matured_cohort_hazards_found_rectified": (102, 38),
        "watchfloor_matured_cohort_rectification_ratio": (0.85, 0.95),
        # cases filed per day; the stand-in's 24 h figure is 6 (jinshui) and 12 (erqi)
        "watchfloor_cases_filed_daily_baseline": (1.5, 12.0),
        "watchfloor_work_safety_deaths_target": (15, 9),
        "watchfloor_work_safety_deaths_alert_share_ratio": (0.8, 0.8),
        "watchfloor_work_safety_deaths_alert_share_reached_timestamp_seconds": (
            now - 30 * 86400,
            now - 40 * 86400,
        ),
    }
    for name, values in per_district.items():
        g = gauge(name, ("district",))
        for district, value in zip(DISTRICTS, values, strict=True):
            g.labels(district).set(value)
    for name in ("watchfloor_open_hazards_by_category", "watchfloor_overdue_hazards_by_category"):
        g = gauge(name, ("district", "category"))
        g.labels("jinshui", "fire").set(3)
        g.labels("erqi", "gas").set(1)
    for i, stem in enumerate(("accidents", "deaths", "serious_injuries", "direct_loss_yuan")):
        g = gauge(f"watchfloor_work_safety_{stem}", ("district", "period"))
        for d, district in enumerate(DISTRICTS):
            g.labels(district, "year_to_date").set((i + 1) * (d + 2))
            g.labels(district, "same_period_last_year").set((i + 1) * (d + 3))
    gauge("watchfloor_city_work_safety_deaths_target").set(96)
    for name in ("watchfloor_late_events", "watchfloor_duplicate_events"):
        c = Counter(name, name, ("district",), registry=reg)
        for district in DISTRICTS:
            c.labels(district).inc(0)
    received = Counter("watchfloor_events_received", "", ("topic",), registry=reg)
    processed = Counter("watchfloor_events_processed", "", ("topic",), registry=reg)
    rejected = Counter("watchfloor_events_rejected", "", ("topic", "reason"), registry=reg)
    latency = Histogram("watchfloor_processing_latency_seconds", "", ("topic",), registry=reg)
    last_event = gauge("watchfloor_last_event_timestamp_seconds", ("topic",))
    lag = gauge("watchfloor_consumer_lag", ("topic", "partition"))
    for topic in TOPICS:
        received.labels(topic).inc(1000)
        processed.labels(topic).inc(990)
        rejected.labels(topic, "schema").inc(10)
        latency.labels(topic).observe(0.2)
        last_event.labels(topic).set(now)
        for partition in ("0", "1"):
            lag.labels(topic, partition).set(0)
    Counter("watchfloor_dead_letter_errors", "", registry=reg)
    batch = Histogram("watchfloor_batch_duration_seconds", "", registry=reg)
    batch.observe(0.05)
    gauge("watchfloor_assigned_partitions").set(6)
    gauge("watchfloor_owned_districts").set(len(DISTRICTS))
    gauge("watchfloor_recovery_in_progress").set(0)
    gauge("watchfloor_recovery_started_timestamp_seconds").set(now - 600)
    gauge("watchfloor_last_recovery_duration_seconds").set(42)
    Counter("watchfloor_rebalances", "", registry=reg).inc(1)
    Counter("watchfloor_changelog_records", "", registry=reg).inc(500)
    ready = gauge("watchfloor_ready")
    ready.set(1)
    gauge("watchfloor_build_info", ("version", "kafka_client", "python")).labels(
        "0.1.0", "aiokafka-0.14.0", "3.11"
    ).set(1)

    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        yield StandIn(port=server.server_port, ready=ready)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def prometheus(stand_in: StandIn) -> Iterator[PrometheusServer]:
    need(prometheus_binary() is not None, "no prometheus binary (apt-get install prometheus)")
    server = PrometheusServer(
        jobs=[ScrapeJob("watchfloor", [f"127.0.0.1:{stand_in.port}"])],
        scrape_self=True,
        for_override="0s",
    )
    with server:
        server.wait_for_targets_up(timeout=60)
        yield server


@pytest.mark.prometheus
@pytest.mark.slow
def test_harness_scrapes_itself_and_loads_every_rule_group(prometheus: PrometheusServer) -> None:
    up = prometheus.wait_for_series('up{job="prometheus"} == 1')
    assert up[0].labels["instance"] == f"127.0.0.1:{prometheus.port}"
    # Its own metrics came through the scrape, not just the synthetic `up`.
    assert prometheus.query('prometheus_build_info{job="prometheus"}')
    groups = prometheus.wait_for_rule_evaluation(timeout=60)
    expected = {
        g["name"]
        for path in project_rule_files()
        for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    }
    assert {g["name"] for g in groups} == expected
    unhealthy = [
        (g["name"], r["name"], r.get("lastError"))
        for g in groups
        for r in g["rules"]
        if r["health"] != "ok"
    ]
    assert not unhealthy
    assert sum(len(g["rules"]) for g in groups) == len(rules())


@pytest.mark.prometheus
@pytest.mark.slow
def test_an_overdue_major_hazard_fires_in_real_prometheus_and_resolves_when_not_ready(
    prometheus: PrometheusServer, stand_in: StandIn
) -> None:
    alert = prometheus.wait_for_alert(
        "WatchfloorOverdueMajorHazard", labels={"district": "jinshui"}, timeout=60
    )
    assert alert["labels"]["team"] == "operators"
    description = alert["annotations"]["description"]
    assert description.startswith("A major hazard under listed supervision (挂牌督办) in jinshui")
    assert "(2 major hazard(s) overdue in the district)" in description
    districts = {
        a["labels"]["district"] for a in prometheus.alerts(name="WatchfloorOverdueMajorHazard")
    }
    assert districts == {"jinshui"}  # erqi's is two days overdue: paged long ago
    gap = prometheus.wait_for_alert("WatchfloorPatrolGap", labels={"district": "erqi"})
    assert "13h" in gap["annotations"]["description"]
    # A worker that is not ready must not raise district alerts.
    stand_in.ready.set(0)
    try:
        prometheus.wait_for_no_alert("WatchfloorOverdueMajorHazard", timeout=60)
    finally:
        stand_in.ready.set(1)
    prometheus.wait_for_alert(
        "WatchfloorOverdueMajorHazard", labels={"district": "jinshui"}, timeout=60
    )


# Queries whose emptiness is expected with the stand-in: no history for `offset`, and no
# on-call alert fires while the stand-in is healthy.
MAY_BE_EMPTY = re.compile(r"offset |team=\"oncall\"")


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_dashboard_query_evaluates_in_real_prometheus(
    prometheus: PrometheusServer,
) -> None:
    prometheus.wait_for_series("district_window:watchfloor_rolling_cases_filed:max", timeout=60)
    prometheus.wait_for_series("job_topic:watchfloor_events_received:rate5m", timeout=60)
    variables = {"district": ".*", "window": "24h", "instance": ".*", "topic": ".*"}
    queries = [q for path in sorted(DASHBOARDS_DIR.glob("*.json")) for q in dashboard_queries(path)]
    assert len(queries) > 40
    empty = []
    for q in queries:
        expr = grafana_expr(q.expr, variables)
        try:
            samples = prometheus.query(expr)
        except PrometheusHarnessError as exc:
            pytest.fail(f"{q.dashboard} / {q.panel} / {q.ref_id}: {exc}")
        if not samples and not MAY_BE_EMPTY.search(q.expr):
            # Rates need two scrapes inside the window: give them a few seconds.
            try:
                prometheus.wait_for_series(expr, timeout=15)
            except PrometheusHarnessError:
                empty.append(f"{q.dashboard} / {q.panel} / {q.ref_id}: {expr}")
    assert not empty, "queries with no data:\n" + "\n".join(empty)


@pytest.mark.prometheus
@pytest.mark.slow
def test_surge_score_in_real_prometheus_matches_the_formula(prometheus: PrometheusServer) -> None:
    # The stand-in: cases_filed in 24 h = 6 * d for district number d; the worker's
    # baselines are 1.5 and 12 a day.
    samples = prometheus.wait_for_series("district:watchfloor_cases_filed:surge_zscore")
    got = {s.labels["district"]: s.value for s in samples}
    for d, (district, baseline) in enumerate(zip(DISTRICTS, (1.5, 12.0), strict=True), start=1):
        day = 6 * d
        assert math.isclose(got[district], 2 * (math.sqrt(day) - math.sqrt(baseline)))
