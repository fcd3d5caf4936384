"""Golden tests: each seed scenario through the real broker into a real worker, figures exact."""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.events import Stream
from streams.settings import Settings
from streams.simulator.files import load_expected, read_records, scenario_file
from streams.simulator.produce import Pacer, ProduceSummary, produce_records
from streams.simulator.records import SimRecord
from streams.simulator.retime import retime_record

from .harness import Cluster, WorkerProcess, sample, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TZ = ZoneInfo("Asia/Shanghai")
ROLES = {Stream.INCIDENTS: "incidents", Stream.DISPUTES: "disputes", Stream.PATROLS: "patrols"}

# The overdue week is replayed on a compressed clock: every instant at which the
# expected overdue set changes, and every checkpoint, is a knot, and consecutive knots
# are STEP seconds of wall clock apart (in between, time runs linearly, so the order of
# every event and deadline is kept). After the last knot time runs at its real pace, so
# hazards due "30 to 60 days ahead" stay in the future.
STEP = 1.2
# How long before the first knot the replay's clock starts: time to start the producer.
LEAD = 3.0
# An observation counts for a knot's interval only if it finished this long before the
# next knot: the worker judges overdue by its own clock when it answers.
GUARD = 0.02
POLL = 0.05
SETTLE = 2.0  # the final set must hold this long after the last knot


# --------------------------------------------------------------------------------------
# One worker for every scenario: each scenario has its own districts
# --------------------------------------------------------------------------------------


@dataclass
class Golden:
    """The cluster, its worker, and what a replay needs to know about both."""

    cluster: Cluster
    worker: WorkerProcess
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.cluster.settings()

    def topic(self, stream: Stream) -> str:
        return self.cluster.topic(ROLES[stream])

    def processed(self, metrics: Mapping[Any, float] | None = None) -> dict[str, float]:
        m = self.worker.metrics() if metrics is None else metrics
        return {
            self.topic(s): sample(m, "watchfloor_events_processed_total", topic=self.topic(s)) or 0
            for s in ROLES
        }

    def replay(self, records: Sequence[SimRecord], districts: Sequence[str]) -> ProduceSummary:
        """Produce the records with the simulator's producer; wait until every one is counted."""
        before = self.processed()
        t0 = time.monotonic()
        summary = asyncio.run(produce_records(records, self.settings))
        assert summary.failed == 0 and summary.delivered == len(records)
        want = Counter(self.topic(r.stream) for r in records)
        target = {t: before[t] + want[t] for t in before}
        got: dict[str, float] = {}

        def counted() -> bool:
            got.update(self.processed())
            return got == target

        wait_for(counted, timeout=90, interval=0.2,
                 what=f"{len(records)} records counted (want {target})")  # fmt: skip
        self.timings[f"replay of {len(records)} records"] = time.monotonic() - t0
        self.assert_clean(districts)
        return summary

    def assert_clean(self, districts: Sequence[str]) -> None:
        """Nothing rejected, nothing late, nothing duplicated: the scenarios are all valid."""
        m = self.worker.metrics()
        bad = {
            (name, labels): v
            for (name, labels), v in m.items()
            if v
            and name
            in (
                "watchfloor_events_rejected_total",
                "watchfloor_late_events_total",
                "watchfloor_duplicate_events_total",
                "watchfloor_dead_letter_errors_total",
            )
        }
        assert not bad, f"the worker rejected scenario records: {bad}"
        # The series exist (the check above is not looking at the wrong names).
        for d in districts:
            assert sample(m, "watchfloor_late_events_total", district=d) == 0, d
            assert sample(m, "watchfloor_duplicate_events_total", district=d) == 0, d

    def district(self, district: str, **query: str) -> dict[str, Any]:
        path = f"/api/v1/districts/{district}"
        if query:
            path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        status, body = self.worker.get(path)
        assert status == 200, f"GET {path} answered {status}: {body}"
        assert isinstance(body, dict)
        return body

    def all_open(self, district: str) -> list[dict[str, Any]]:
        """Every open hazard of a district, page after page."""
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            q = {"limit": "300", **({"cursor": cursor} if cursor else {})}
            body = self.district(district, **q)
            items += body["open_hazards"]
            cursor = body["open_hazards_page"]["next_cursor"]
            if not cursor:
                return items

    def all_overdue(self, district: str) -> list[dict[str, Any]]:
        """The district's overdue list from /api/v1/overdue, page after page."""
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            path = f"/api/v1/overdue?district={district}&limit=300"
            status, body = self.worker.get(path + (f"&cursor={cursor}" if cursor else ""))
            assert status == 200, body
            assert "incomplete" not in body, body
            items += body["items"]
            cursor = body["next_cursor"]
            if not cursor:
                return items

    def period(self, district: str, **query: str) -> dict[str, Any]:
        block = self.district(district, **query)["period"]
        assert isinstance(block, dict)
        return block


@pytest.fixture(scope="module")
def golden(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Golden]:
    cluster = Cluster(kafka_bootstrap)
    cluster.create_topics()
    worker = WorkerProcess(cluster, tmp_path_factory.mktemp("golden"), "golden").start()
    try:
        t0 = time.monotonic()
        worker.wait_ready()
        g = Golden(cluster, worker)
        g.timings["worker ready"] = time.monotonic() - t0
        yield g
        print("\ngolden timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in g.timings.items()))
    finally:
        worker.stop()


def records_of(name: str) -> list[SimRecord]:
    return list(read_records(scenario_file(name)))


def ts(rec: SimRecord) -> float:
    assert rec.ts is not None, rec
    return rec.ts


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def last_day(end: str) -> str:
    """The last date inside a half-open span that ends at a local midnight."""
    return (datetime.fromisoformat(end).astimezone(TZ) - timedelta(days=1)).date().isoformat()


def assert_rate(rate: float | None, num: int, den: int, fraction: str, percent: float) -> None:
    """A rate from the API: the fraction of its own counts, as the golden file writes it."""
    assert Fraction(num, den) == Fraction(fraction), f"{num}/{den} is not {fraction}"
    assert rate is not None
    # The API gives six decimals of the exact fraction.
    assert abs(Fraction(str(rate)) - Fraction(num, den)) <= Fraction(1, 2_000_000)
    assert round(rate * 100, 1) == percent
    assert round(float(Fraction(fraction)) * 100, 1) == percent


# --------------------------------------------------------------------------------------
# 数字城管: found and not rectified per month, cohort rectification rates
# --------------------------------------------------------------------------------------


def test_city_management_cohort_rates_month_by_month(golden: Golden) -> None:
    exp = load_expected("city-management-2025q2")
    d = exp["district"]
    records = records_of("city-management-2025q2")
    assert len(records) == exp["events"]
    months = exp["months"]

    # Replayed month by month: after each month's events, every month so far shows its
    # cohort as rectified by then (a May rectification of an April hazard raises April).
    start = 0
    for i, month in enumerate(months):
        end = next((n for n, r in enumerate(records) if ts(r) >= when(month["to"])), len(records))
        stage = records[start:end]
        assert stage and all(when(month["from"]) <= ts(r) < when(month["to"]) for r in stage)
        golden.replay(stage, [d])
        start = end
        by = f"end of {month['month']}"
        for earlier in months[: i + 1]:
            fig = golden.period(d, period=earlier["month"])["figures"]
            where = (by, earlier["month"])
            assert fig["hazards_found"] == earlier["found"], where
            assert fig["hazards_found_rectified"] == earlier["rectified_by"][by], where
            assert fig["hazards_rectified"] == earlier["rectified_events_in_month"]
    assert start == len(records)

    for month in months:
        block = golden.period(d, period=month["month"])
        assert (block["from"], block["to"]) == (month["from"], month["to"])
        fig = block["figures"]
        found, rectified = fig["hazards_found"], fig["hazards_found_rectified"]
        assert (found, rectified) == (month["found"], month["rectified"])
        assert found - rectified == month["not_rectified"]
        assert_rate(fig["rectification_rate"], rectified, found,
                    month["rectification_rate"], month["rectification_rate_percent"])  # fmt: skip
    assert [m["rectification_rate_percent"] for m in months] == [94.6, 74.6, 88.1]

    # The quarter, both ways of asking for it.
    q_from, q_to = months[0]["from"][:10], last_day(months[-1]["to"])
    quarter = golden.period(d, period=f"{q_from}..{q_to}")
    assert quarter == golden.period(d, **{"from": q_from, "to": q_to})
    fig = quarter["figures"]
    assert fig["hazards_found"] == sum(m["found"] for m in months)
    assert fig["hazards_found_rectified"] == sum(m["rectified"] for m in months)
    assert fig["hazards_rectified"] == sum(m["rectified_events_in_month"] for m in months)

    # What is open now. Every deadline is in 2025, so on today's clock every open hazard
    # is overdue; the golden file's overdue_at_end counts those past their deadline on
    # the scenario's last day, which the API's deadlines give.
    # Overdue moves on the wall clock, by a timer every second: the last records may
    # have been counted just now.
    wait_for(lambda: golden.district(d)["current"]["overdue_hazards"] == exp["open_at_end"],
             timeout=10, interval=0.2, what="the overdue timer's next tick")
    body = golden.district(d)
    assert body["current"]["open_hazards"] == exp["open_at_end"]
    open_items = golden.all_open(d)
    assert len(open_items) == exp["open_at_end"]
    assert [h["id"] for h in body["open_hazards"]] == [
        h["id"] for h in open_items[: len(body["open_hazards"])]]
    assert sum(when(h["deadline"]) < when(exp["end"]) for h in open_items) == exp["overdue_at_end"]
    assert max(when(h["deadline"]) for h in open_items) < time.time()
    assert body["current"]["overdue_hazards"] == exp["open_at_end"]
    assert body["overdue_hazards_page"]["total"] == exp["open_at_end"]
    assert len(golden.all_overdue(d)) == exp["open_at_end"]

    m = golden.worker.metrics()
    assert sample(m, "watchfloor_hazards_found_total", district=d) == sum(
        x["found"] for x in months
    )
    assert sample(m, "watchfloor_hazards_rectified_total", district=d) == sum(
        x["rectified_events_in_month"] for x in months
    )
    assert sample(m, "watchfloor_open_hazards", district=d) == exp["open_at_end"]
    assert sample(m, "watchfloor_overdue_hazards", district=d) == exp["open_at_end"]


# --------------------------------------------------------------------------------------
# Criminal cases January to September: 1,538 filed, 778 cleared
# --------------------------------------------------------------------------------------


def test_cases_january_to_september(golden: Golden) -> None:
    exp = load_expected("cases-2025-jan-sep")
    d = exp["district"]
    records = records_of("cases-2025-jan-sep")
    assert len(records) == exp["events"]
    golden.replay(records, [d])

    first, last = exp["from"][:10], last_day(exp["to"])
    block = golden.period(d, period=f"{first}..{last}")
    assert block == golden.period(d, **{"from": first, "to": last})
    assert (block["from"], block["to"]) == (exp["from"], exp["to"])
    fig = block["figures"]
    assert (fig["cases_filed"], fig["cases_cleared"]) == (exp["filed"], exp["cleared"])
    assert (fig["cases_filed"], fig["cases_cleared"]) == (1538, 778)
    # 结案率 as a cohort: of the cases filed in the period, those cleared since (here every
    # clearance is of a case filed in the period, so the cohort and the flow agree).
    assert fig["cases_filed_cleared"] == exp["cleared"]
    assert_rate(fig["clearance_rate"], fig["cases_filed_cleared"], fig["cases_filed"],
                exp["clearance_rate"], exp["clearance_rate_percent"])  # fmt: skip
    assert exp["clearance_rate_percent"] == 50.6

    # Per category over the period, and the two-robberies-one-theft group (两抢一盗).
    by_cat = block["by_category"]
    for cat, want in exp["by_category"].items():
        assert by_cat["cases_filed"].get(cat, 0) == want["filed"], cat
        assert by_cat["cases_cleared"].get(cat, 0) == want["cleared"], cat
    assert set(by_cat["cases_filed"]) == set(exp["by_category"])
    group, trio = ("robbery", "snatching", "theft"), exp["two_robberies_one_theft"]
    assert sum(by_cat["cases_filed"][c] for c in group) == trio["filed"]
    assert sum(by_cat["cases_cleared"][c] for c in group) == trio["cleared"]

    # Per month, by each event's own time.
    for month in exp["months"]:
        fig = golden.period(d, period=month["month"])["figures"]
        got = (fig["cases_filed"], fig["cases_cleared"])
        assert got == (month["filed"], month["cleared"]), month

    body = golden.district(d)
    assert body["current"]["open_cases"] == exp["open_at_end"]
    m = golden.worker.metrics()
    assert sample(m, "watchfloor_cases_filed_total", district=d) == exp["filed"]
    assert sample(m, "watchfloor_cases_cleared_total", district=d) == exp["cleared"]
    assert sample(m, "watchfloor_open_cases", district=d) == exp["open_at_end"]


# --------------------------------------------------------------------------------------
# Destabilising disputes: 42 found, mediation first, over 80 % resolved
# --------------------------------------------------------------------------------------


def test_disputes_found_mediated_resolved(golden: Golden) -> None:
    exp = load_expected("disputes-2025")
    d = exp["district"]
    records = records_of("disputes-2025")
    assert len(records) == exp["events"]
    golden.replay(records, [d])

    first, last = exp["from"][:10], last_day(exp["to"])
    block = golden.period(d, period=f"{first}..{last}")
    assert (block["from"], block["to"]) == (exp["from"], exp["to"])
    # Nothing falls in December: the year gives the same figures.
    assert golden.period(d, period=first[:4])["figures"] == block["figures"]
    fig = block["figures"]
    assert fig["disputes_reported"] == exp["reported"] == 42
    assert fig["disputes_mediated"] == exp["mediation_started"]
    assert fig["disputes_resolved"] == exp["resolved"]
    assert fig["disputes_escalated"] == exp["escalated"]
    # 化解率 as a cohort: of the 42 disputes found in the period, the share resolved since.
    assert fig["disputes_reported_resolved"] == exp["resolved"]
    assert fig["disputes_reported_resolved"] / fig["disputes_reported"] >= 0.8
    assert_rate(fig["dispute_resolution_rate"], fig["disputes_reported_resolved"],
                fig["disputes_reported"], exp["resolution_rate"],
                exp["resolution_rate_percent"])  # fmt: skip
    # A month's cohort: disputes found in March, resolved whenever since.
    march = golden.period(d, period="2025-03")["figures"]
    assert march["dispute_resolution_rate"] == (
        round(march["disputes_reported_resolved"] / march["disputes_reported"], 6)
        if march["disputes_reported"]
        else None
    )

    by_cat = block["by_category"]
    for cat, want in exp["by_category"].items():
        got = {
            "reported": by_cat["disputes_reported"].get(cat, 0),
            "resolved": by_cat.get("disputes_resolved", {}).get(cat, 0),
            "escalated": by_cat.get("disputes_escalated", {}).get(cat, 0),
        }
        got["open"] = got["reported"] - got["resolved"] - got["escalated"]
        assert got == want, cat
    assert set(by_cat["disputes_reported"]) == set(exp["by_category"])

    body = golden.district(d)
    assert body["current"]["open_disputes"] == exp["open_at_end"]
    m = golden.worker.metrics()
    assert sample(m, "watchfloor_disputes_reported_total", district=d) == exp["reported"]
    assert sample(m, "watchfloor_disputes_resolved_total", district=d) == exp["resolved"]
    assert sample(m, "watchfloor_disputes_escalated_total", district=d) == exp["escalated"]
    assert sample(m, "watchfloor_open_disputes", district=d) == exp["open_at_end"]


# --------------------------------------------------------------------------------------
# Work safety: the four indicators down, and the control target of 103 deaths
# --------------------------------------------------------------------------------------

INDICATORS = ("accidents", "deaths", "serious_injuries", "direct_loss_yuan")


def accident_figures(records: Sequence[SimRecord]) -> list[tuple[str, float, list[int]]]:
    """Each accident as (district, time of its first report, [1, deaths, injuries, loss] of
    its latest report): the scenario's truth, read from the records themselves."""
    reports: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        doc = orjson.loads(rec.value)
        reports.setdefault(doc["subject"], []).append(doc)
    out = []
    for docs in reports.values():
        docs.sort(key=lambda d: when(d["time"]))
        latest = docs[-1]["data"]
        figures = [1, latest["deaths"], latest["serious_injuries"], latest["direct_loss_yuan"]]
        out.append((docs[0]["district"], when(docs[0]["time"]), figures))
    return out


def test_work_safety_four_indicators_and_the_death_target(golden: Golden) -> None:
    exp = load_expected("work-safety-2025h1")
    districts = exp["districts"]
    records = records_of("work-safety-2025h1")
    assert len(records) == exp["events"]
    golden.replay(records, districts)

    first, last = exp["period"]["from"][:10], last_day(exp["period"]["to"])
    status, body = golden.worker.get(f"/api/v1/work-safety?period={first}..{last}")
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["year"] == 2025
    assert (body["period"]["from"], body["period"]["to"]) == (
        exp["period"]["from"], exp["period"]["to"])  # fmt: skip
    assert (body["previous_period"]["from"], body["previous_period"]["to"]) == (
        exp["previous_period"]["from"], exp["previous_period"]["to"])  # fmt: skip

    # The city: "死亡人数控制指标为103人,比上年减少了21人", and the four indicators all down.
    city, want = body["city"], exp["city"]
    target = city["deaths_target"]
    assert (target["target"], target["last_year"], target["change_from_last_year"]) == (
        103, 124, -21)  # fmt: skip
    assert target["used"] == want["used"] == want["current"]["deaths"]
    assert target["remaining"] == 103 - want["used"]
    assert target["used_ratio"] == round(want["used"] / 103, 6)
    assert target["alert_share"] == 0.8 and target["alert_share_reached"] is False
    for name in INDICATORS:
        cur, prev = want["current"][name], want["previous"][name]
        assert city["indicators"][name] == {
            "current": cur,
            "previous": prev,
            "change": cur - prev,
            "change_ratio": round((cur - prev) / prev, 6),
        }, name
        assert cur < prev, f"{name} is not down on the year before"

    # Every district of the reference data is listed; the scenario's with its figures.
    by = {d["district"]: d for d in body["districts"]}
    assert len(by) == 10 and set(districts) <= set(by)
    for d, fig in exp["by_district"].items():
        got = by[d]
        for name in INDICATORS:
            assert got["indicators"][name]["current"] == fig["current"][name], (d, name)
            assert got["indicators"][name]["previous"] == fig["previous"][name], (d, name)
        assert got["year_deaths"] == fig["used"]
        t = got["deaths_target"]
        assert (t["target"], t["last_year"], t["used"]) == (fig["target"], fig["last_year"],
                                                            fig["used"])  # fmt: skip
        assert t["alert_share_reached"] is (fig["used"] >= fig["alert_threshold"])
        assert t["alert_share_reached_at"] == fig["alert_share_reached_at"], d
    assert by["baihe"]["deaths_target"]["alert_share_reached"] is True
    for d in set(by) - set(districts):
        assert all(v["current"] == 0 for v in by[d]["indicators"].values()), d
        assert by[d]["deaths_target"]["used"] == 0

    # Last year whole: each district's 2024 deaths are its target's last-year figure.
    status, body = golden.worker.get("/api/v1/work-safety?period=2024")
    assert status == 200 and isinstance(body, dict)
    assert body["city"]["deaths_target"] is None, "the reference data sets no 2024 targets"
    by = {d["district"]: d for d in body["districts"]}
    for d, fig in exp["by_district"].items():
        assert by[d]["indicators"]["deaths"]["current"] == fig["year_2024"]["deaths"]
        assert fig["year_2024"]["deaths"] == fig["last_year"]
    deaths_2024 = want["year_2024"]["deaths"]
    assert body["city"]["indicators"]["deaths"] == {
        "current": deaths_2024, "previous": 0, "change": deaths_2024, "change_ratio": None,
    }  # fmt: skip

    status, body = golden.worker.get("/api/v1/work-safety?period=2024-12-01..2025-01-31")
    assert status == 400 and "one calendar year" in body["error"]

    # The gauges: this year to date and the same dates last year, on the worker's clock.
    now = datetime.now(TZ)
    ytd_lo = datetime(now.year, 1, 1, tzinfo=TZ).timestamp()
    ytd_hi = (datetime.combine(now.date(), datetime.min.time(), TZ) + timedelta(days=1))
    prev_hi = ytd_hi.replace(year=now.year - 1) if not (now.month == 2 and now.day == 29) else (
        datetime(now.year - 1, 3, 1, tzinfo=TZ))  # fmt: skip
    prev_lo = datetime(now.year - 1, 1, 1, tzinfo=TZ).timestamp()
    truth = accident_figures(records)
    m = golden.worker.metrics()
    for d in districts:
        for period, lo, hi in (
            ("year_to_date", ytd_lo, ytd_hi.timestamp()),
            ("same_period_last_year", prev_lo, prev_hi.timestamp()),
        ):
            sums = [0, 0, 0, 0]
            for district, t, figures in truth:
                if district == d and lo <= t < hi:
                    sums = [a + b for a, b in zip(sums, figures, strict=True)]
            for name, value in zip(INDICATORS, sums, strict=True):
                got = sample(m, f"watchfloor_work_safety_{name}", district=d, period=period)
                assert got == value, (d, period, name)


# --------------------------------------------------------------------------------------
# The overdue week, on a compressed clock that ends in the future
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """Scenario offsets (seconds after the first event) to wall-clock POSIX seconds.

    Knot i is at ``wall0 + i * step``; between knots time runs linearly (increasing, so
    every order is kept); after the last knot it runs at its real pace.
    """

    knots: tuple[float, ...]
    origin: float  # the scenario's first event, POSIX seconds
    wall0: float
    step: float

    def wall(self, offset: float) -> float:
        k = self.knots
        if offset >= k[-1]:
            return self.wall0 + (len(k) - 1) * self.step + (offset - k[-1])
        if offset <= k[0]:
            return self.wall0 + (offset - k[0])
        i = bisect.bisect_right(k, offset) - 1
        return self.wall0 + (i + (offset - k[i]) / (k[i + 1] - k[i])) * self.step

    def to(self, t: float) -> float:
        """For :func:`retime_record`: a scenario time to its wall time, to the millisecond."""
        return round(self.wall(t - self.origin), 3)


@dataclass
class Overdue:
    """One hazard of the golden file's overdue list."""

    subject: str
    district: str
    major: bool
    deadline: float  # offset
    since: float  # offset from which it is overdue
    until: float | None  # offset of its rectification, if any

    def at(self, offset: float) -> bool:
        """Overdue just after ``offset`` (a knot), until the next knot."""
        return self.since <= offset and (self.until is None or self.until > offset)


@dataclass
class Seen:
    """What the polls saw in one knot's interval."""

    offset: float
    why: str
    lag: float | None = None  # first matching observation, seconds after the knot
    polls: int = 0
    counts: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


def observe(g: Golden, districts: Sequence[str]) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """Counted records first (so the figures read after include them), then each
    district's overdue ids from the API and the overdue gauges from /metrics."""
    m = g.worker.metrics()
    processed = g.processed(m)[g.topic(Stream.PATROLS)]
    api = {}
    for d in districts:
        body = g.district(d, limit="1000")
        api[d] = {
            "ids": sorted(h["subject"] for h in body["overdue_hazards"]),
            "count": body["current"]["overdue_hazards"],
            "major": body["current"]["overdue_major_hazards"],
        }
    m2 = g.worker.metrics()
    gauges = {
        d: (
            sample(m2, "watchfloor_overdue_hazards", district=d),
            sample(m2, "watchfloor_overdue_major_hazards", district=d),
        )
        for d in districts
    }
    return processed, api, gauges


def test_overdue_week_goes_overdue_on_the_wall_clock(golden: Golden) -> None:
    exp = load_expected("overdue-week")
    districts = exp["districts"]
    origin = when(exp["first_event"])
    last = when(exp["last_event"]) - origin
    hazards = [
        Overdue(h["subject"], h["district"], h["major"], when(h["deadline"]) - origin,
                h["overdue_from_offset_seconds"], h["overdue_until_offset_seconds"])
        for h in exp["overdue_hazards"]
    ]  # fmt: skip
    assert all(h.since == h.deadline for h in hazards)
    checkpoints = {c["offset_seconds"]: c for c in exp["checkpoints"]}
    reasons: dict[float, list[str]] = {0.0: ["first event"], last: ["last event"]}
    for c in checkpoints:
        reasons.setdefault(c, []).append("checkpoint")
    for h in hazards:
        reasons.setdefault(h.since, []).append(f"deadline {h.subject}")
        if h.until is not None:
            reasons.setdefault(h.until, []).append(f"rectified {h.subject}")
    knots = tuple(sorted(reasons))

    def expected_at(offset: float) -> dict[str, list[str]]:
        return {
            d: sorted(h.subject for h in hazards if h.district == d and h.at(offset))
            for d in districts
        }

    def majors_at(offset: float) -> dict[str, int]:
        return {
            d: sum(h.major for h in hazards if h.district == d and h.at(offset)) for d in districts
        }

    # The golden file agrees with itself: checkpoint counts are its overdue list's.
    for offset, c in checkpoints.items():
        for d in districts:
            assert len(expected_at(offset)[d]) == c[d]["overdue"], (offset, d)
            assert majors_at(offset)[d] == c[d]["overdue_major"], (offset, d)

    raw = records_of("overdue-week")
    assert len(raw) == exp["events"]
    assert ts(raw[0]) == origin and ts(raw[-1]) == origin + last
    timeline = Timeline(knots, origin, time.time() + LEAD, STEP)
    records = [retime_record(r, timeline.to) for r in raw]
    # The replay's last event is a knot; the first deadline after it one step later.
    assert timeline.wall(last) < timeline.wall(min(h.since for h in hazards if h.since > last))
    due_by = [sum(1 for r in raw if ts(r) - origin <= k) for k in knots]
    before = golden.processed()[golden.topic(Stream.PATROLS)]

    # Records go out at their wall times from a thread, as a live system would send them.
    outcome: dict[str, Any] = {}

    def produce() -> None:
        pacer = Pacer(timeline.wall0, time.monotonic() + (timeline.wall0 - time.time()), 1.0)
        try:
            outcome["summary"] = asyncio.run(produce_records(records, golden.settings, pacer=pacer))
        except BaseException as exc:  # reported by the test thread
            outcome["error"] = exc

    producer = threading.Thread(target=produce, name="golden-overdue-week", daemon=True)
    producer.start()

    seen: list[Seen] = []
    try:
        for j, k in enumerate(knots):
            start = timeline.wall(k)
            end = timeline.wall(knots[j + 1]) if j + 1 < len(knots) else start + SETTLE
            want = expected_at(k)
            wmajor = majors_at(k)
            s = Seen(k, ", ".join(reasons[k]))
            seen.append(s)
            _sleep_until(start)
            while True:
                t_req = time.time()
                processed, api, gauges = observe(golden, districts)
                if time.time() >= end - GUARD:
                    break  # the worker may have answered after the next knot
                s.polls += 1
                match = processed >= before + due_by[j] and all(
                    api[d]["ids"] == want[d]
                    and api[d]["count"] == len(want[d])
                    and api[d]["major"] == wmajor[d]
                    and gauges[d] == (len(want[d]), wmajor[d])
                    for d in districts
                )
                if match and s.lag is None:
                    s.lag = t_req - start
                    s.counts = dict(gauges)
                elif not match and s.lag is not None:
                    pytest.fail(
                        f"At offset {k:.0f} s ({s.why}), {t_req - start:.2f}s after its wall "
                        f"time, the overdue set changed before the next knot: want {want}, "
                        f"majors {wmajor}; the API shows {api}, /metrics {gauges}, "
                        f"{processed - before:.0f} of {due_by[j]} records counted"
                    )
                time.sleep(POLL)
            if s.lag is None:
                pytest.fail(
                    f"At offset {k:.0f} s ({s.why}) the overdue set never became {want} "
                    f"(majors {wmajor}) within its {end - start:.2f}s; last seen: API {api}, "
                    f"/metrics {gauges}, {processed - before:.0f} of {due_by[j]} records "
                    f"counted\n{golden.worker.log_tail(20)}"
                )
            if k in checkpoints:
                for d in districts:
                    c = checkpoints[k][d]
                    assert s.counts[d] == (c["overdue"], c["overdue_major"]), (k, d)
    finally:
        producer.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["summary"].delivered == len(records)
    golden.assert_clean(districts)

    lags = [x.lag for x in seen if x.lag is not None]
    golden.timings["overdue week replay"] = time.time() - timeline.wall0
    golden.timings["knot lag max"] = max(lags)
    for x in seen:
        print(f"  offset {x.offset:>9.0f} lag {x.lag:.3f}s polls {x.polls:>3}  {x.why}")

    # The final set, exactly: ids, majors, deadlines where the timeline put them.
    final = expected_at(knots[-1])
    never = set(exp["never_overdue"])
    deadline_of = {
        doc["subject"]: when(doc["data"]["deadline"]) - origin
        for doc in (orjson.loads(r.value) for r in raw)
        if doc["type"] == "watchfloor.hazard.found.v1"
    }
    by_subject = {h.subject: h for h in hazards}
    m = golden.worker.metrics()
    open_far = 0
    for d in districts:
        body = golden.district(d, limit="1000")
        overdue = golden.all_overdue(d)
        deadlines = [when(h["deadline"]) for h in overdue]
        assert deadlines == sorted(deadlines)  # longest overdue first
        assert sorted(h["subject"] for h in overdue) == final[d]
        for h in overdue:
            want_deadline = timeline.wall(by_subject[h["subject"]].deadline)
            assert abs(when(h["deadline"]) - want_deadline) < 0.002, h
            assert h["major"] == by_subject[h["subject"]].major
            assert h["overdue_seconds"] > 0
        # Whatever else is open is due weeks ahead and was never overdue (open_far).
        rest = [h for h in body["open_hazards"] if not h["overdue"]]
        assert {h["id"] for h in rest} <= never
        for h in rest:
            assert abs(when(h["deadline"]) - timeline.wall(deadline_of[h["id"]])) < 0.002, h
            assert when(h["deadline"]) > time.time() + 20 * 86400, h
        open_far += len(rest)
        assert body["current"]["open_hazards"] == len(overdue) + len(rest)
        assert sample(m, "watchfloor_open_hazards", district=d) == len(overdue) + len(rest)
        assert sample(m, "watchfloor_overdue_hazards", district=d) == len(final[d])
        assert sample(m, "watchfloor_overdue_major_hazards", district=d) == majors_at(knots[-1])[d]
    assert open_far == exp["groups"]["open_far"]
    # Every hazard found was counted; every rectification too (on time, late, and the
    # two the look-back visit reopened).
    groups = exp["groups"]
    assert sum(
        sample(m, "watchfloor_hazards_found_total", district=d) or 0 for d in districts
    ) == sum(groups.values())
    assert (
        sum(sample(m, "watchfloor_hazards_rectified_total", district=d) or 0 for d in districts)
        == groups["on_time"] + groups["late"] + groups["reopened"]
    )


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))
