"""Buckets and periods: sums at every resolution agree with counting events one by one."""

from __future__ import annotations

import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import QueryError
from streams.windows import (
    DAY_SECONDS,
    HOUR_SECONDS,
    SLOT_SECONDS,
    WINDOWS,
    Buckets,
    comparisons,
    parse_period,
    rolling_bounds,
)

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 6, 30, 15, 7, 30, tzinfo=TZ).timestamp()


def filled(seed: int, n: int = 3000, span_days: int = 70) -> tuple[Buckets, list[float]]:
    rng = random.Random(seed)
    b = Buckets(TZ)
    times = sorted(NOW - rng.random() * span_days * DAY_SECONDS for _ in range(n))
    for ts in times:
        b.add(0, ts, "x")
    b.expire(NOW, retention_days=800)
    return b, times


def brute(times: list[float], lo: float, hi: float) -> int:
    return sum(1 for t in times if lo <= t < hi)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 5), a=st.integers(0, 300), n=st.integers(1, 300))
def test_slot_aligned_ranges_in_the_slot_region(seed: int, a: int, n: int) -> None:
    b, times = filled(seed)
    lo = b.slot_cut + a * SLOT_SECONDS
    hi = lo + n * SLOT_SECONDS
    assert b.total(lo, hi)[0] == brute(times, lo, hi)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 5), a=st.integers(0, 700), n=st.integers(1, 700))
def test_hour_aligned_ranges_since_the_hour_cut(seed: int, a: int, n: int) -> None:
    b, times = filled(seed)
    lo = b.hour_cut + a * HOUR_SECONDS
    hi = lo + n * HOUR_SECONDS
    assert b.total(lo, hi)[0] == brute(times, lo, hi)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 5), a=st.integers(0, 70), n=st.integers(1, 70))
def test_day_aligned_ranges_anywhere(seed: int, a: int, n: int) -> None:
    b, times = filled(seed)
    first = date.fromtimestamp(NOW - 72 * DAY_SECONDS)
    d0 = date.fromordinal(first.toordinal() + a)
    lo = datetime.combine(d0, datetime.min.time(), TZ).timestamp()
    hi = datetime.combine(date.fromordinal(d0.toordinal() + n), datetime.min.time(),
                          TZ).timestamp()
    assert b.total(lo, hi)[0] == brute(times, lo, hi)


def test_rolling_equals_total_over_each_window() -> None:
    b, times = filled(7)
    roll = b.rolling(NOW)
    assert set(roll) == set(WINDOWS)
    for label, lo, hi in rolling_bounds(NOW):
        assert roll[label] == b.total(lo, hi)
    # The windows end with the current 5-minute slot: the 1 h window holds the events
    # of the twelve slots up to and including the one holding NOW.
    end = (NOW // SLOT_SECONDS + 1) * SLOT_SECONDS
    assert roll["1h"][0] == brute(times, end - HOUR_SECONDS, end)


def test_categories_by_day() -> None:
    b = Buckets(TZ)
    t = datetime(2026, 4, 12, 23, 30, tzinfo=TZ).timestamp()
    b.add(3, t, "gas")
    b.add(3, t + 3600, "gas")  # the next local day
    b.add(3, t, "fire")
    day = datetime(2026, 4, 12, tzinfo=TZ).timestamp()
    assert b.by_category(day, day + DAY_SECONDS) == {3: {"gas": 1, "fire": 1}}
    assert b.by_category(day, day + 2 * DAY_SECONDS) == {3: {"gas": 2, "fire": 1}}


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
