"""Work safety: targets in the reference data, the four indicators year on year, their gauges."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streams.errors import QueryError, ReferenceDataError
from streams.events import Event, Kind
from streams.exposition import DistrictCollector
from streams.periods import parse_period
from streams.reference import DeathTarget, WorkSafetyYear, load_reference
from streams.settings import PROJECT_ROOT
from streams.state import DistrictState, Outcome
from streams.worksafety import (
    city_block,
    district_block,
    district_figures,
    indicators,
    share_reached_at,
    year_before,
    year_to_date,
)
from tests.support import TZ

from .test_metrics import samples

CITY = PROJECT_ROOT / "seeds" / "reference" / "city.json"
NOW = datetime(2026, 4, 12, 12, 0, tzinfo=TZ)


def at(*args: int) -> float:
    return datetime(*args, tzinfo=TZ).timestamp()  # type: ignore[misc]


# Reference data --------------------------------------------------------------------------


def test_the_seed_reference_holds_the_speech_target() -> None:
    ref = load_reference(CITY)
    y2025 = ref.work_safety[2025]
    # "死亡人数控制指标为103人,比上年减少了21人"
    assert (y2025.city.deaths, y2025.city.last_year, y2025.city.change) == (103, 124, -21)
    assert set(y2025.districts) == set(ref.districts)
    assert sum(t.deaths for t in y2025.districts.values()) == 103
    assert sum(t.last_year for t in y2025.districts.values()) == 124
    assert y2025.alert_share == 0.8
    assert 2026 in ref.work_safety


def write_city(tmp_path: Path, change: Any) -> Path:
    doc = json.loads(CITY.read_text(encoding="utf-8"))
    change(doc)
    path = tmp_path / "city.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    (tmp_path / "categories.json").write_text(
        (CITY.parent / "categories.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    return path


def first_target(doc: dict[str, Any]) -> dict[str, Any]:
    target: dict[str, Any] = doc["work_safety"]["targets"][0]
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: first_target(d).update(year="2025"), "must be a year"),
        (lambda d: first_target(d).update(alert_share=1.5), "alert_share must be a share"),
        (lambda d: first_target(d).update(alert_share=True), "alert_share must be a share"),
        (lambda d: first_target(d)["city"].update(deaths=-1), "whole numbers of deaths"),
        (lambda d: first_target(d)["city"].pop("last_year"), "whole numbers of deaths"),
        (lambda d: first_target(d)["districts"].update(atlantis={"deaths": 1, "last_year": 2}),
         "'atlantis', which is not a district"),
        (lambda d: first_target(d)["districts"]["jinshui"].update(deaths=50),
         "add up to 137 deaths, more than the city's 103"),
        (lambda d: d["work_safety"]["targets"].append(
            copy.deepcopy(d["work_safety"]["targets"][0])), "list 2025 twice"),
        (lambda d: d.update(work_safety={"targets": "many"}), "must hold a list of targets"),
    ],
)
def test_bad_targets_are_refused_with_a_sentence(
    tmp_path: Path, change: Any, message: str
) -> None:
    with pytest.raises(ReferenceDataError, match=message):
        load_reference(write_city(tmp_path, change))


def test_a_city_without_targets_has_none(tmp_path: Path) -> None:
    ref = load_reference(write_city(tmp_path, lambda d: d.pop("work_safety")))
    assert ref.work_safety == {}


# Periods ---------------------------------------------------------------------------------


def test_year_to_date_is_whole_days_and_last_year_the_same_dates() -> None:
    ytd = year_to_date(NOW, TZ)
    def day(y: int, m: int, d: int) -> datetime:
        return datetime(y, m, d, tzinfo=TZ)

    assert (ytd.start, ytd.end) == (day(2026, 1, 1), day(2026, 4, 13))
    before = year_before(ytd, TZ)
    assert (before.start, before.end) == (day(2025, 1, 1), day(2025, 4, 13))
    # A period ending with 29 February is compared with one ending with 28 February.
    leap = year_before(parse_period("2024-02-01..2024-02-29", TZ), TZ)
    assert (leap.start, leap.end) == (day(2023, 2, 1), day(2023, 3, 1))
    feb = year_before(parse_period("2024-02-01..2024-02-28", TZ), TZ)
    assert feb.end == day(2023, 3, 1)


def test_a_period_across_two_years_is_refused() -> None:
    state = DistrictState("jinshui", TZ)
    with pytest.raises(QueryError, match="within one calendar year"):
        district_figures(state, parse_period("2025-12-01..2026-01-31", TZ), None)


# Counting --------------------------------------------------------------------------------


def accident(subject: str, ts: float, deaths: int, injuries: int = 0, loss: int = 0) -> Event:
    return Event(Kind.ACCIDENT_REPORTED, f"{subject}@{ts}", "/t", "jinshui", subject, ts,
                 category="construction", figures=(deaths, injuries, loss))


def district() -> DistrictState:
    """Accidents in 2025 and 2026; one of 2026 revised later (an injured person died)."""
    st = DistrictState("jinshui", TZ)
    for ev in (
        accident("a25-1", at(2025, 3, 1, 10), 3, 1, 500_000),
        accident("a25-2", at(2025, 6, 1, 10), 5, 0, 2_000_000),  # after the same dates
        accident("a26-1", at(2026, 2, 1, 10), 2, 1, 100_000),
        accident("a26-1", at(2026, 4, 10, 9), 3, 0, 130_000),  # the revision
        accident("a26-2", at(2026, 4, 12, 11), 1, 2, 40_000),
    ):
        # Old years: the district's stream only ever moves forward here, so none is late.
        assert st.apply(ev) is Outcome.COUNTED
    return st


def test_indicators_this_year_and_last_year() -> None:
    st = district()
    ytd = year_to_date(NOW, TZ)
    # 2026: two accidents; deaths 3 (revised from 2) + 1; injuries 0 + 2; loss 130k + 40k.
    assert indicators(st, ytd) == [2, 4, 2, 170_000]
    # The same dates of 2025 hold the March accident only.
    assert indicators(st, year_before(ytd, TZ)) == [1, 3, 1, 500_000]
    assert indicators(st, parse_period("2025", TZ)) == [2, 8, 1, 2_500_000]


def test_share_reached_at_the_report_that_took_deaths_to_the_threshold() -> None:
    st = district()
    # 4 deaths in 2026. Walking back from the newest report: a26-2 (1 death, 11:00 on
    # 12 April) leaves 3; a26-1, whose latest report is the revision of 10 April, leaves 0.
    assert share_reached_at(st, 2026, 4, 3) == at(2026, 4, 10, 9)
    assert share_reached_at(st, 2026, 4, 4) == at(2026, 4, 12, 11)
    assert share_reached_at(st, 2026, 4, 5) is None
    # 2025's accidents were forgotten 60 days after their last report: the deaths are in
    # the buckets, but which report crossed the line can no longer be told.
    assert not any(sid.startswith("a25") for sid in st.accidents)
    assert share_reached_at(st, 2025, 8, 8) is None


TARGETS = {
    2026: WorkSafetyYear(
        2026, 0.75, DeathTarget(40, 45), {"jinshui": DeathTarget(4, 5), "erqi": DeathTarget(6, 6)}
    )
}


def test_gauges_of_the_four_indicators_and_the_target() -> None:
    st = district()
    reg = CollectorRegistry()
    reg.register(DistrictCollector(lambda: {"jinshui": st}, NOW.timestamp, TARGETS))
    got = samples(reg)

    def g(name: str, **labels: str) -> float | None:
        return got.get((name, tuple(sorted(labels.items()))))

    ytd, last = "year_to_date", "same_period_last_year"
    for stem, cur, prev in (
        ("accidents", 2, 1),
        ("deaths", 4, 3),
        ("serious_injuries", 2, 1),
        ("direct_loss_yuan", 170_000, 500_000),
    ):
        assert g(f"watchfloor_work_safety_{stem}", district="jinshui", period=ytd) == cur
        assert g(f"watchfloor_work_safety_{stem}", district="jinshui", period=last) == prev
    assert g("watchfloor_work_safety_deaths_target", district="jinshui") == 4
    assert g("watchfloor_work_safety_deaths_alert_share_ratio", district="jinshui") == 0.75
    # 75 % of 4 is 3 deaths: reached with the revision of 10 April.
    reached = "watchfloor_work_safety_deaths_alert_share_reached_timestamp_seconds"
    assert g(reached, district="jinshui") == at(2026, 4, 10, 9)
    assert g("watchfloor_city_work_safety_deaths_target") == 40


def test_no_target_no_target_gauges() -> None:
    st = district()
    reg = CollectorRegistry()
    reg.register(DistrictCollector(lambda: {"jinshui": st}, NOW.timestamp, {}))
    names = {name for name, _ in samples(reg)}
    assert "watchfloor_work_safety_deaths" in names
    assert not {n for n in names if "target" in n or "alert_share" in n}


def test_district_and_city_blocks() -> None:
    st = district()
    year = TARGETS[2026]
    ytd = year_to_date(NOW, TZ)
    block = district_block(district_figures(st, ytd, year), year, TZ)
    assert block["indicators"]["deaths"] == {
        "current": 4, "previous": 3, "change": 1, "change_ratio": round(1 / 3, 6)
    }
    assert block["year_deaths"] == 4
    assert block["deaths_target"] == {
        "target": 4,
        "last_year": 5,
        "change_from_last_year": -1,
        "used": 4,
        "used_ratio": 1.0,
        "remaining": 0,
        "alert_share": 0.75,
        "alert_share_reached": True,
        "alert_share_reached_at": "2026-04-10T09:00:00+08:00",
    }
    # A quarter: the target counts deaths from 1 January to the quarter's end, here Q1.
    q1 = district_block(district_figures(st, parse_period("2026-01-01..2026-03-31", TZ), year),
                        year, TZ)
    assert q1["year_deaths"] == 3 and q1["deaths_target"]["alert_share_reached"] is True
    # Reached with the Q1 accident's revision of 10 April (its deaths count on 1 February);
    # the accident of 12 April is not Q1's.
    assert q1["deaths_target"]["alert_share_reached_at"] == "2026-04-10T09:00:00+08:00"
    # A district without a target of its own: no block, its deaths still count for the city.
    other = DistrictState("zhongyuan", TZ)
    other.apply(accident("z1", at(2026, 3, 3, 3), 2))
    other_block = district_block(district_figures(other, ytd, year), year, TZ)
    assert other_block["deaths_target"] is None
    city = city_block([block, other_block], year, TZ)
    assert city["indicators"]["accidents"]["current"] == 3
    assert city["deaths_target"]["used"] == 6
    assert city["deaths_target"]["target"] == 40
    assert city["deaths_target"]["alert_share_reached"] is False
    assert "alert_share_reached_at" not in city["deaths_target"]


def test_the_answer_of_the_work_safety_endpoint() -> None:
    from streams.worksafety import answer

    year = TARGETS[2026]
    ytd = year_to_date(NOW, TZ)
    jinshui = district_block(district_figures(district(), ytd, year), year, TZ)
    erqi = district_block(district_figures(DistrictState("erqi", TZ), ytd, year), year, TZ)
    body = answer(ytd, [jinshui, erqi], year, TZ, NOW)
    assert body["year"] == 2026
    assert body["period"] == {
        "label": "year to date",
        "from": "2026-01-01T00:00:00+08:00",
        "to": "2026-04-13T00:00:00+08:00",
    }
    assert body["previous_period"]["from"] == "2025-01-01T00:00:00+08:00"
    assert body["previous_period"]["to"] == "2025-04-13T00:00:00+08:00"
    assert [d["district"] for d in body["districts"]] == ["erqi", "jinshui"]
    assert body["districts"][0]["deaths_target"]["used"] == 0
    assert body["city"]["deaths_target"]["used"] == 4
    assert body["city"]["indicators"]["deaths"]["previous"] == 3
    assert set(body["definitions"]) >= {"indicators", "deaths_target", "alert_share"}
