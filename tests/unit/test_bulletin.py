"""Bulletins: which periods are due, a district's section at the cut-off, ranking and documents."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from streams import bulletin as bl
from streams.documents import Names, bulletin_csv, bulletin_html, bulletin_markdown
from streams.errors import QueryError, SettingsError
from streams.events import Event, Kind
from streams.reference import Reference
from streams.state import DistrictState
from tests.support import TZ

H = 3600.0
CUT = time(8, 0)
WEIGHTS = bl.parse_weights(bl.DEFAULT_WEIGHTS)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("now", "daily", "weekly", "monthly"),
    [
        ("2026-04-13T08:00:00+08:00", "2026-04-12", "2026-W15", "2026-03"),
        ("2026-04-13T07:59:59+08:00", "2026-04-11", "2026-W14", "2026-03"),
        ("2026-05-01T09:00:00+08:00", "2026-04-30", "2026-W17", "2026-04"),
        ("2026-05-01T07:00:00+08:00", "2026-04-29", "2026-W17", "2026-03"),
        ("2026-01-01T00:30:00+00:00", "2025-12-31", "2025-W52", "2025-12"),  # 08:30 local
    ],
)
def test_due_periods(now: str, daily: str, weekly: str, monthly: str) -> None:
    got = {kind: p.label for kind, p in bl.due(at(now), TZ, CUT)}
    assert got == {"daily": daily, "weekly": weekly, "monthly": monthly}


def test_bulletin_periods_and_settings() -> None:
    kind, p = bl.bulletin_period("2026-04", TZ)
    assert kind == "monthly" and p.start.isoformat() == "2026-04-01T00:00:00+08:00"
    assert bl.cut_off_of(p, CUT, TZ).isoformat() == "2026-05-01T08:00:00+08:00"
    assert bl.bulletin_period("2026-W15", TZ)[0] == "weekly"
    assert bl.previous_label("weekly", bl.bulletin_period("2026-W01", TZ)[1], TZ) == "2025-W52"
    assert bl.previous_label("monthly", p, TZ) == "2026-03"
    assert bl.previous_label("daily", bl.bulletin_period("2026-03-01", TZ)[1], TZ) == "2026-02-28"
    for bad in ("2026", "2026-04-01..2026-04-03", "x"):
        with pytest.raises(QueryError):
            bl.bulletin_period(bad, TZ)
    with pytest.raises(SettingsError):
        bl.parse_weights("rectification_rate=0")
    with pytest.raises(SettingsError):
        bl.parse_weights("speed=1")
    with pytest.raises(SettingsError):
        bl.parse_cutoff("8h")


def ev(kind: Kind, subject: str, when: str, district: str, **kw: object) -> Event:
    ts = at(when).timestamp()
    return Event(kind, f"{subject}-{kind.name}", "/t", district, subject, ts, **kw)  # type: ignore[arg-type]


def april_state(district: str, found: int, rectified: int, filed: int = 0, cleared: int = 0,
                major_overdue: int = 0) -> DistrictState:
    """April hazards (deadline 20 April, so overdue at the cut-off unless rectified) and
    cases; ``major_overdue`` of the unrectified hazards are major."""
    st = DistrictState(district, TZ)
    for i in range(found):
        st.apply(ev(Kind.HAZARD_FOUND, f"{district}-h{i}", "2026-04-10T09:00:00+08:00", district,
                    category="gas", major=i >= found - major_overdue,
                    deadline=at("2026-04-20T18:00:00+08:00").timestamp(),
                    unit=f"{district}-gas", community=f"{district}-s1-c01"))
    for i in range(filed):
        st.apply(ev(Kind.CASE_FILED, f"{district}-c{i}", "2026-04-11T09:00:00+08:00", district,
                    category="theft"))
    for i in range(rectified):
        st.apply(ev(Kind.HAZARD_RECTIFIED, f"{district}-h{i}", "2026-04-15T09:00:00+08:00",
                    district))
    for i in range(cleared):
        st.apply(ev(Kind.CASE_CLEARED, f"{district}-c{i}", "2026-04-16T09:00:00+08:00", district))
    return st


def test_section_judges_overdue_at_the_cut_off_not_now() -> None:
    st = april_state("jinshui", found=10, rectified=7, filed=4, cleared=1, major_overdue=2)
    _, april = bl.bulletin_period("2026-04", TZ)
    computed = at("2026-05-01T08:00:05+08:00")
    s = bl.section(st, april, bl.cut_off_of(april, CUT, TZ), computed)
    assert s["figures"] == {
        "hazards_found": 10, "hazards_rectified": 7, "hazards_not_rectified": 3,
        "rectification_rate": 0.7, "cases_filed": 4, "cases_cleared": 1,
        "clearance_rate": 0.25, "disputes_reported": 0, "disputes_resolved": 0,
        "dispute_resolution_rate": None, "patrols": 0,
    }
    assert (s["open_hazards"], s["overdue_hazards"], s["overdue_major_hazards"]) == (3, 3, 2)
    assert [m["subject"] for m in s["overdue_major"]] == ["jinshui-h8", "jinshui-h9"]
    assert s["overdue_major"][0]["responsible_unit"] == "jinshui-gas"
    assert s["overdue_major"][0]["overdue_seconds"] == (
        at("2026-05-01T08:00:00+08:00") - at("2026-04-20T18:00:00+08:00")).total_seconds()
    # Nothing is overdue at a cut-off before the deadline, whatever the wall clock says.
    _, early = bl.bulletin_period("2026-04-12", TZ)
    s = bl.section(st, early, bl.cut_off_of(early, CUT, TZ), computed)
    assert s["overdue_hazards"] == 0 and s["open_hazards"] == 3
    assert s["computed_at"] == "2026-05-01T08:00:05+08:00"


def test_ranking_follows_the_published_formula(reference: Reference) -> None:
    _, april = bl.bulletin_period("2026-04", TZ)
    cut = bl.cut_off_of(april, CUT, TZ)
    computed = at("2026-05-01T08:00:05+08:00")
    states = {
        "jinshui": april_state("jinshui", 10, 9, 10, 5),        # 0.4*.9 + 0.3*.5
        "erqi": april_state("erqi", 10, 6, 10, 10),             # 0.4*.6 + 0.3*1
        "huiji": april_state("huiji", 20, 10, major_overdue=3),  # .5 alone
        "gaoxin": april_state("gaoxin", 4, 2, major_overdue=1),  # .5 alone, tie with huiji
        "baihe": april_state("baihe", 0, 0),                     # no rate: not ranked
    }
    sections = [bl.section(st, april, cut, computed) for st in states.values()]
    b = bl.assemble(kind="monthly", period=april, cut_off=cut, tz=TZ, sections=sections,
                    weights=WEIGHTS, named=1, previous={"key": "2026-03",
                                                        "ranks": {"huiji": 1, "erqi": 4}})
    # Scores by hand: Σ w·r / Σ w over the rates the district has.
    want = {"jinshui": (0.4 * 0.9 + 0.3 * 0.5) / 0.7, "erqi": (0.4 * 0.6 + 0.3 * 1) / 0.7,
            "huiji": 0.5, "gaoxin": 0.5}
    assert [r["district"] for r in b["ranking"]] == ["erqi", "jinshui", "gaoxin", "huiji"]
    for r in b["ranking"]:
        assert r["score"] == round(100 * want[r["district"]], 2)
    # The tie goes to fewer overdue majors (gaoxin 1, huiji 3).
    assert [(r["previous_rank"], r["movement"]) for r in b["ranking"]] == [
        (4, 3), (None, None), (None, None), (1, -3)]
    assert b["unranked"] == ["baihe"]
    assert (b["leaders"], b["laggards"]) == (["erqi"], ["huiji"])
    assert b["overdue_major_by_unit"][0] == {"district": "huiji", "responsible_unit": "huiji-gas",
                                             "count": 3}
    assert b["city"]["hazards_found"] == 44 and b["city"]["rectification_rate"] == round(27 / 44, 6)
    # Frozen bytes: the same inputs give the same bytes, in any section order.
    again = bl.assemble(kind="monthly", period=april, cut_off=cut, tz=TZ,
                        sections=list(reversed(sections)), weights=WEIGHTS, named=1,
                        previous={"key": "2026-03", "ranks": {"erqi": 4, "huiji": 1}})
    assert bl.to_bytes(again) == bl.to_bytes(b)
    assert bl.ranks_of(b) == {"key": "2026-04",
                              "ranks": {"erqi": 1, "jinshui": 2, "gaoxin": 3, "huiji": 4}}

    zh = Names(reference, "zh")
    html = bulletin_html(b, zh, "示范市").decode()
    assert "@page { size: A4" in html and "金水区" in html and "通报批评" in html
    assert html.index("二七区") < html.index("金水区") < html.index("高新区")
    md = bulletin_markdown(b, Names(reference, "en"), "Demo City").decode()
    assert "| 1 | Erqi District | 77.14 | 4 | ▲3 |" in md
    rows = bulletin_csv(b, "overdue_major", zh).decode().splitlines()
    assert len(rows) == 1 + 1 + 3 and rows[1].startswith("高新区") and "惠济区" in rows[2]


def test_centre_settings_are_checked_once_at_start() -> None:
    from streams.settings import Settings

    s = Settings.from_env({})
    assert (s.bulletin_cutoff, s.lang, s.topic_bulletins) == ("08:00", "zh", "watchfloor.bulletins")
    assert s.centre_url == "http://127.0.0.1:6066/centre/"
    assert s.runbooks_url == "http://127.0.0.1:6066/runbooks/"
    assert Settings.from_env({"WATCHFLOOR_RUNBOOK_URL": "https://wiki.local/rb/"}).runbooks_url == (
        "https://wiki.local/rb/")
    for env in ({"WATCHFLOOR_BULLETIN_WEIGHTS": "clearance_rate=x"},
                {"WATCHFLOOR_BULLETIN_CUTOFF": "25"}, {"WATCHFLOOR_LANG": "fr"}):
        with pytest.raises(SettingsError):
            Settings.from_env(env)
