"""Buckets and periods: sums at every resolution agree with counting events one by one."""

from __future__ import annotations

import random
from datetime import date, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.windows import (
    DAY_SECONDS,
    HOUR_SECONDS,
    SLOT_SECONDS,
    WINDOWS,
    Buckets,
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


def test_the_local_day_cache_stays_small_over_years_of_event_time() -> None:
    from streams import windows

    tz = ZoneInfo("America/St_Johns")  # a half-hour offset with daylight saving
    start = datetime(2024, 1, 1, tzinfo=tz).timestamp()
    for i in range(0, 3 * 365 * 96, 7):  # three years, every 7th quarter hour plus 13 min
        ts = start + i * 900 + 780
        assert windows.local_day(ts, tz) == datetime.fromtimestamp(ts, tz).toordinal()
        assert len(windows._DAY_CACHE) <= windows.DAY_CACHE_MAX
