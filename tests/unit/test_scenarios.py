"""The seed scenarios: files as the builders make them, and figures recounted from the events."""

from __future__ import annotations

import gzip
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.clock import FixedClock
from streams.events import Kind
from streams.reference import load_reference
from streams.settings import PROJECT_ROOT
from streams.simulation import SCENARIOS, Intent, SimRecord, build_scenario, record_to_line
from streams.simulator import (
    SCENARIO_DIR,
    load_city,
    load_expected,
    read_records,
    scenario_file,
    scenario_names,
    shifted,
)
from streams.state import DistrictState, Outcome
from streams.validation import EventValidator
from streams.windows import Measure

CITY_FILE = PROJECT_ROOT / "seeds" / "reference" / "city.json"
TZ = ZoneInfo("Asia/Shanghai")


def events(name: str) -> list[dict[str, Any]]:
    """The scenario's events, each the parsed CloudEvent plus its record's facts."""
    out = []
    for rec in read_records(scenario_file(name)):
        doc = orjson.loads(rec.value)
        doc["_ts"] = datetime.fromisoformat(doc["time"]).timestamp()
        doc["_kind"] = rec.kind
        doc["_key"] = rec.key.decode()
        out.append(doc)
    return out


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, TZ).strftime("%Y-%m")


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_every_scenario_has_files_and_a_readme() -> None:
    assert scenario_names() == sorted(SCENARIOS)
    for name in SCENARIOS:
        folder = SCENARIO_DIR / name
        assert (folder / "README.md").read_text(encoding="utf-8").strip()
        assert (folder / "expected.json").is_file()
        scenario_file(name)
    assert (SCENARIO_DIR / "README.md").is_file()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_files_are_what_the_builder_makes(name: str) -> None:
    # The committed files and the builder cannot drift apart: rebuild with
    # `watchfloor simulate scenario all --rebuild` after changing either.
    built = build_scenario(name, load_city(CITY_FILE))
    path = scenario_file(name)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    assert raw.splitlines() == [record_to_line(r) for r in built.records]
    assert load_expected(name) == orjson.loads(orjson.dumps(built.expected))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_records_are_valid_and_in_time_order(name: str) -> None:
    records = list(read_records(scenario_file(name)))
    assert records
    assert all(r.intent is Intent.VALID and r.reason is None for r in records)
    ats = [r.at for r in records]
    assert ats == sorted(ats)
    assert all(r.ts == r.at for r in records)
    expected = load_expected(name)
    assert expected["events"] == len(records)
    districts = set(expected.get("districts") or [expected["district"]])
    assert {r.key.decode() for r in records} == districts
    ids = [(orjson.loads(r.value)["source"], orjson.loads(r.value)["id"]) for r in records]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_record_passes_the_validator(name: str) -> None:
    validator = EventValidator(
        load_reference(CITY_FILE), clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    )
    for rec in read_records(scenario_file(name)):
        event = validator.validate(rec.value, rec.stream)
        assert event.kind is rec.kind and event.ts == rec.ts


def test_each_scenario_has_districts_of_its_own() -> None:
    owners: dict[str, str] = {}
    for name in SCENARIOS:
        expected = load_expected(name)
        for district in expected.get("districts") or [expected["district"]]:
            assert district not in owners, (district, owners.get(district), name)
            owners[district] = name


# --------------------------------------------------------------------------------------
# City management, April to June 2025
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Cases, January to September 2025
# --------------------------------------------------------------------------------------


def test_cases_clearance_recounted_from_events() -> None:
    expected = load_expected("cases-2025-jan-sep")
    evs = events("cases-2025-jan-sep")
    filed = {e["subject"]: e for e in evs if e["_kind"] is Kind.CASE_FILED}
    cleared = {e["subject"]: e for e in evs if e["_kind"] is Kind.CASE_CLEARED}
    assert len(filed) + len(cleared) == len(evs)
    lo, hi = when(expected["from"]), when(expected["to"])
    assert all(lo <= e["_ts"] < hi for e in evs)
    for subject, e in cleared.items():
        assert e["_ts"] > filed[subject]["_ts"]
    assert len(filed) == expected["filed"] == 1538
    assert len(cleared) == expected["cleared"] == 778
    assert round(100 * len(cleared) / len(filed), 1) == expected["clearance_rate_percent"] == 50.6
    assert expected["open_at_end"] == len(filed) - len(cleared)
    by_month_filed = Counter(month_of(e["_ts"]) for e in filed.values())
    by_month_cleared = Counter(month_of(e["_ts"]) for e in cleared.values())
    assert [(m["month"], m["filed"], m["cleared"]) for m in expected["months"]] == [
        (f"2025-{m:02d}", by_month_filed[f"2025-{m:02d}"], by_month_cleared[f"2025-{m:02d}"])
        for m in range(1, 10)
    ]
    by_category: dict[str, dict[str, int]] = defaultdict(lambda: {"filed": 0, "cleared": 0})
    for subject, e in filed.items():
        by_category[e["data"]["category"]]["filed"] += 1
        by_category[e["data"]["category"]]["cleared"] += subject in cleared
    assert expected["by_category"] == dict(by_category)
    group = ("robbery", "snatching", "theft")
    assert expected["two_robberies_one_theft"] == {
        k: sum(by_category[c][k] for c in group) for k in ("filed", "cleared")
    }
    # Thefts are cleared less often than fights, as in life.
    theft, fight = by_category["theft"], by_category["fight"]
    assert theft["cleared"] / theft["filed"] < fight["cleared"] / fight["filed"]


# --------------------------------------------------------------------------------------
# Disputes, 2025
# --------------------------------------------------------------------------------------


def test_disputes_recounted_from_events() -> None:
    expected = load_expected("disputes-2025")
    evs = events("disputes-2025")
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in evs:
        history[e["subject"]].append(e)
    outcome = Counter()
    by_category: dict[str, dict[str, int]] = {}
    for subject, hs in history.items():
        kinds = [h["_kind"] for h in hs]
        assert kinds[:2] == [Kind.DISPUTE_REPORTED, Kind.DISPUTE_MEDIATION_STARTED], subject
        assert len(kinds) <= 3
        unit = hs[0]["data"]["responsible_unit"]
        assert hs[1]["data"]["responsible_unit"] == unit  # one responsible department
        end = kinds[2] if len(kinds) == 3 else None
        name = {
            Kind.DISPUTE_RESOLVED: "resolved",
            Kind.DISPUTE_ESCALATED: "escalated",
            None: "open",
        }[end]
        outcome[name] += 1
        row = by_category.setdefault(
            hs[0]["data"]["category"], {"reported": 0, "resolved": 0, "escalated": 0, "open": 0}
        )
        row["reported"] += 1
        row[name] += 1
    assert len(history) == expected["reported"] == 42
    assert sum(1 for e in evs if e["_kind"] is Kind.DISPUTE_MEDIATION_STARTED) == 42
    assert outcome["resolved"] == expected["resolved"]
    assert outcome["escalated"] == expected["escalated"] >= 1
    assert outcome["open"] == expected["open_at_end"]
    rate = round(100 * outcome["resolved"] / len(history), 1)
    assert rate == expected["resolution_rate_percent"] and rate > 80
    assert expected["by_category"] == dict(sorted(by_category.items()))
    assert set(by_category) == {
        "enterprise_restructuring",
        "social_security",
        "rural_stability",
        "demolition_compensation",
        "environmental_pollution",
        "unpaid_wages",
    }
    assert expected["mass_disputes_10_or_more_people"] == sum(
        1 for hs in history.values() if hs[0]["data"]["people_involved"] >= 10
    )
    assert all(when(expected["from"]) <= e["_ts"] < when(expected["to"]) for e in evs)


# --------------------------------------------------------------------------------------
# A week of hazards with known overdue times
# --------------------------------------------------------------------------------------


def overdue_timeline(evs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per hazard: found time, major, and the (time, deadline, open) changes in order."""
    out: dict[str, dict[str, Any]] = {}
    for e in evs:
        s = e["subject"]
        if e["_kind"] is Kind.HAZARD_FOUND:
            out[s] = {
                "district": e["district"],
                "major": e["data"]["major"],
                "changes": [(e["_ts"], when(e["data"]["deadline"]), True)],
            }
        elif e["_kind"] is Kind.HAZARD_RECTIFIED:
            deadline = out[s]["changes"][-1][1]
            out[s]["changes"].append((e["_ts"], deadline, False))
        elif e["_kind"] is Kind.HAZARD_VERIFIED and e["data"]["result"] == "not_rectified":
            out[s]["changes"].append((e["_ts"], when(e["data"]["new_deadline"]), True))
    return out


def overdue_at(h: dict[str, Any], t: float) -> bool:
    state = None
    for at, deadline, is_open in h["changes"]:
        if at <= t:
            state = (deadline, is_open)
    return state is not None and state[1] and state[0] < t


def test_overdue_week_recounted_from_events() -> None:
    expected = load_expected("overdue-week")
    evs = events("overdue-week")
    t0 = when(expected["first_event"])
    assert evs[0]["_ts"] == t0 and evs[-1]["_ts"] == when(expected["last_event"])
    assert evs[-1]["_ts"] - t0 == 7 * 86400
    hazards = overdue_timeline(evs)
    for point in expected["checkpoints"]:
        t = t0 + point["offset_seconds"]
        assert when(point["time"]) == t
        for district in expected["districts"]:
            mine = [h for h in hazards.values() if h["district"] == district and overdue_at(h, t)]
            assert point[district] == {
                "overdue": len(mine),
                "overdue_major": sum(1 for h in mine if h["major"]),
            }, (point["offset_seconds"], district)
    # Each listed hazard is overdue exactly from its offset (until its rectification).
    listed = {h["subject"]: h for h in expected["overdue_hazards"]}
    for subject, h in hazards.items():
        if subject not in listed:
            assert subject in expected["never_overdue"]
            # Within the scenario's horizon (its last checkpoint): the open_far ones do go
            # overdue, 30 to 60 days later.
            horizon = t0 + expected["checkpoints"][-1]["offset_seconds"]
            moments = [c[0] for c in h["changes"]] + [c[1] for c in h["changes"]] + [horizon]
            assert not any(overdue_at(h, m + 1) for m in moments if m < horizon)
            continue
        row = listed[subject]
        start = t0 + row["overdue_from_offset_seconds"]
        assert not overdue_at(h, start - 1) and overdue_at(h, start + 1), subject
        until = row["overdue_until_offset_seconds"]
        if until is None:
            assert overdue_at(h, t0 + 30 * 86400)
        else:
            assert overdue_at(h, t0 + until - 1) and not overdue_at(h, t0 + until)
        assert h["major"] == row["major"]
    assert set(listed) | set(expected["never_overdue"]) == set(hazards)


def test_overdue_week_shifted_to_now_goes_overdue_minutes_after_the_replay() -> None:
    expected = load_expected("overdue-week")
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
    records: list[SimRecord] = list(
        shifted(read_records(scenario_file("overdue-week")), now - 7 * 86400)
    )
    assert records[-1].at == now and records[0].at == now - 7 * 86400
    evs = []
    for rec in records:
        doc = orjson.loads(rec.value)
        doc.update(_ts=datetime.fromisoformat(doc["time"]).timestamp(), _kind=rec.kind)
        evs.append(doc)
    hazards = overdue_timeline(evs)
    after = sorted(
        (h["overdue_from_offset_seconds"] - 7 * 86400, h["subject"])
        for h in expected["overdue_hazards"]
        if h["overdue_from_offset_seconds"] > 7 * 86400
    )
    assert [m for m, _ in after] == [120, 240, 360, 480, 600, 720, 900, 1200]
    for minutes, subject in after:
        assert not overdue_at(hazards[subject], now + minutes - 1)
        assert overdue_at(hazards[subject], now + minutes + 1)


# --------------------------------------------------------------------------------------
# The engine's own counting agrees (validator and district state, without Kafka)
# --------------------------------------------------------------------------------------


def counted_states(name: str) -> dict[str, DistrictState]:
    validator = EventValidator(
        load_reference(CITY_FILE), clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    )
    states: dict[str, DistrictState] = {}
    for rec in read_records(scenario_file(name)):
        event = validator.validate(rec.value, rec.stream)
        state = states.setdefault(event.district, DistrictState(event.district, TZ))
        assert state.apply(event) is Outcome.COUNTED
    return states


def test_engine_state_reads_the_expected_figures() -> None:
    def local(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    expected = load_expected("city-management-2025q2")
    state = counted_states("city-management-2025q2")["jinshui"]
    for row in expected["months"]:
        counts = state.counts(local(row["from"]), local(row["to"]))
        assert counts[Measure.HAZARDS_FOUND] == row["found"]
        assert counts[Measure.HAZARDS_FOUND_RECTIFIED] == row["rectified"]
        assert counts[Measure.HAZARDS_RECTIFIED] == row["rectified_events_in_month"]
    assert state.open_hazards == expected["open_at_end"]
    assert state.tick(local(expected["end"])) == expected["overdue_at_end"]

    expected = load_expected("cases-2025-jan-sep")
    state = counted_states("cases-2025-jan-sep")["erqi"]
    counts = state.counts(local(expected["from"]), local(expected["to"]))
    assert (counts[Measure.CASES_FILED], counts[Measure.CASES_CLEARED]) == (1538, 778)
    assert state.open_cases == expected["open_at_end"]

    expected = load_expected("disputes-2025")
    state = counted_states("disputes-2025")["zhongyuan"]
    counts = state.counts(local(expected["from"]), local(expected["to"]))
    assert counts[Measure.DISPUTES_REPORTED] == expected["reported"]
    assert counts[Measure.DISPUTES_RESOLVED] == expected["resolved"]
    assert counts[Measure.DISPUTES_ESCALATED] == expected["escalated"]
    assert state.open_disputes == expected["open_at_end"]

    # Overdue is judged by the wall clock once every event is in: the checkpoints from
    # the end of the week on.
    expected = load_expected("overdue-week")
    states = counted_states("overdue-week")
    t0 = local(expected["first_event"])
    for point in expected["checkpoints"]:
        if point["offset_seconds"] < 7 * 86400:
            continue
        for district, state in states.items():
            state.tick(t0 + point["offset_seconds"])
            got = {"overdue": len(state.overdue), "overdue_major": state.overdue_major}
            assert got == point[district], (point["offset_seconds"], district)
