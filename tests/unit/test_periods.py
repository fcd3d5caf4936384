"""Calendar periods and CompStat comparisons: parsing, bounds in local time, refusals."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from streams.errors import QueryError
from streams.periods import comparisons, parse_period
from tests.support import EPOCH

TZ = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("2026-04-12", "2026-04-12T00:00:00+08:00", "2026-04-13T00:00:00+08:00"),
        ("2026-W15", "2026-04-06T00:00:00+08:00", "2026-04-13T00:00:00+08:00"),
        ("2026-04", "2026-04-01T00:00:00+08:00", "2026-05-01T00:00:00+08:00"),
        ("2026-12", "2026-12-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00"),
        ("2025", "2025-01-01T00:00:00+08:00", "2026-01-01T00:00:00+08:00"),
        ("2026-04-01..2026-06-30", "2026-04-01T00:00:00+08:00", "2026-07-01T00:00:00+08:00"),
    ],
)
def test_parse_period(spec: str, start: str, end: str) -> None:
    p = parse_period(spec, TZ)
    assert p.start.isoformat() == start
    assert p.end.isoformat() == end


@pytest.mark.parametrize("spec", ["2026-13", "2026-W54", "yesterday", "2026-06-30..2026-06-01"])
def test_bad_periods_are_refused_with_a_sentence(spec: str) -> None:
    with pytest.raises(QueryError) as err:
        parse_period(spec, TZ)
    assert str(err.value).endswith(".")


def test_comparisons_line_up_equal_stretches() -> None:
    now = datetime(2026, 6, 30, 15, 0, tzinfo=TZ)  # a Tuesday
    comp = {c.name: c for c in comparisons(now, TZ)}
    today = comp["today"]
    assert today.current.start.isoformat() == "2026-06-30T00:00:00+08:00"
    assert today.previous.end.isoformat() == "2026-06-29T15:00:00+08:00"
    week = comp["week"]
    assert week.current.start.isoformat() == "2026-06-29T00:00:00+08:00"
    assert week.previous.start.isoformat() == "2026-06-22T00:00:00+08:00"
    assert week.previous.end.isoformat() == "2026-06-23T15:00:00+08:00"
    d28 = comp["28d"]
    assert d28.current.end - d28.current.start == d28.previous.end - d28.previous.start
    ytd = comp["ytd"]
    assert ytd.previous.start.isoformat() == "2025-01-01T00:00:00+08:00"
    assert ytd.previous.end.isoformat() == "2025-06-30T15:00:00+08:00"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("9999-W52", "outside the calendar this API answers for: 1970-01-01 to 9998-12-31"),
        ("9999-12-31", "outside the calendar"),
        ("0001-01-01", "Period 0001-01-01 is outside the calendar"),
        ("1969-12-31..2026-01-01", "outside the calendar"),
        ("9999", "is not a day"),
        ("x" * 200, "Period (as given) is not a day"),
    ],
)
def test_periods_the_calendar_cannot_hold_are_sentences(spec: str, words: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_period(spec, TZ)
    assert words in str(caught.value)


def test_the_first_and_last_accepted_periods_work_in_every_time_zone() -> None:
    from streams import query
    from streams.state import DistrictState

    for name in ("Asia/Shanghai", "Pacific/Kiritimati", "America/Los_Angeles"):
        tz = ZoneInfo(name)
        st = DistrictState("jinshui", tz)
        for spec in ("1970", "1970-01-01", "9998", "9998-12-31", "1970-01-01..9998-12-31"):
            query.detail(st, EPOCH, tz, parse_period(spec, tz))
