"""Read models of the API: figures, rates, a district's summary and detail, at fixed epochs."""

from __future__ import annotations

from streams import query
from streams.events import Event, Kind
from streams.periods import parse_period
from streams.state import DistrictState
from streams.windows import Measure
from tests.support import EPOCH, TZ

NOW = EPOCH.timestamp()
H = 3600.0


def ev(kind: Kind, subject: str, ts: float, **kw: object) -> Event:
    return Event(kind, f"{subject}-{kind.name}", "/t", "jinshui", subject, ts, **kw)  # type: ignore[arg-type]


def district() -> DistrictState:
    st = DistrictState("jinshui", TZ)
    for i in range(5):  # five hazards found an hour apart, two of them rectified
        st.apply(ev(Kind.HAZARD_FOUND, f"h{i}", NOW - (i + 2) * H, category="gas",
                    deadline=NOW - (i + 1) * H + 1800, major=i == 0))
    st.apply(ev(Kind.HAZARD_RECTIFIED, "h1", NOW - H))
    st.apply(ev(Kind.HAZARD_RECTIFIED, "h2", NOW - H))
    st.apply(ev(Kind.CASE_FILED, "c1", NOW - 10 * H, category="theft"))
    st.tick(NOW)
    return st


def test_figures_carry_every_measure_and_the_rates() -> None:
    vec = [0] * len(Measure)
    vec[Measure.HAZARDS_FOUND], vec[Measure.HAZARDS_FOUND_RECTIFIED] = 8, 6
    vec[Measure.CASES_FILED] = 0
    f = query.figures(vec)
    assert f["hazards_found"] == 8 and f["rectification_rate"] == 0.75
    assert f["clearance_rate"] is None, "no case filed: null, not 0"


def test_summary_and_detail_of_one_district() -> None:
    st = district()
    s = query.summary(st, NOW, TZ)
    assert s["current"]["open_hazards"] == 3
    # h0, h3, h4 are open and past their deadlines (each an hour and a half after found)
    assert s["current"]["overdue_hazards"] == 3
    assert s["current"]["overdue_major_hazards"] == 1
    assert s["rolling"]["24h"]["hazards_found"] == 5
    assert s["rolling"]["24h"]["rectification_rate"] == 0.4
    d = query.detail(st, EPOCH, TZ, parse_period("2026-04-12", TZ))
    # Longest overdue first: h4 was due first (4.5 h before now), h0 last.
    assert [h["subject"] for h in d["overdue_hazards"]] == ["h4", "h3", "h0"]
    assert [h["overdue_seconds"] for h in d["overdue_hazards"]] == [4.5 * H, 3.5 * H, 0.5 * H]
    assert d["overdue_hazards_page"] == {"total": 3, "limit": 50, "next": None}
    assert {h["id"] for h in d["open_hazards"]} == {"h0", "h3", "h4"}
    assert d["as_of"] == "2026-04-12T12:00:00+08:00"
    # One page at a time: two, then the third, then none.
    first = query.detail(st, EPOCH, TZ, limit=2)
    assert [h["id"] for h in first["open_hazards"]] == ["h4", "h3"]
    assert first["open_hazards_page"]["total"] == 3
    cursor = first["open_hazards_page"]["next_cursor"]
    second = query.detail(st, EPOCH, TZ, limit=2, cursor=cursor)
    assert [h["id"] for h in second["open_hazards"]] == ["h0"]
    assert second["open_hazards_page"]["next_cursor"] is None
    assert first["overdue_hazards_page"]["next"].startswith(
        "/api/v1/overdue?district=jinshui&limit=2&cursor=")
    assert d["period"]["figures"]["cases_filed"] == 1
    assert d["period"]["by_category"]["hazards_found"] == {"gas": 5}
    assert set(d["definitions"]) >= {"rectification_rate", "clearance_rate", "overdue"}
