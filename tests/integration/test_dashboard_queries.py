"""Every panel query of both dashboards returns live data from a real worker via real Prometheus."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.reference import load_reference
from streams.settings import PROJECT_ROOT
from tests.conftest import need

from .harness import Cluster, Truth, WorkerProcess, event, sample, scripted_stream
from .prometheus import (
    DASHBOARDS_DIR,
    PanelQuery,
    PrometheusHarnessError,
    PrometheusServer,
    dashboard_queries,
    grafana_expr,
    prometheus_binary,
)

pytestmark = [pytest.mark.broker, pytest.mark.prometheus, pytest.mark.slow]

TZ = ZoneInfo("Asia/Shanghai")
CITY_FILE = PROJECT_ROOT / "seeds" / "reference" / "city.json"
DISTRICTS = ["jinshui", "erqi", "zhongyuan", "guancheng", "huiji"]
# The worker lists every district of the reference data, events or none (zeros).
EVERY_DISTRICT = sorted(load_reference(CITY_FILE).districts)
# Districts with hazards past their deadline (the first of each is major) and with a
# cohort of hazards found 10 days ago, for the matured-cohort rectification rate.
OVERDUE = {"jinshui": 3, "erqi": 2}
MATURED = "zhongyuan"
LATE_DISTRICT = "huiji"
# Work-safety accidents this year: (district, deaths, serious injuries, direct loss).
ACCIDENTS = [("erqi", 1, 2, 350_000), ("erqi", 0, 1, 80_000), ("zhongyuan", 2, 0, 1_200_000)]
# The only allowed empty answers. A panel comparing with the past (`offset 7d`, `offset
# 28d`, `offset $window`) reads data from before this Prometheus existed, which a test
# Prometheus started seconds ago cannot have. Each one is still run and must parse, and
# the same query without its offset must return data: the offset is the only reason.
NEEDS_HISTORY = re.compile(r"\s+offset\s+(\d+[smhdwy]|\$\w+)")


@dataclass
class Live:
    """The running pieces and what was published, with its true figures."""

    cluster: Cluster
    worker: WorkerProcess
    prom: PrometheusServer
    truth: Truth
    overdue: Counter[tuple[str, str]]  # (district, category) -> hazards past their deadline
    overdue_major: int
    matured_found: int
    matured_rectified: int
    bad: Counter[str]  # reason -> records published that must be rejected for it
    published: int
    published_at: float

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.worker.port}"


def forward_topic(live: Live) -> str:
    return f"{live.cluster.app_id}-forward"


def bad_records(now: datetime) -> tuple[list[tuple[str, bytes | None, bytes | None]], Counter[str]]:
    """Incident-topic records that must each be dead-lettered, and the reason expected."""
    key = b"jinshui"
    good = event("case_filed", "jinshui", "bad-x", now, {"category": "theft", "severity": "minor"})
    records: list[tuple[str, bytes | None, bytes | None]] = []
    reasons: Counter[str] = Counter()

    def add(reason: str, value: bytes | None, n: int = 5) -> None:
        for _ in range(n):
            records.append(("incidents", key, value))
            reasons[reason] += 1

    add("malformed_json", b'{"specversion": "1.0", "id": ')
    add("empty", None, 2)
    add("not_utf8", b"\xff\xfe{}")
    add("unknown_type", orjson.dumps({**good, "type": "watchfloor.incident.case_teleported.v1"}))
    add("schema", orjson.dumps({**good, "data": {"severity": "minor"}}))
    add("naive_time", orjson.dumps({**good, "time": now.replace(tzinfo=None).isoformat()}))
    add(
        "wrong_topic",
        orjson.dumps(
            event(
                "patrol_completed",
                "jinshui",
                "bad-p",
                now,
                {
                    "team": "jinshui-pt01",
                    "started_at": (now - timedelta(hours=1)).isoformat(),
                    "ended_at": now.isoformat(),
                    "area": "jinshui-s1",
                    "findings": 0,
                },
            )
        ),
    )
    return records, reasons


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    need(prometheus_binary() is not None, "no prometheus binary (apt-get install prometheus)")
    cluster = Cluster(kafka_bootstrap)
    cluster.create_topics()
    tmp = tmp_path_factory.mktemp("dashboards")
    worker = WorkerProcess(
        cluster, tmp, WATCHFLOOR_REFERENCE_FILE=str(reference_with_targets(tmp))
    ).start()
    try:
        worker.wait_ready()
        # `for: 0s`: an alert whose condition holds fires at the next evaluation, so that
        # the "Firing alerts" tables have rows from the live data without a 5-minute wait.
        with PrometheusServer(
            [f"127.0.0.1:{worker.port}"],
            scrape_interval="1s",
            evaluation_interval="1s",
            for_override="0s",
        ) as prom:
            # A scrape of the idle worker first: the counters' rise from 0 is what rate()
            # and increase() are made of.
            prom.wait_for_targets_up(timeout=30)
            prom.wait_for_series('watchfloor_events_received_total{job="watchfloor"}', timeout=30)
            published = publish_everything(cluster, worker, prom)
            settle(published)
            yield published
    finally:
        worker.stop()


def reference_with_targets(folder: Path) -> Path:
    """The seed reference data, with death targets for this year (the 2026 ones, if the
    seed has none for it), so that the work-safety panels have a target to show."""
    doc = orjson.loads(CITY_FILE.read_bytes())
    year = datetime.now(TZ).year
    targets = doc["work_safety"]["targets"]
    if not any(t["year"] == year for t in targets):
        targets.append({**next(t for t in targets if t["year"] == 2026), "year": year})
    (folder / "city.json").write_bytes(orjson.dumps(doc))
    (folder / "categories.json").write_bytes((CITY_FILE.parent / "categories.json").read_bytes())
    return folder / "city.json"


def publish_everything(cluster: Cluster, worker: WorkerProcess, prom: PrometheusServer) -> Live:
    now = datetime.now(TZ)
    docs: list[Any] = []

    def hazard(d: str, sid: str, found: datetime, due: datetime, major: bool) -> dict[str, Any]:
        return event(
            "hazard_found",
            d,
            sid,
            found,
            {
                "category": "gas" if major else "construction",
                "major": major,
                "deadline": due.isoformat(),
                "responsible_unit": f"{d}-safety-office",
            },
        )

    # Ten days ago, before the rest of its stream (so not too late): a matured cohort, 4
    # found, 3 of them rectified; the fourth is overdue since 8 days.
    old = now - timedelta(days=10)
    for i in range(4):
        docs.append(hazard(MATURED, f"old-{i}", old, old + timedelta(days=2), False))
    for i in range(3):
        docs.append(event("hazard_rectified", MATURED, f"old-{i}", old + timedelta(days=1)))
    overdue: Counter[tuple[str, str]] = Counter({(MATURED, "construction"): 1})
    stream, truth = scripted_stream(DISTRICTS, 80, now - timedelta(minutes=2), seed=11)
    docs.extend(stream)
    # Hazards found three hours ago, due ten minutes ago, never rectified: the major ones
    # are news (the page lasts an hour after the deadline).
    overdue_major = 0
    for d, n in OVERDUE.items():
        for i in range(n):
            docs.append(
                hazard(
                    d,
                    f"{d}-late-hz-{i}",
                    now - timedelta(hours=3),
                    now - timedelta(minutes=10),
                    major=i == 0,
                )
            )
            overdue_major += i == 0
            overdue[d, "gas" if i == 0 else "construction"] += 1
    for n, (d, deaths, injuries, loss) in enumerate(ACCIDENTS):
        docs.append(
            event(
                "accident_reported",
                d,
                f"acc-{n}",
                now - timedelta(minutes=30 + n),
                {"category": "construction", "deaths": deaths, "serious_injuries": injuries,
                 "direct_loss_yuan": loss},
            )
        )  # fmt: skip
    # 30 h older than the district's latest incident: counted as too late.
    docs.append(
        event(
            "case_filed",
            LATE_DISTRICT,
            "too-late-case",
            now - timedelta(hours=30),
            {"category": "theft", "severity": "minor"},
        )
    )
    bad, reasons = bad_records(now)
    reasons["too_late"] += 1
    items: list[Any] = docs + bad
    published_at = time.time()
    published = cluster.publish(items)
    return Live(
        cluster=cluster,
        worker=worker,
        prom=prom,
        truth=truth,
        overdue=overdue,
        overdue_major=overdue_major,
        matured_found=4,
        matured_rectified=3,
        bad=reasons,
        published=published,
        published_at=published_at,
    )


def settle(live: Live) -> None:
    """Wait until the worker counted everything, Prometheus scraped it and the rules ran."""
    w, prom, truth = live.worker, live.prom, live.truth
    topics = [live.cluster.topic(r) for r in ("incidents", "disputes", "patrols")]

    def worker_done() -> bool:
        m = w.metrics()
        read = sum(sample(m, "watchfloor_events_received_total", topic=t) or 0 for t in topics)
        return read == live.published

    deadline = time.monotonic() + 60
    while not worker_done():
        assert time.monotonic() < deadline, f"the worker did not read everything:\n{w.log_tail()}"
        time.sleep(0.3)

    found = sum(truth.found.values()) + sum(OVERDUE.values()) + live.matured_found
    rectified = sum(truth.rectified.values()) + live.matured_rectified
    want = {
        'sum(watchfloor_events_received_total{job="watchfloor"})': live.published,
        "sum(district:watchfloor_open_hazards:max)": found - rectified,
        "sum(district:watchfloor_overdue_hazards:max)": sum(live.overdue.values()),
    }
    got: dict[str, list[float]] = {}

    def holds() -> bool:
        got.update({q: [s.value for s in prom.query(q)] for q in want})
        return all(got[q] == [v] for q, v in want.items())

    try:
        prom.wait_until(holds, timeout=30, what="the worker's final figures")
    except PrometheusHarnessError:
        pytest.fail(f"Prometheus holds {got}, the truth is {want}")
    # Two more scrapes, so that every rate() window holds the rise and its top.
    after = time.time() + 2
    prom.wait_for_series(f'timestamp(up{{job="watchfloor"}}) > {after!r}', timeout=15)
    # The operators' and on-call alerts the data must raise (a rule evaluation after the
    # last figures).
    try:
        prom.wait_for_alert(
            "WatchfloorOverdueMajorHazard", labels={"district": "jinshui"}, timeout=30
        )
    except PrometheusHarnessError:
        parts = [
            'district:watchfloor_caught_up:max{district="jinshui"}',
            "watchfloor_ready",
            "max_over_time(watchfloor_consumer_lag[2m]) > 0",
            "time() - watchfloor_newest_event_timestamp_seconds",
            "time() - district:"
            "watchfloor_overdue_major_hazard_newest_deadline_timestamp_seconds:max",
        ]
        seen = {q: [(s.labels, s.value) for s in prom.query(q)] for q in parts}
        pytest.fail(f"no page for jinshui's overdue major hazard; the rule's parts: {seen}")
    prom.wait_for_alert(
        "WatchfloorDeadLetterRateHigh",
        labels={"topic": live.cluster.topic("incidents")},
        timeout=30,
    )


def all_queries() -> list[PanelQuery]:
    return [q for p in sorted(DASHBOARDS_DIR.glob("*.json")) for q in dashboard_queries(p)]


def run(prom: PrometheusServer, q: PanelQuery, expr: str) -> list[dict[str, str]]:
    """The panel's query as Grafana sends it: instant, or a range over the last minute."""
    if q.instant:
        return [s.labels for s in prom.query(expr)]
    end = time.time()
    return [labels for labels, points in prom.query_range(expr, end - 60, end, 5) if points]


def label_values(prom: PrometheusServer, metric: str, label: str) -> list[str]:
    """What Grafana's `label_values(metric, label)` variable query offers."""
    values: list[str] = prom.api(f"label/{label}/values", {"match[]": metric})
    return sorted(values)


def test_variables_offer_the_live_districts_windows_workers_and_topics(live: Live) -> None:
    prom = live.prom
    # Records of unknown districts were rejected: they never become a district series;
    # every reference district is there, the quiet ones with zeros.
    assert label_values(prom, "watchfloor_open_hazards", "district") == EVERY_DISTRICT
    assert label_values(prom, "watchfloor_rolling_cases_filed", "window") == sorted(
        ["1h", "24h", "7d", "28d"]
    )
    assert label_values(prom, 'up{job="watchfloor"}', "instance") == [live.instance]
    # The worker also reads its forward topic (records a publisher put in the wrong
    # partition, on their way to their district's owner): on-call picks it like the others.
    assert label_values(prom, "watchfloor_events_received_total", "topic") == sorted(
        [live.cluster.topic(r) for r in ("incidents", "disputes", "patrols")]
        + [forward_topic(live)]
    )


@pytest.mark.parametrize("selection", ["all", "some"])
def test_every_panel_query_returns_live_series(live: Live, selection: str) -> None:
    prom = live.prom
    if selection == "all":
        variables = {"district": ".*", "window": "24h", "instance": ".*", "topic": ".*"}
    else:
        # A multi-value selection as Grafana writes it into `=~`, of values the variable
        # queries offer: two districts with overdue hazards, one with the matured cohort.
        picked = ["erqi", MATURED]
        assert set(picked) <= set(label_values(prom, "watchfloor_open_hazards", "district"))
        variables = {
            "district": "(" + "|".join(picked) + ")",
            "window": "7d",
            "instance": label_values(prom, 'up{job="watchfloor"}', "instance")[0],
            "topic": live.cluster.topic("incidents"),
        }
    queries = all_queries()
    assert len(queries) > 70
    allowed = [q for q in queries if NEEDS_HISTORY.search(q.expr)]
    assert 0 < len(allowed) <= 10
    empty: list[str] = []
    strangers: list[str] = []
    for q in queries:
        expr = grafana_expr(q.expr, variables)
        where = f"{q.dashboard} / {q.panel} / {q.ref_id}: {expr}"
        series = run(prom, q, expr)  # a query Prometheus cannot parse raises here
        if q in allowed:
            expr = NEEDS_HISTORY.sub("", expr)
            series = run(prom, q, expr)
        if not series:
            # A rate over the newest points can lag a scrape behind the instant data.
            try:
                series = prom.wait_until(lambda: run(prom, q, expr), timeout=10)  # noqa: B023
            except PrometheusHarnessError:
                empty.append(where)
                continue
        named = {s["district"] for s in series if "district" in s}
        if named - set(EVERY_DISTRICT):
            strangers.append(f"{where}: {sorted(named - set(EVERY_DISTRICT))}")
        if selection == "some" and "$district" in q.expr:
            outside = named - set(variables["district"].strip("()").split("|"))
            if outside:
                strangers.append(f"{where}: not selected {sorted(outside)}")
    assert not empty, "panel queries with no data:\n" + "\n".join(empty)
    assert not strangers, "series of districts that do not exist:\n" + "\n".join(strangers)


def panel(title: str, ref: str = "A") -> PanelQuery:
    found = [q for q in all_queries() if q.panel == title and q.ref_id == ref]
    assert len(found) == 1, f"no single panel {title!r} / {ref}"
    return found[0]


def value(prom: PrometheusServer, title: str, ref: str = "A", **variables: str) -> float:
    expr = grafana_expr(
        panel(title, ref).expr,
        {"district": ".*", "window": "24h", "instance": ".*", "topic": ".*", **variables},
    )
    samples = prom.query(expr)
    assert len(samples) == 1, (title, ref, samples)
    return samples[0].value


def test_panels_show_the_true_figures(live: Live) -> None:
    prom, t = live.prom, live.truth
    filed, cleared = sum(t.filed.values()), sum(t.cleared.values())
    found = sum(t.found.values()) + sum(OVERDUE.values())  # the matured cohort: 10 days
    rectified = sum(t.rectified.values())
    reported, resolved = sum(t.reported.values()), sum(t.resolved.values())
    assert value(prom, "Overdue major hazards (挂牌督办)") == live.overdue_major
    assert value(prom, "Overdue hazards") == sum(live.overdue.values())
    assert value(prom, "Hazards in the last 24 h", "A") == found
    assert value(prom, "Hazards in the last 24 h", "B") == rectified
    assert value(prom, "Open cases and disputes", "A") == filed - cleared
    assert value(prom, "Open cases and disputes", "B") == reported - resolved
    assert value(prom, "Open cases and disputes", "C") == (
        found - rectified + live.matured_found - live.matured_rectified
    )
    # Every hazard the stream rectified was found inside the last 24 h.
    assert value(prom, "Rectification rate, city ($window)") == pytest.approx(rectified / found)
    assert value(prom, "Clearance rate, city ($window)") == pytest.approx(cleared / filed)
    assert value(prom, "Dispute resolution, city ($window)") == pytest.approx(resolved / reported)
    assert value(prom, "Work-safety deaths this year, city") == sum(a[1] for a in ACCIDENTS)
    assert value(prom, "Accidents this year, city") == len(ACCIDENTS)
    assert value(prom, "Direct loss this year, city") == sum(a[3] for a in ACCIDENTS)
    assert value(prom, "Same dates last year, city") == 0
    city_target = load_reference(CITY_FILE).work_safety[2026].city.deaths
    assert value(prom, "City death target (死亡人数控制指标)") == city_target
    assert value(prom, "City death target used") == pytest.approx(
        sum(a[1] for a in ACCIDENTS) / city_target
    )
    used = panel("Death target used, per district")
    ratios = {
        s.labels["district"]: s.value
        for s in prom.query(grafana_expr(used.expr, {"district": "erqi|zhongyuan"}))
    }
    targets = load_reference(CITY_FILE).work_safety[2026].districts
    assert ratios == {
        "erqi": 1 / targets["erqi"].deaths,
        "zhongyuan": 2 / targets["zhongyuan"].deaths,
    }
    assert value(prom, "Workers up") == 1
    assert value(prom, "Workers ready") == 1
    assert value(prom, "Owned districts") == len(EVERY_DISTRICT)
    # Partition numbers: one covers that partition of all three co-partitioned topics.
    assert value(prom, "Assigned partitions") == live.cluster.partitions
    assert value(prom, "Dead letters lost (1 h)") == 0

    ranking = panel("District ranking ($window): lowest rectification rate first", "D")
    matured = prom.query(grafana_expr(ranking.expr, {"district": ".*"}))
    assert [(s.labels["district"], s.value) for s in matured] == [
        (MATURED, live.matured_rectified / live.matured_found)
    ]

    by_category = panel("Overdue hazards by district and category")
    cells = {
        (s.labels["district"], s.labels["category"]): s.value
        for s in prom.query(grafana_expr(by_category.expr, {"district": ".*"}))
    }
    assert cells == live.overdue

    firing = {
        (s.labels["alertname"], s.labels.get("district", s.labels.get("topic")))
        for s in prom.query(panel("Firing alerts (operators)").expr)
    }
    assert {("WatchfloorOverdueMajorHazard", d) for d in OVERDUE} <= firing
    oncall = {
        (s.labels["alertname"], s.labels.get("topic"))
        for s in prom.query(panel("Firing alerts (on-call)").expr)
    }
    assert ("WatchfloorDeadLetterRateHigh", live.cluster.topic("incidents")) in oncall

    # The rate panels saw the records flow, on every topic, counted and rejected.
    def peak(title: str, ref: str, by: str) -> dict[str, float]:
        expr = grafana_expr(panel(title, ref).expr, {"instance": ".*", "topic": ".*"})
        answer = prom.query_range(expr, live.published_at, time.time(), 1)
        return {labels[by]: max(v for _, v in points) for labels, points in answer}

    topics = {live.cluster.topic(r) for r in ("incidents", "disputes", "patrols")}
    for ref in ("A", "B"):
        rates = peak("Records read and counted per second", ref, "topic")
        # Nothing was misrouted, so the forward topic is listed with no flow.
        assert set(rates) == topics | {forward_topic(live)}, rates
        assert min(rates[t] for t in topics) > 0 and rates[forward_topic(live)] == 0, rates
    rejected = peak("Rejections per second by reason", "A", "reason")
    assert {r for r, v in rejected.items() if v > 0} >= set(live.bad), rejected

    # Rejections by reason, as the pipeline dashboard's panel groups them.
    topic = live.cluster.topic("incidents")
    counts = {
        s.labels["reason"]: s.value
        for s in prom.query(
            f'sum by (reason) (watchfloor_events_rejected_total{{topic="{topic}"}}) > 0'
        )
    }
    duplicates = counts.pop("duplicate", 0.0)
    assert counts == {r: float(n) for r, n in live.bad.items()}
    every_dup = prom.query('sum(watchfloor_events_rejected_total{reason="duplicate"})')
    assert every_dup[0].value == sum(t.duplicates.values()) >= duplicates
    late = prom.query("watchfloor_late_events_total > 0")
    assert [(s.labels["district"], s.value) for s in late] == [(LATE_DISTRICT, 1)]
