"""Metrics: the district collector exports owned districts only, names and values right."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.events import Event, Kind
from streams.exposition import DistrictCollector, series_per_district
from streams.metrics import BulkHistogram, Metrics
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
    # A cohort: of the 4 cases filed in the window, 1 is cleared now.
    assert g("watchfloor_cohort_clearance_ratio", district="jinshui", window="24h") == 0.25
    assert g("watchfloor_rolling_cases_filed_cleared", district="jinshui", window="24h") == 1
    assert g("watchfloor_rolling_clearance_ratio", district="jinshui", window="24h") is None
    assert g("watchfloor_cases_filed_total", district="jinshui") == 4
    assert g("watchfloor_open_cases", district="jinshui") == 3
    # The hazard's deadline passed an hour ago: overdue, and major.
    assert g("watchfloor_overdue_hazards", district="jinshui") == 1
    assert g("watchfloor_overdue_major_hazards", district="jinshui") == 1
    assert g("watchfloor_overdue_hazards_by_category", district="jinshui", category="gas") == 1
    assert g("watchfloor_cohort_rectification_ratio", district="jinshui", window="24h") == 0
    assert g("watchfloor_last_patrol_timestamp_seconds", district="jinshui") == NOW - 30
    # No dispute was reported: the resolution ratio is absent, not 0 or NaN.
    assert g("watchfloor_cohort_dispute_resolution_ratio", district="jinshui",
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
    # docs/metrics.md's count: 11 rolling measures x 4 windows, 8 counters, 5 current
    # figures, late and duplicate, 2 of the matured cohort, disputes open over 30 days,
    # 4 indicators x 2 periods.
    assert spec["always"] == 11 * 4 + 8 + 5 + 2 + 2 + 1 + 4 * 2 == 70
    # Here also: the clearance cohort in 4 windows (cases filed within the hour) and the
    # rectification cohort in 3 (the hazard was found 2 h ago), the last patrol, the open
    # and overdue gas hazard by category, and the overdue major hazard's deadline.
    assert per["jinshui"] == spec["always"] + 4 + 3 + 1 + 2 + 1


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
    from streams.exposition import exposition

    reg = CollectorRegistry()
    Metrics(reg, ["t1"])
    states = {"jinshui": state("jinshui")}
    text = asyncio.run(exposition(reg, DistrictCollector(lambda: states, lambda: NOW))).decode()
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


# What the alerts read: the matured cohort, the surge baseline, the newest overdue major.

DAY = 86400.0


def signals_state() -> DistrictState:
    st = DistrictState("jinshui", TZ)
    events: list[Event] = []

    def apply(kind: Kind, subject: str, ts: float, **kw: object) -> None:
        events.append(Event(kind, f"e{len(events)}", "/t", "jinshui", subject, ts, **kw))  # type: ignore[arg-type]

    # One case a day at 18:00 local for 40 days before NOW (12:00), and five this morning.
    evening = datetime(2026, 4, 11, 18, 0, tzinfo=TZ).timestamp()
    for d in range(40):
        apply(Kind.CASE_FILED, f"c{d}", evening - d * DAY, category="theft")
    for i in range(5):
        apply(Kind.CASE_FILED, f"today{i}", NOW - 3600 * (i + 1), category="theft")
    # Hazards: 3 found 10 days ago (2 rectified since), 1 found 40 days ago, 1 three days ago.
    for i in range(3):
        apply(Kind.HAZARD_FOUND, f"m{i}", NOW - 10 * DAY, category="fire", deadline=NOW - 7 * DAY)
    apply(Kind.HAZARD_RECTIFIED, "m0", NOW - 8 * DAY)
    apply(Kind.HAZARD_RECTIFIED, "m1", NOW - 2 * DAY)
    apply(Kind.HAZARD_FOUND, "old", NOW - 40 * DAY, category="fire", deadline=NOW - 38 * DAY)
    apply(Kind.HAZARD_FOUND, "new", NOW - 3 * DAY, category="fire", deadline=NOW + DAY)
    # Two major hazards past their deadlines (2 h and 10 min ago), an ordinary one 1 min ago.
    apply(Kind.HAZARD_FOUND, "maj-a", NOW - DAY, category="gas", major=True, deadline=NOW - 7200)
    apply(Kind.HAZARD_FOUND, "maj-b", NOW - DAY, category="gas", major=True, deadline=NOW - 600)
    apply(Kind.HAZARD_FOUND, "ord", NOW - DAY, category="gas", deadline=NOW - 60)
    # Disputes reported 40, 35 (resolved since), 31 and 10 days ago.
    for days in (40, 35, 31, 10):
        apply(Kind.DISPUTE_REPORTED, f"d{days}", NOW - days * DAY, category="school",
              unit="x-school")
    apply(Kind.DISPUTE_RESOLVED, "d35", NOW - 20 * DAY)
    for e in sorted(events, key=lambda e: e.ts):  # in time order: none is too late
        assert st.apply(e).name == "COUNTED"
    st.tick(NOW)
    return st


def gauges(st: DistrictState, now: float = NOW) -> dict[str, float]:
    reg = CollectorRegistry()
    reg.register(DistrictCollector(lambda: {st.district: st}, lambda: now))
    return {
        name: value
        for (name, labels), value in samples(reg).items()
        if dict(labels) == {"district": st.district}
    }


def test_matured_cohort_baseline_and_newest_overdue_major() -> None:
    st = signals_state()
    got = gauges(st)
    # Found 35 to 7 days ago: the three of ten days ago, not the 40- or 3-day-old ones.
    assert got["watchfloor_matured_cohort_hazards_found"] == 3
    assert got["watchfloor_matured_cohort_hazards_found_rectified"] == 2
    assert got["watchfloor_matured_cohort_rectification_ratio"] == 2 / 3
    # The baseline: the 28 days before the last 24 h. The window ends with the 5-minute
    # slot holding NOW (12:05); its far edge 29 days before is read from the hour, 13:00.
    hi = datetime(2026, 4, 11, 12, 5, tzinfo=TZ).timestamp()
    lo = datetime(2026, 3, 14, 13, 0, tzinfo=TZ).timestamp()
    evenings = [datetime(2026, 4, 11, 18, 0, tzinfo=TZ).timestamp() - d * DAY for d in range(40)]
    inside = sum(1 for t in evenings if lo <= t < hi)
    assert inside == 28
    assert got["watchfloor_cases_filed_daily_baseline"] == inside / ((hi - lo) / DAY)
    # Open over 30 days: those of 40 and 31 days ago; the newer turned 30 a day ago.
    assert got["watchfloor_disputes_open_over_30d"] == 2
    assert got["watchfloor_dispute_open_30d_newest_timestamp_seconds"] == NOW - DAY
    # The newest deadline among the overdue major hazards; the ordinary one does not count.
    newest = "watchfloor_overdue_major_hazard_newest_deadline_timestamp_seconds"
    assert got[newest] == NOW - 600
    st.apply(Event(Kind.HAZARD_RECTIFIED, "r-b", "/t", "jinshui", "maj-b", NOW - 30))
    assert gauges(st)[newest] == NOW - 7200, "the newest one rectified: back to the older"
    st.apply(Event(Kind.HAZARD_RECTIFIED, "r-a", "/t", "jinshui", "maj-a", NOW - 20))
    assert newest not in gauges(st), "absent while no major hazard is overdue"


def test_signals_are_the_same_after_a_restart_from_a_snapshot() -> None:
    st = signals_state()
    again = DistrictState.from_snapshot(st.to_snapshot(), TZ)
    again.tick(NOW)
    assert gauges(again) == gauges(st)


def test_no_baseline_with_less_than_seven_whole_days_of_history() -> None:
    def district(days: int) -> DistrictState:
        st = DistrictState("jinshui", TZ)
        for d in range(days, -1, -1):  # one case a day at noon, the first ``days`` ago
            st.apply(Event(Kind.CASE_FILED, f"e{d}", "/t", "jinshui", f"c{d}", NOW - d * DAY,
                           category="theft"))
        return st

    # First case on 4 April (a partial day): history from 5 April 00:00 to the start of the
    # last 24 h (11 April 12:05) is 6.5 days, too few.
    assert "watchfloor_cases_filed_daily_baseline" not in gauges(district(8))
    # From 3 April: 7.5 days from 4 April 00:00, holding the cases of 4 to 11 April.
    lo = datetime(2026, 4, 4, tzinfo=TZ).timestamp()
    hi = datetime(2026, 4, 11, 12, 5, tzinfo=TZ).timestamp()
    got = gauges(district(9))["watchfloor_cases_filed_daily_baseline"]
    assert got == 8 / ((hi - lo) / DAY)


def test_gauge_caches_follow_the_state_and_the_clock() -> None:
    st = signals_state()
    now = [NOW]
    reg = CollectorRegistry()
    reg.register(DistrictCollector(lambda: {"jinshui": st}, lambda: now[0]))
    found = ("watchfloor_matured_cohort_hazards_found", (("district", "jinshui"),))
    fixed = ("watchfloor_matured_cohort_hazards_found_rectified", (("district", "jinshui"),))
    assert (samples(reg)[found], samples(reg)[fixed]) == (3, 2)
    st.apply(Event(Kind.HAZARD_RECTIFIED, "x", "/t", "jinshui", "m2", NOW - 10))
    assert samples(reg)[fixed] == 3, "a new event is seen at the next scrape"
    month = ("watchfloor_disputes_open_over_30d", (("district", "jinshui"),))
    assert samples(reg)[month] == 2
    st.apply(Event(Kind.DISPUTE_RESOLVED, "y", "/t", "jinshui", "d40", NOW - 5))
    assert samples(reg)[month] == 1
    now[0] = NOW + 4 * DAY  # the ten-day-old hazards are now 14 days old, the 3-day one 7
    assert samples(reg)[found] == 4


def test_newest_event_counted_per_source_partition() -> None:
    from streams.events import Stream

    topics = {"t.incidents": Stream.INCIDENTS, "t.disputes": Stream.DISPUTES,
              "t.patrols": Stream.PATROLS}  # fmt: skip
    partition = {"jinshui": 0, "erqi": 1, "huiji": 1}
    states = {"erqi": DistrictState("erqi", TZ)}
    reg = CollectorRegistry()
    reg.register(DistrictCollector(lambda: states, lambda: NOW, topics=topics,
                                   partition_of=partition.__getitem__))  # fmt: skip

    def reach() -> dict[tuple[str, str], float]:
        return {
            (dict(labels)["topic"], dict(labels)["partition"]): value
            for (name, labels), value in samples(reg).items()
            if name == "watchfloor_newest_event_timestamp_seconds"
        }

    assert reach() == {}, "nothing counted yet: no series"
    states["jinshui"] = state("jinshui")  # cases up to NOW, a hazard at -2 h, a patrol at -30 s
    huiji = states["huiji"] = DistrictState("huiji", TZ)
    huiji.apply(Event(Kind.CASE_FILED, "h1", "/t", "huiji", "hc", NOW - 7200, category="theft"))
    states["erqi"].apply(Event(Kind.CASE_FILED, "e1", "/t", "erqi", "ec", NOW - 60,
                               category="theft"))  # fmt: skip
    # Per topic and partition, the newest event counted from it over its districts.
    assert reach() == {
        ("t.incidents", "0"): NOW,
        ("t.patrols", "0"): NOW - 30,
        ("t.incidents", "1"): NOW - 60,
    }


