"""City management, April to June 2025: cohort rates recounted from the events."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from streams.events import Kind
from streams.simulator.files import load_expected
from streams.windows import Measure

from .support import TZ, counted_states, events, month_of, when


def test_city_management_cohort_rates_recounted_from_events() -> None:
    expected = load_expected("city-management-2025q2")
    evs = events("city-management-2025q2")
    assert {e["_kind"] for e in evs} == {Kind.HAZARD_FOUND, Kind.HAZARD_RECTIFIED}
    found: dict[str, dict[str, Any]] = {}
    rectified: dict[str, float] = {}
    for e in evs:
        if e["_kind"] is Kind.HAZARD_FOUND:
            found[e["subject"]] = e
        else:
            assert e["subject"] in found and e["subject"] not in rectified
            assert e["_ts"] > found[e["subject"]]["_ts"]
            rectified[e["subject"]] = e["_ts"]
    end = when(expected["end"])
    assert max(e["_ts"] for e in evs) < end
    cohorts: dict[str, list[str]] = defaultdict(list)
    for subject, e in found.items():
        cohorts[month_of(e["_ts"])].append(subject)
    events_in_month = Counter(month_of(t) for t in rectified.values())
    rates = []
    for row in expected["months"]:
        cohort = cohorts[row["month"]]
        done = [s for s in cohort if s in rectified]
        assert len(cohort) == row["found"]
        assert len(done) == row["rectified"]
        assert len(cohort) - len(done) == row["not_rectified"]
        assert round(100 * len(done) / len(cohort), 1) == row["rectification_rate_percent"]
        assert row["rectification_rate"] == f"{len(done)}/{len(cohort)}"
        assert when(row["from"]) <= min(found[s]["_ts"] for s in cohort)
        assert max(found[s]["_ts"] for s in cohort) < when(row["to"])
        for label, count in row["rectified_by"].items():
            cut = datetime.strptime(label.removeprefix("end of "), "%Y-%m").replace(tzinfo=TZ)
            cut = (cut + timedelta(days=32)).replace(day=1)
            assert sum(1 for s in cohort if rectified.get(s, end) < cut.timestamp()) == count
        assert events_in_month[row["month"]] == row["rectified_events_in_month"]
        rates.append(row["rectification_rate_percent"])
    # The seed document's table, computed from its own counts.
    assert [(r["found"], r["not_rectified"]) for r in expected["months"]] == [
        (465, 25),
        (1325, 336),
        (2084, 248),
    ]
    assert rates == [94.6, 74.6, 88.1]
    quoted = [r["rate_quoted_in_speech_percent"] for r in expected["months"]]
    assert quoted == [94, 73, 82] and quoted[1:] != [round(r) for r in rates[1:]]
    # Some April hazards are rectified in May: the cohort rate moves after the month.
    april = expected["months"][0]["rectified_by"]
    assert april["end of 2025-04"] < april["end of 2025-05"] < april["end of 2025-06"]
    open_now = [s for s in found if s not in rectified]
    assert len(open_now) == expected["open_at_end"]
    overdue = sum(1 for s in open_now if when(found[s]["data"]["deadline"]) < end)
    assert overdue == expected["overdue_at_end"]


def test_engine_state_reads_the_expected_figures() -> None:
    expected = load_expected("city-management-2025q2")
    state = counted_states("city-management-2025q2")["jinshui"]
    for row in expected["months"]:
        counts = state.counts(when(row["from"]), when(row["to"]))
        assert counts[Measure.HAZARDS_FOUND] == row["found"]
        assert counts[Measure.HAZARDS_FOUND_RECTIFIED] == row["rectified"]
        assert counts[Measure.HAZARDS_RECTIFIED] == row["rectified_events_in_month"]
    assert state.open_hazards == expected["open_at_end"]
    assert state.tick(when(expected["end"])) == expected["overdue_at_end"]
