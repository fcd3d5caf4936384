"""Buckets and periods: sums at every resolution agree with counting events one by one."""

from __future__ import annotations

import random
import sys
from datetime import date, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.tallies import PyTally
from streams.windows import (
    DAY_SECONDS,
    HOT_DAYS,
    HOUR_SECONDS,
    SLOT_SECONDS,
    WINDOWS,
    Buckets,
    DayCategories,
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


@pytest.mark.parametrize("seed", range(10))
def test_a_days_categories_count_what_a_dict_would(seed: int) -> None:
    """Keys in any order (some above 256, the int objects a dict would keep), counts of
    any size and sign (a day's direct loss in yuan), the day frozen at a random count:
    it holds what a dict adding them up holds, in the same order, and a snapshot's
    pairs give the same day back, hot or frozen."""
    rng = random.Random(seed)
    keys = rng.sample(range(2000), rng.randint(1, 120))
    day, model = DayCategories(), {}
    adds = rng.randint(1, 600)
    freeze_at = rng.randint(0, adds)
    for i in range(adds):
        if i == freeze_at:
            day.freeze()
            assert day.hot is None and list(day.items()) == list(model.items())
        key = rng.choice(keys)
        n = rng.choice((1, 1, 1, -1, rng.randint(10**11, 10**12) * 10**8))
        day.add(key, n)
        model[key] = model.get(key, 0) + n
    assert list(day.items()) == list(model.items()) and len(day) == len(model)
    for frozen in (False, True):
        again = DayCategories.of(list(model.items()), frozen=frozen)
        assert (again.hot is None) == frozen and list(again.items()) == list(model.items())


def test_a_frozen_busy_day_takes_a_third_of_a_dicts_room() -> None:
    """44 keys, the mean of a day of the benchmark's districts (about 100 records a
    day): the frozen day's string and list against the dict it was."""
    keys = [code * 32 + measure for code in range(0, 44, 2) for measure in (0, 6)]
    day = DayCategories()
    for i, key in enumerate(keys):
        day.add(key, i + 1)
    assert day.hot is not None
    held = sys.getsizeof(day.hot) + sum(sys.getsizeof(k) for k in day.hot if k > 256)
    day.freeze()
    taken = sys.getsizeof(day) + sys.getsizeof(day.keys) + sys.getsizeof(day.counts)
    assert 3 * taken <= held, (taken, held)


def test_only_the_newest_days_categories_stay_hot_live_and_rebuilt() -> None:
    """Counts over 40 days, some late by days: at most HOT_DAYS days keep a dict, the
    newest ones, and the breakdown by category is the one counted by hand, live, after
    a snapshot, and after more counts into frozen days."""
    rng = random.Random(3)
    b, want = Buckets(TZ), {}
    first = datetime(2026, 5, 1, 12, tzinfo=TZ).timestamp()
    cats = ["theft", "fraud", "fight", "gas", "fire"]

    def count(ts: float) -> None:
        cat = rng.choice(cats)
        b.add(0, ts, cat)
        day = datetime.fromtimestamp(ts, TZ).date()
        want[day, cat] = want.get((day, cat), 0) + 1

    for day in range(40):
        for _ in range(rng.randint(1, 30)):
            count(first + day * DAY_SECONDS + rng.uniform(-4, 4) * HOUR_SECONDS)
        if rng.random() < 0.3:
            count(first + rng.randint(0, day) * DAY_SECONDS)  # late, days back
    hot = sorted(d for d, c in b.categories.items() if c.hot is not None)
    assert len(hot) <= HOT_DAYS and hot == sorted(b.categories)[-len(hot) :]

    def by_hand(lo_day: date, days: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for (d, cat), n in want.items():
            if 0 <= (d - lo_day).days < days:
                out[cat] = out.get(cat, 0) + n
        return out

    lo = datetime(2026, 5, 3, tzinfo=TZ)
    rebuilt = Buckets.from_snapshot(TZ, b.to_snapshot())
    assert rebuilt.to_snapshot() == b.to_snapshot()
    assert [d for d, c in sorted(rebuilt.categories.items()) if c.hot is not None] == sorted(
        rebuilt.categories
    )[-HOT_DAYS:]
    for state in (b, rebuilt):
        got = state.by_category(lo.timestamp(), lo.timestamp() + 30 * DAY_SECONDS)
        assert got[0] == by_hand(lo.date(), 30)
    b = rebuilt
    for _ in range(50):  # into frozen days
        count(first + rng.randint(0, 30) * DAY_SECONDS)
    got = b.by_category(lo.timestamp(), lo.timestamp() + 30 * DAY_SECONDS)
    assert got[0] == by_hand(lo.date(), 30)


def test_the_local_day_cache_stays_small_over_years_of_event_time() -> None:
    from streams import windows

    tz = ZoneInfo("America/St_Johns")  # a half-hour offset with daylight saving
    start = datetime(2024, 1, 1, tzinfo=tz).timestamp()
    for i in range(0, 3 * 365 * 96, 7):  # three years, every 7th quarter hour plus 13 min
        ts = start + i * 900 + 780
        assert windows.local_day(ts, tz) == datetime.fromtimestamp(ts, tz).toordinal()
        assert len(windows._DAY_CACHE) <= windows.DAY_CACHE_MAX


def test_hours_and_days_stay_compact_as_their_keys_turn_over() -> None:
    """Years past the retention, the dicts of days and categories take no more room than
    the same keys inserted into fresh dicts (a churned dict settles at twice that), the
    hours' tally is between half and three quarters full of the counts it keeps (as a
    fresh one is), and they hold exactly the hours and days their windows keep."""
    b = Buckets(TZ)
    start = NOW - 2000 * DAY_SECONDS
    for day in range(2000):
        for hour in range(0, 24, 3):
            b.add(0, start + day * DAY_SECONDS + hour * HOUR_SECONDS, "theft")
        b.expire(start + day * DAY_SECONDS + 21 * HOUR_SECONDS, retention_days=800)
    assert 800 <= len(b.days) <= 802 and set(b.categories) == set(b.days)
    assert 30 * 8 - 8 <= len(b.hours) <= 31 * 8
    rows = b.hours.rows()
    if isinstance(b.hours, PyTally):  # a dict of lists, no slots to count
        fresh = PyTally(len(rows[0][1]))
        fresh.load(rows)
        assert sys.getsizeof(b.hours) <= sys.getsizeof(fresh)
    else:
        # One entry per count not zero; a bucket of zeros is held as one (streams/_tallies.c).
        entries = sum(max(1, sum(1 for c in counts if c)) for _, counts in rows)
        empty = type(b.hours)(len(rows[0][1]))
        slots = (sys.getsizeof(b.hours) - sys.getsizeof(empty)) // 16
        assert entries * 4 <= slots * 3 and slots <= 2 * entries, (entries, slots)
    for name in ("days", "categories"):
        held = getattr(b, name)
        fresh = {}
        for key, value in held.items():
            fresh[key] = value
        assert sys.getsizeof(held) <= sys.getsizeof(fresh), name


@pytest.mark.parametrize("seed", range(20))
def test_the_first_day_kept_follows_counts_expiries_and_snapshots(seed: int) -> None:
    """The earliest day with a count, kept between reads, is the least day key held:
    after new days later and earlier than it, expiries that drop it, and a snapshot."""
    rng = random.Random(seed)
    b = Buckets(TZ)
    watermark = NOW - 900 * DAY_SECONDS
    assert b.first_day() is None
    for _ in range(400):
        if rng.random() < 0.1:
            watermark += rng.uniform(0, 60) * DAY_SECONDS
            b.expire(watermark, retention_days=rng.choice([10, 30, 800]))
        else:
            b.add(0, watermark - rng.uniform(-2, 40) * DAY_SECONDS, None)
        if rng.random() < 0.05:
            b = Buckets.from_snapshot(TZ, b.to_snapshot())
        assert b.first_day() == (min(b.days) if b.days else None)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000))
@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Asia/Kolkata", "America/New_York"])
def test_rolling_read_again_after_new_counts_equals_summing_the_buckets(
    zone: str, seed: int
) -> None:
    """Windows kept between reads and moved by the counts added since equal a fresh sum:
    live, older, future and negative counts, counts before the day cut, reads within and
    across slots, expiries; in zones with whole-hour, half-hour and changing offsets."""
    rng = random.Random(seed)
    tz = ZoneInfo(zone)
    retention = rng.choice((800, 31))
    b = Buckets(tz)
    times = [NOW - rng.random() * 70 * DAY_SECONDS for _ in range(800)]
    for ts in sorted(times):
        b.add(0, ts, "x")
    b.expire(NOW, retention_days=retention)
    now = NOW
    wm = NOW
    for _ in range(40):
        for _ in range(rng.choice((0, 1, 3, 20))):
            r = rng.random()
            if r < 0.7:
                ts = now - rng.random() * HOUR_SECONDS  # live: in the shortest window
            elif r < 0.8:
                ts = now - rng.random() * 40 * DAY_SECONDS
            elif r < 0.9:
                ts = now + rng.random() * 600  # a little ahead of the clock
            else:
                ts = (now // SLOT_SECONDS) * SLOT_SECONDS - HOUR_SECONDS + rng.choice((-1, 0, 1))
            measure, n = rng.randrange(3), rng.choice((1, 1, 1, 2, -1))
            b.add(measure, ts, "x", n)
            times.append(ts)
            if ts > wm and rng.random() < 0.3:
                wm = ts
                b.expire(wm, retention_days=retention)
        if rng.random() < 0.3:
            b.expire(wm, retention_days=retention)
        now += rng.choice((0.0, 1.0, 60.0, SLOT_SECONDS, rng.random() * 3 * HOUR_SECONDS))
        wm = max(wm, now)
        got = b.rolling(now)
        fresh = Buckets.from_snapshot(tz, b.to_snapshot()).rolling(now)
        assert got == fresh
        if zone != "Asia/Kolkata":  # a half-hour zone's nested windows tile differently
            for label, lo, hi in rolling_bounds(now):
                assert got[label] == b.total(lo, hi)
        got["1h"][0] += 1000  # a reader's change to what it got never reaches the next read
        assert b.rolling(now) == fresh


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000))
@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Asia/Kolkata", "America/New_York"])
def test_kept_spans_read_again_after_new_counts_equal_summing_the_buckets(
    zone: str, seed: int
) -> None:
    """Spans kept between reads (the scrape's signals) and moved by the counts added since
    equal a fresh sum of the buckets, and the events' own count where nothing expired:
    spans ending in slots, hours and days, counts inside, outside and on their edges,
    negative counts, expiries that move the cuts under spans whose edges stay."""
    rng = random.Random(seed)
    tz = ZoneInfo(zone)
    retention = rng.choice((800, 31))
    b = Buckets(tz)
    events: list[tuple[float, int]] = []
    for ts in sorted(NOW - rng.random() * 70 * DAY_SECONDS for _ in range(600)):
        b.add(0, ts, "x")
        events.append((ts, 1))
    b.expire(NOW, retention_days=retention)
    now = wm = NOW
    for _ in range(40):
        end = (now // SLOT_SECONDS + 1) * SLOT_SECONDS
        spans = [
            (end - 35 * DAY_SECONDS, end - 7 * DAY_SECONDS),
            (end - 29 * DAY_SECONDS + rng.choice((0, 1234)), end - DAY_SECONDS),
            (end - 3 * HOUR_SECONDS - 17, end - 40 * 60),
            (end - 30 * HOUR_SECONDS, end - 26 * HOUR_SECONDS + 100),  # near the slot cut
        ]
        for _ in range(rng.choice((0, 1, 3, 20))):
            lo, hi = rng.choice(spans)
            ts = rng.choice((lo, hi, lo - 1, hi - 1, lo + rng.random() * (hi - lo),
                             hi + rng.random() * HOUR_SECONDS, lo - rng.random() * DAY_SECONDS,
                             now - rng.random() * 45 * DAY_SECONDS,
                             now + rng.random() * 2 * HOUR_SECONDS))  # moves the cuts
            n = rng.choice((1, 1, 2, -1))
            b.add(0, ts, "x", n)
            events.append((ts, n))
            if ts > wm and rng.random() < 0.3:
                wm = ts
                b.expire(wm, retention_days=retention)
        if rng.random() < 0.2:
            b.expire(wm, retention_days=retention)
        fresh = Buckets.from_snapshot(tz, b.to_snapshot())
        for lo, hi in spans:
            got = b.kept_total(lo, hi)
            assert got == fresh.total(lo, hi)
            if min(ts for ts, _ in events) >= b.day_cut and zone != "Asia/Kolkata":
                # Nothing dropped, hour-aligned midnights: every count in the stretch read.
                start, stop = fresh._region_start(lo), fresh._region_stop(hi)
                assert got[0] == sum(n for ts, n in events if start <= ts < stop)
            got[0] += 1000  # a reader's change to what it got never reaches the next read
            assert b.kept_total(lo, hi) == fresh.total(lo, hi)
        now += rng.choice((0.0, 1.0, 60.0, SLOT_SECONDS, rng.random() * 3 * HOUR_SECONDS))
        wm = max(wm, now)


def test_rolling_many_counts_between_reads() -> None:
    b, _ = filled(3, n=200)
    first = b.rolling(NOW)
    for i in range(2000):  # live and older counts, sorted into the windows as they come
        b.add(1, NOW - i % 3000, "x")
    got = b.rolling(NOW)
    assert got == Buckets.from_snapshot(TZ, b.to_snapshot()).rolling(NOW)
    assert got["1h"][1] - first["1h"][1] == 2000


def test_late_counts_reach_only_their_own_district_live_and_rebuilt() -> None:
    """Two districts with the same history; late counts into one, before and after a
    snapshot, leave the other as counted by hand."""
    rng = random.Random(11)
    start = NOW - 20 * DAY_SECONDS
    history = [start + rng.random() * 20 * DAY_SECONDS for _ in range(3000)]
    a, b = Buckets(TZ), Buckets(TZ)
    hand: list[dict[int, int]] = [{}, {}]  # per district, hour key -> count of measure 0
    for ts in sorted(history):
        for i, x in enumerate((a, b)):
            x.add(0, ts, "x")
            hand[i][int(ts // HOUR_SECONDS)] = hand[i].get(int(ts // HOUR_SECONDS), 0) + 1
        for x in (a, b):
            x.expire(ts, 800)
    old = [k for k in a.hours.buckets() if k < int((NOW - DAY_SECONDS) // HOUR_SECONDS)]
    assert len(old) > 300
    # Through bytes, as a worker rebuilds (an in-memory snapshot holds the days' lists).
    snap = orjson.loads(orjson.dumps(a.to_snapshot()))
    rebuilt = Buckets.from_snapshot(TZ, snap)
    late = rng.sample(old, 50)
    for x in (a, rebuilt):
        for k in late:
            x.add(0, k * HOUR_SECONDS + 1, "x", 5)
    for k in old:
        assert b.hours.row(k)[0] == hand[1][k]
        assert a.hours.row(k)[0] == rebuilt.hours.row(k)[0] >= hand[0][k]
    assert sum(a.hours.row(k)[0] - hand[0][k] for k in old) == 250
    assert a.hours.rows() == rebuilt.hours.rows()
    wide = (start - DAY_SECONDS, NOW + DAY_SECONDS)
    assert a.total(*wide) == rebuilt.total(*wide)
    assert a.total(*wide)[0] == 3250 and b.total(*wide)[0] == 3000


def test_a_snapshot_in_memory_is_copied_not_shared_with_the_buckets_it_came_from() -> None:
    b, _ = filled(5, n=500)
    snap = b.to_snapshot()
    again = Buckets.from_snapshot(TZ, snap)
    newest = max(b.hours.buckets())
    before = b.hours.row(newest)
    again.add(2, newest * HOUR_SECONDS, "x", 7)
    assert b.hours.row(newest) == before and again.hours.row(newest)[2] == before[2] + 7
    b.add(3, newest * HOUR_SECONDS, "x", 1)
    assert again.hours.row(newest)[3] == before[3]
    assert snap["h"][-1] == [newest, before]
