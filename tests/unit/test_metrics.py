"""Metrics: the district collector exports owned districts only, names and values right."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.events import Event, Kind
from streams.metrics import BulkHistogram, DistrictCollector, Metrics, series_per_district
from streams.state import DistrictState

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 4, 12, 12, 0, tzinfo=TZ).timestamp()


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def state(district: str) -> DistrictState:
    st = DistrictState(district, TZ)
    for i in range(4):
        st.apply(Event(Kind.CASE_FILED, f"e{i}", "/t", district, f"c{i}", NOW - 600 * i,
                       category="theft"))
    st.apply(Event(Kind.CASE_CLEARED, "e9", "/t", district, "c0", NOW - 60))
    st.apply(Event(Kind.HAZARD_FOUND, "h", "/t", district, "h1", NOW - 7200, category="gas",
                   deadline=NOW - 3600, major=True))
    st.apply(Event(Kind.PATROL_COMPLETED, "p", "/t", district, "p1", NOW - 30, ended=NOW - 30))
    st.tick(NOW)  # the worker's overdue timer
    return st


def test_district_figures_and_ratios() -> None:
    reg = CollectorRegistry()
    states = {"jinshui": state("jinshui")}
    reg.register(DistrictCollector(lambda: states, lambda: NOW))
    got = samples(reg)

    def g(name: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted(labels.items()))))

    assert g("watchfloor_rolling_cases_filed", district="jinshui", window="1h") == 4
    assert g("watchfloor_rolling_cases_cleared", district="jinshui", window="24h") == 1
    assert g("watchfloor_rolling_clearance_ratio", district="jinshui", window="24h") == 0.25
    assert g("watchfloor_cases_filed_total", district="jinshui") == 4
    assert g("watchfloor_open_cases", district="jinshui") == 3
    # The hazard's deadline passed an hour ago: overdue, and major.
    assert g("watchfloor_overdue_hazards", district="jinshui") == 1
    assert g("watchfloor_overdue_major_hazards", district="jinshui") == 1
    assert g("watchfloor_overdue_hazards_by_category", district="jinshui", category="gas") == 1
    assert g("watchfloor_rolling_rectification_ratio", district="jinshui", window="24h") == 0
    assert g("watchfloor_last_patrol_timestamp_seconds", district="jinshui") == NOW - 30
    # No dispute was reported: the resolution ratio is absent, not 0 or NaN.
    assert g("watchfloor_rolling_dispute_resolution_ratio", district="jinshui",
             window="24h") is None
    assert not any(k[0].endswith("_created") for k in got)


def test_only_owned_districts_are_exported_and_series_count_matches_the_docs() -> None:
    reg = CollectorRegistry()
    states = {"jinshui": state("jinshui"), "erqi": state("erqi")}
    reg.register(DistrictCollector(lambda: states, lambda: NOW))
    per: dict[str, int] = {}
    for (_, labels) in samples(reg):
        d = dict(labels).get("district")
        if d:
            per[d] = per.get(d, 0) + 1
    assert set(per) == {"jinshui", "erqi"}
    # Drop one district, as a rebalance does: its series vanish at once.
    del states["erqi"]
    assert {dict(lab).get("district") for _, lab in samples(reg)} - {None} == {"jinshui"}
    spec = series_per_district()
    # always + at most the ratios + the last patrol + by-category series present here
    assert per["jinshui"] <= spec["always"] + spec["ratios_at_most"] + 1 + 2
    assert per["jinshui"] >= spec["always"]


def test_pipeline_metrics_names() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, ["t1"])
    m.received["t1"].inc(3)
    m.rejected[("t1", "schema")].inc()
    m.latency.observe_many("t1", [0.05, 0.3, 7.0])
    got = samples(reg)
    assert got[("watchfloor_events_received_total", (("topic", "t1"),))] == 3
    assert got[("watchfloor_events_rejected_total", (("reason", "schema"), ("topic", "t1")))] == 1
    assert got[("watchfloor_processing_latency_seconds_count", (("topic", "t1"),))] == 3
    assert got[("watchfloor_processing_latency_seconds_bucket", (("le", "0.5"), ("topic", "t1")))
               ] == 2
    assert ("process_resident_memory_bytes", ()) in got


def test_bulk_histogram_matches_the_stock_one() -> None:
    from prometheus_client import Histogram

    values = [0.01 * i for i in range(500)] + [100.0, 5000.0, 1e6]
    bounds = (0.1, 1.0, 2.5, 60.0, 3600.0)
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("x_seconds", "x", "topic", bounds)
    reg_a.register(bulk)
    bulk.observe_many("t", values)
    stock = Histogram("x_seconds", "x", ["topic"], buckets=bounds, registry=reg_b)
    for v in values:
        stock.labels("t").observe(v)
    a, b = samples(reg_a), samples(reg_b)
    assert {k: round(v, 6) for k, v in a.items()} == {
        k: round(v, 6) for k, v in b.items() if not k[0].endswith("_created")
    }


def test_a_scrape_reads_and_the_overdue_timer_moves_hazards() -> None:
    reg = CollectorRegistry()
    st = DistrictState("jinshui", TZ)
    st.apply(Event(Kind.HAZARD_FOUND, "h", "/t", "jinshui", "h1", NOW, category="gas",
                   deadline=NOW + 60))
    now = [NOW]
    reg.register(DistrictCollector(lambda: {"jinshui": st}, lambda: now[0]))
    key = ("watchfloor_overdue_hazards", (("district", "jinshui"),))
    assert samples(reg)[key] == 0
    now[0] = NOW + timedelta(minutes=2).total_seconds()
    assert samples(reg)[key] == 0, "a scrape changes nothing"
    st.tick(now[0])
    assert samples(reg)[key] == 1, "the timer's tick does, event or no event"


def test_fast_render_equals_prometheus_client_text() -> None:
    states = {"jinshui": state("jinshui"), "er\"qi\\x": state("erqi")}
    collector = DistrictCollector(lambda: states, lambda: NOW)
    reg = CollectorRegistry()
    reg.register(collector)
    ours = list(text_string_to_metric_families(collector.render().decode()))
    theirs = list(text_string_to_metric_families(generate_latest(reg).decode()))
    assert [(f.name, f.type, f.documentation) for f in ours] == [
        (f.name, f.type, f.documentation) for f in theirs
    ]
    assert [s for f in ours for s in f.samples] == [s for f in theirs for s in f.samples]


def test_exposition_serves_both_parts_once() -> None:
    from streams.metrics import exposition

    reg = CollectorRegistry()
    Metrics(reg, ["t1"])
    states = {"jinshui": state("jinshui")}
    text = exposition(reg, DistrictCollector(lambda: states, lambda: NOW)).decode()
    names = [f.name for f in text_string_to_metric_families(text)]
    assert len(names) == len(set(names))
    assert "watchfloor_events_received" in names and "watchfloor_open_cases" in names


def test_a_fresh_worker_exports_the_series_count_the_docs_give() -> None:
    import re
    from pathlib import Path

    reg = CollectorRegistry()
    Metrics(reg, ["t1", "t2", "t3", "forward"])  # the three sources and the forward topic
    count = sum(len(f.samples) for f in text_string_to_metric_families(
        generate_latest(reg).decode()))
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    stated = re.search(r"\| \*\*fresh worker\*\* \| \*\*(\d+)\*\* \|", doc)
    assert stated is not None and int(stated.group(1)) == count
    assert f"registry exports {count} series" in doc
