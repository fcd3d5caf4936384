"""The overdue list: items say who must act; filters, order and cursor paging; merging answers."""

from __future__ import annotations

import csv
import io

import pytest

from streams import overdue_list as ol
from streams.documents import Names, overdue_csv
from streams.errors import QueryError
from streams.events import Event, Kind
from streams.reference import Reference
from streams.state import DistrictState
from tests.support import EPOCH, TZ

NOW = EPOCH.timestamp()
H = 3600.0


def ev(kind: Kind, subject: str, ts: float, district: str = "jinshui", **kw: object) -> Event:
    return Event(kind, f"{subject}-{kind.name}-{ts}", "/t", district, subject, ts, **kw)  # type: ignore[arg-type]


def state(district: str, n: int, *, major_every: int = 3) -> DistrictState:
    """``n`` hazards found a day apart, due 2 h after finding; every third one major;
    hazard 1 rectified; hazard 2 failed one look-back visit."""
    st = DistrictState(district, TZ)
    evs = []
    for i in range(n):
        t = NOW - (n - i) * 86400
        evs.append(ev(Kind.HAZARD_FOUND, f"{district}-h{i}", t, district, category="gas" if i % 2
                    else "fire", deadline=t + 2 * H, major=i % major_every == 0,
                    community=f"{district}-s1-c0{1 + i % 2}", unit=f"{district}-unit{i % 2}"))
    evs.append(ev(Kind.HAZARD_RECTIFIED, f"{district}-h1", NOW - (n - 1) * 86400 + H, district))
    evs.append(ev(Kind.HAZARD_RECTIFIED, f"{district}-h2", NOW - (n - 2) * 86400 + H, district))
    evs.append(ev(Kind.HAZARD_VERIFIED, f"{district}-h2", NOW - (n - 2) * 86400 + 3 * H, district,
                  confirmed=False, deadline=NOW - (n - 2) * 86400 + 5 * H))
    for e in sorted(evs, key=lambda e: e.ts):
        st.apply(e)
    st.tick(NOW)
    return st


def test_items_carry_who_must_act_and_how_long() -> None:
    st = state("jinshui", 6)
    items = ol.district_items(st, NOW, ol.OverdueFilter())
    assert {it["subject"] for it in items} == {f"jinshui-h{i}" for i in (0, 2, 3, 4, 5)}
    h2 = next(it for it in items if it["subject"] == "jinshui-h2")
    assert h2 == {
        "subject": "jinshui-h2", "district": "jinshui", "community": "jinshui-s1-c01",
        "category": "fire", "major": False, "responsible_unit": "jinshui-unit0",
        "found": "2026-04-08T12:00:00+08:00", "deadline": "2026-04-08T17:00:00+08:00",
        "overdue_seconds": 4 * 86400 - 5 * H, "failed_visits": 1,
    }
    assert list(h2) == list(ol.COLUMNS)


def test_filters_are_any_of_and_combine() -> None:
    st = state("jinshui", 6)
    f = ol.OverdueFilter.from_query({"category": "gas", "major": "true"})
    assert [it["subject"] for it in ol.district_items(st, NOW, f)] == ["jinshui-h3"]
    f = ol.OverdueFilter.from_query({"unit": "jinshui-unit0,nobody", "community": ""})
    assert {it["subject"] for it in ol.district_items(st, NOW, f)} == {
        "jinshui-h0", "jinshui-h2", "jinshui-h4"}
    assert ol.district_items(st, NOW, ol.OverdueFilter.from_query({"district": "erqi"})) == []
    assert ol.OverdueFilter.from_query(f.to_query()) == f
    with pytest.raises(QueryError, match="major"):
        ol.OverdueFilter.from_query({"major": "maybe"})


def test_pages_follow_the_cursor_longest_overdue_first() -> None:
    items = ol.district_items(state("jinshui", 9), NOW, ol.OverdueFilter()) + ol.district_items(
        state("erqi", 9), NOW, ol.OverdueFilter())
    # Truth: longest overdue first, by the seconds each item states.
    want = [it["subject"] for it in sorted(items, key=lambda it: (-it["overdue_seconds"],
                                                                  it["district"], it["subject"]))]
    got: list[str] = []
    cursor = None
    pages = 0
    while True:
        chunk, cursor = ol.page(items, cursor, 4)
        pages += 1
        assert len(chunk) <= 4
        got += [it["subject"] for it in chunk]
        if cursor is None:
            break
    assert got == want and pages == (len(want) + 3) // 4
    with pytest.raises(QueryError, match="cursor"):
        ol.page(items, "not-a-cursor!", 4)
    with pytest.raises(QueryError, match="between"):
        ol.parse_limit("0")


def test_merge_takes_each_district_from_one_answer() -> None:
    a = ol.district_items(state("jinshui", 4), NOW, ol.OverdueFilter())
    b = ol.district_items(state("erqi", 4), NOW, ol.OverdueFilter())
    # The second answer came after a rebalance and covers jinshui again.
    merged = ol.merge([(["jinshui"], a), (["jinshui", "erqi"], a + b)],
                      ["jinshui", "erqi", "huiji"])
    assert sorted(it["subject"] for it in merged.items) == sorted(
        it["subject"] for it in a + b)
    assert merged.missing_districts == ["huiji"]


def test_csv_names_things_in_the_language_asked(reference: Reference) -> None:
    items = ol.district_items(state("jinshui", 3), NOW, ol.OverdueFilter())
    body = overdue_csv(items, Names(reference, "zh")).decode()
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body[1:])))
    assert rows[0][:3] == ["隐患编号", "区县", "社区"]
    assert rows[1][1] == "金水区" and rows[1][4] == "是"
    en = list(csv.reader(io.StringIO(overdue_csv(items, Names(reference, "en")).decode()[1:])))
    assert en[1][1] == "Jinshui District"
