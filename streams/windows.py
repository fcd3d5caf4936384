"""Event-time buckets at three resolutions, and the rolling windows summed from them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import IntEnum
from functools import lru_cache
from operator import add
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from .categories import category_key, split_category_key
from .tallies import Counts, Tally

SLOT_SECONDS = 300
HOUR_SECONDS = 3600
DAY_SECONDS = 86400

# How long each resolution is kept, measured back from the district's watermark.
# Five-minute slots serve the 1 h and 24 h windows, hours the 7 d and 28 d windows and
# the partial days of comparisons, days everything older.
SLOT_KEEP_SECONDS = 26 * HOUR_SECONDS
HOUR_KEEP_SECONDS = 30 * DAY_SECONDS
# Fewer keys dropped than this never make the days' dict worth copying (Buckets._churned).
COMPACT_MIN_DROPPED = 32


class Measure(IntEnum):
    """What is counted. Values index the count vectors and are stored in snapshots."""

    CASES_FILED = 0
    CASES_CLEARED = 1
    DISPUTES_REPORTED = 2
    DISPUTES_MEDIATED = 3
    DISPUTES_RESOLVED = 4
    DISPUTES_ESCALATED = 5
    HAZARDS_FOUND = 6
    HAZARDS_RECTIFIED = 7
    # Counted at the hazard's FOUND time when it is rectified: the cohort numerator.
    HAZARDS_FOUND_RECTIFIED = 8
    HAZARDS_VERIFIED = 9
    PATROLS_COMPLETED = 10
    # Cohort numerators, counted at the OPENING's time once the lifecycle is closed: of
    # the cases filed (disputes reported) then, how many are cleared (resolved) since.
    CASES_FILED_CLEARED = 11
    DISPUTES_REPORTED_RESOLVED = 12
    # Look-back visits (回头看) that found a hazard not rectified.
    HAZARDS_LOOKBACK_FAILED = 13
    # Work-safety accidents and the other three of the four indicators (四项指标), at the
    # accident's own time; a revision of an accident moves them by the difference.
    ACCIDENTS = 14
    ACCIDENT_DEATHS = 15
    ACCIDENT_SERIOUS_INJURIES = 16
    ACCIDENT_DIRECT_LOSS_YUAN = 17


MEASURES = tuple(Measure)
# Measures that never carry a category, and the name of a count that lacks one.
UNCATEGORISED = frozenset({Measure.PATROLS_COMPLETED})
UNKNOWN_CATEGORY = "unknown"
N_MEASURES = len(MEASURES)
assert N_MEASURES <= 32, "category_key packs the measure into five bits"

# Rolling windows: label -> length. Shorter than a day: slots; otherwise hours.
WINDOWS: dict[str, int] = {
    "1h": HOUR_SECONDS,
    "24h": DAY_SECONDS,
    "7d": 7 * DAY_SECONDS,
    "28d": 28 * DAY_SECONDS,
}



class _Since:
    """The counts added since the last read of the rolling windows, already sorted into
    the windows of that read (same slot end, same cuts: see ``Buckets.rolling``)."""

    __slots__ = ("day_cut", "end", "everywhere", "inner", "partial")

    def __init__(self, end: float, day_cut: float, starts: list[tuple[str, float]]) -> None:
        self.end = end
        self.day_cut = day_cut
        # A count at or after the latest start is in every window (they nest).
        self.inner = max(start for _, start in starts)
        self.everywhere = zeros()
        # Per window: its label, its start, and the counts in it but not in every window.
        self.partial = [(label, start, zeros()) for label, start in starts]


@dataclass(slots=True)
class _Span:
    """A sum over ``[lo, hi)`` kept between reads and moved by each count added inside
    the buckets it read (see ``Buckets.kept_total``)."""

    lo: float
    hi: float
    cuts: tuple[float, float, float]
    # A count with a time in [start, stop) is in the sum (the stretch the buckets read
    # cover) unless it is before the day cut, where nothing is kept.
    start: float
    stop: float
    vec: list[int]


# Spans kept per district: the scrape reads two (the matured cohort and the surge
# baseline), whose edges move with each 5-minute slot.
SPANS_KEPT = 4
# ``_midnights_on_hours`` vouches for the 40 days before a span's end.
SPAN_MAX_SECONDS = 38 * DAY_SECONDS


def zeros() -> list[int]:
    return [0] * N_MEASURES


class DayCategories:
    """One local day's counts by category key (``category_key``).

    Kept for the whole retention (800 days): a dict per day took 2.3 KB at 44 keys (its
    table sized for 85, and a key above 256 an int object of its own), 1.9 GB for 1,000
    busy districts. A recent day, which takes nearly every count, keeps its dict (the
    fastest to count into); an older one is frozen (``Buckets`` freezes all but the
    newest ``HOT_DAYS``): its keys become the characters of a string and its counts a
    list at the same positions, about a quarter of the dict. A count for a frozen day (a
    cohort closed days later) finds its key with ``str.find``, in C, without an object
    per key compared. The counts stay Python ints: a day's direct loss in yuan has no
    bound an array could hold. Keys are far below ``chr``'s limit: the categories are
    the schemas' enums, a few dozen, each with 32 measures. Keys keep their first
    count's order in both forms, so a live day and one rebuilt from its snapshot list
    them alike.
    """

    __slots__ = ("counts", "hot", "keys")

    def __init__(self) -> None:
        self.hot: dict[int, int] | None = {}
        self.keys = ""
        self.counts: list[int] = []

    def add(self, ckey: int, n: int) -> None:
        hot = self.hot
        if hot is not None:
            hot[ckey] = hot.get(ckey, 0) + n
            return
        ch = chr(ckey)
        i = self.keys.find(ch)
        if i >= 0:
            self.counts[i] += n
        else:
            self.keys += ch
            self.counts.append(n)

    def freeze(self) -> None:
        hot = self.hot
        if hot is not None:
            self.keys = "".join(map(chr, hot))
            self.counts = list(hot.values())
            self.hot = None

    def items(self) -> Iterator[tuple[int, int]]:
        hot = self.hot
        if hot is not None:
            return iter(hot.items())
        return zip(map(ord, self.keys), self.counts, strict=True)

    def __len__(self) -> int:
        hot = self.hot
        return len(hot) if hot is not None else len(self.counts)

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]], frozen: bool) -> DayCategories:
        """A day from (key, count) pairs (a repeated key: the last stands)."""
        day = cls()
        day.hot = dict(pairs)
        if frozen:
            day.freeze()
        return day


# Days whose categories stay dicts: today's, yesterday's (late counts within the 24 h
# grace, a district's local day against UTC), and one for a late count further back.
HOT_DAYS = 3


# Every UTC offset in use is a whole number of quarter hours, so a UTC-aligned quarter
# hour never straddles a local midnight: its local day can be cached, for all districts.
_QUARTER = 900
_DAY_CACHE: dict[tuple[ZoneInfo, int], int] = {}
# About 100 days of quarter hours (1.7 MB). Each entry costs ~175 B, a miss ~1 us: a
# cap of years (200,000, 33 MB) kept RSS growing for years of event time past the
# retention (the plateau benchmark), while a live worker reuses a few days of keys.
DAY_CACHE_MAX = 10_000


def local_day(ts: float, tz: ZoneInfo) -> int:
    """The proleptic ordinal of the local date of ``ts`` in ``tz``."""
    key = (tz, int(ts // _QUARTER))
    day = _DAY_CACHE.get(key)
    if day is None:
        if len(_DAY_CACHE) >= DAY_CACHE_MAX:
            _DAY_CACHE.clear()
        day = _DAY_CACHE[key] = datetime.fromtimestamp(key[1] * _QUARTER, tz).toordinal()
    return day


class Buckets:
    """Counts per measure in 5-minute slots, hours and local days, plus categories by day.

    Every count lands in one slot, one hour and one day; a query takes each stretch of
    time from the finest resolution still kept there, so nothing is counted twice.
    ``slot_cut``/``hour_cut`` mark where the finer resolutions start; they are aligned
    to hours and local days so the stretches tile without overlap. Slots and hours are
    tallies (``streams/tallies.py``: a flat table of the counts not zero); days stay a
    dict of vectors, which the work-safety figures and the categories read by day.
    """

    __slots__ = (
        "_day_next",
        "_dropped",
        "_first_day",
        "_hot_days",
        "_hour_next",
        "_rolled",
        "_since",
        "_spans",
        "categories",
        "day_cut",
        "days",
        "hour_cut",
        "hours",
        "slot_cut",
        "slots",
        "tz",
    )

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.slots: Counts = Tally(N_MEASURES)
        self.hours: Counts = Tally(N_MEASURES)
        self.days: dict[int, list[int]] = {}
        # (day ordinal) -> counts by category_key(measure, category)
        self.categories: dict[int, DayCategories] = {}
        # The days whose categories are still dicts (DayCategories), at most HOT_DAYS.
        self._hot_days: list[int] = []
        self.slot_cut = float("-inf")
        self.hour_cut = float("-inf")
        self.day_cut = float("-inf")
        # When the hour and day cuts next move: a local-midnight lookup only then.
        self._hour_next = float("-inf")
        self._day_next = float("-inf")
        # The last rolling windows read, with the slot end and cuts they were read at,
        # and the counts added since, sorted into those windows as they are added.
        self._rolled: tuple[float, tuple[float, float, float], dict[str, list[int]]] | None = None
        self._since: _Since | None = None
        self._spans: list[_Span] = []
        # Keys dropped from the days since their dict was last compacted (the tallies
        # compact themselves as they drop).
        self._dropped = 0
        # The earliest day kept, found again only after days were dropped (a scrape asks
        # for every changed district; a minimum over 800 days each time cost more).
        self._first_day: int | None = None

    # -- writing ---------------------------------------------------------------------

    def day_of(self, ts: float) -> int:
        return local_day(ts, self.tz)

    def _day_bounds(self, ts: float) -> tuple[float, float, int]:
        """(local midnight, next local midnight, ordinal) of the local day holding ``ts``.

        From the memoized day and midnights: every district crosses the same midnights,
        and three conversions each time were 2 % of the counting path."""
        day = local_day(ts, self.tz)
        return midnight_of_ordinal(self.tz, day), midnight_of_ordinal(self.tz, day + 1), day

    def add(self, measure: int, ts: float, category: str | None, n: int = 1) -> None:
        """Count ``n`` at event time ``ts``, in every resolution still kept for that time."""
        since = self._since
        # Sorted now, a few comparisons, rather than kept and sorted at the next scrape:
        # under load a district gathers hundreds of counts between two scrapes, and
        # sorting them all took half of a scrape (closings filed at their opening's
        # time fall in some windows only).
        if since is not None and since.day_cut <= ts < since.end:
            if ts >= since.inner:
                since.everywhere[measure] += n
            else:
                for _, start, part in since.partial:
                    if ts >= start:
                        part[measure] += n
        if self._spans and ts >= self.day_cut:
            for span in self._spans:
                if span.start <= ts < span.stop:
                    span.vec[measure] += n
        if ts >= self.slot_cut:
            self.slots.add(int(ts // SLOT_SECONDS), measure, n)
        if ts >= self.hour_cut:
            self.hours.add(int(ts // HOUR_SECONDS), measure, n)
        if ts >= self.day_cut:
            day = local_day(ts, self.tz)
            vec = self.days.get(day)
            if vec is None:
                vec = self.days[day] = [0] * N_MEASURES
                if self._first_day is not None and day < self._first_day:
                    self._first_day = day
            vec[measure] += n
            if category is not None:
                cats = self.categories.get(day)
                if cats is None:
                    cats = self._new_day(day)
                cats.add(category_key(measure, category), n)

    def add_category(self, measure: int, ts: float, category: str, n: int = 1) -> None:
        """File ``n`` counts already in the totals under ``category`` (day resolution)."""
        if ts >= self.day_cut:
            day = local_day(ts, self.tz)
            cats = self.categories.get(day)
            if cats is None:
                cats = self._new_day(day)
            cats.add(category_key(measure, category), n)

    def _new_day(self, day: int) -> DayCategories:
        """A day's categories, created hot; the oldest hot day beyond HOT_DAYS freezes."""
        cats = self.categories[day] = DayCategories()
        hot = self._hot_days
        hot.append(day)
        if len(hot) > HOT_DAYS:
            hot.sort()
            older = self.categories.get(hot.pop(0))
            if older is not None:
                older.freeze()
        return cats

    def expire(self, watermark: float, retention_days: int) -> None:
        """Drop what is older than each resolution keeps; ``watermark`` is event time."""
        slot_cut = _floor(watermark - SLOT_KEEP_SECONDS, HOUR_SECONDS)
        if slot_cut > self.slot_cut:
            self.slot_cut = slot_cut
            self.slots.drop_below(int(slot_cut // SLOT_SECONDS))
        t = watermark - HOUR_KEEP_SECONDS
        if t >= self._hour_next:
            hour_cut, self._hour_next, _ = self._day_bounds(t)
            if hour_cut > self.hour_cut:
                self.hour_cut = hour_cut
                self.hours.drop_below(int(hour_cut // HOUR_SECONDS))
        t = watermark - retention_days * DAY_SECONDS
        if t >= self._day_next:
            day_cut, self._day_next, first_day = self._day_bounds(t)
            if day_cut > self.day_cut:
                self.day_cut = day_cut
                old = [d for d in self.days if d < first_day]
                for day in old:
                    del self.days[day]
                    self.categories.pop(day, None)
                if old:
                    self._first_day = None
                if self._churned(len(old), len(self.days)):
                    self.days = _compact(self.days)
                    self.categories = _compact(self.categories)

    def first_day(self) -> int | None:
        """The ordinal of the earliest local day with a count kept; None when none is."""
        if self._first_day is None and self.days:
            self._first_day = min(self.days)
        return self._first_day

    def _churned(self, dropped: int, kept: int) -> bool:
        """Whether the days' dicts should be copied to compact ones now.

        A dict never shrinks: as old keys leave and new ones come, CPython resizes it for
        three times the keys it holds, so a window of 800 days settles in a table twice the
        size a fresh copy takes: +72 MB of days and categories at 1,000 districts once the
        800 days of retention are full, and a step of RSS in the plateau benchmark long
        after the retention edge. A copy after a quarter of the keys have turned over keeps
        the window at its compact size, for one pass over the keys.
        """
        self._dropped += dropped
        if self._dropped < max(COMPACT_MIN_DROPPED, kept // 4):
            return False
        self._dropped = 0
        return True

    # -- reading ---------------------------------------------------------------------

    def total(self, lo: float, hi: float) -> list[int]:
        """Counts of every measure for event times in ``[lo, hi)``, by bucket start."""
        out = zeros()
        self._total_into(out, lo, hi)
        return out

    def kept_total(self, lo: float, hi: float) -> list[int]:
        """``total(lo, hi)``, kept and moved by the counts added after it: for a span read
        again and again with the same edges (a scrape's signals over weeks of buckets).

        A few spans are kept, the latest read; one read with other cuts is summed again.
        """
        cuts = (self.slot_cut, self.hour_cut, self.day_cut)
        for span in self._spans:
            if span.lo == lo and span.hi == hi and span.cuts == cuts:
                return list(span.vec)
        out = self.total(lo, hi)
        if (
            hi > lo
            and hi - lo <= SPAN_MAX_SECONDS
            and (self.hour_cut == float("-inf") or self.hour_cut % HOUR_SECONDS == 0)
            and _midnights_on_hours(self.tz, int(hi // DAY_SECONDS) + 1)
        ):
            # Only where hour and day buckets meet without gap or overlap is the sum the
            # counts with a time in one stretch; elsewhere each read sums the buckets.
            spans = self._spans = [
                sp for sp in self._spans[-(SPANS_KEPT - 1) :] if sp.lo != lo or sp.hi != hi
            ]
            spans.append(
                _Span(lo, hi, cuts, self._region_start(lo), self._region_stop(hi), list(out))
            )
        return out

    def rolling(self, now: float) -> dict[str, list[int]]:
        """Counts in each rolling window that ends with the 5-minute slot holding ``now``.

        Ending at the slot's end keeps an event stamped this very second inside the
        window; the windows nest, so each one adds only the stretch the shorter one lacks.
        """
        end = rolling_end(now)
        cuts = (self.slot_cut, self.hour_cut, self.day_cut)
        rolled, since = self._rolled, self._since
        if (
            rolled is not None
            and since is not None
            and rolled[0] == end
            and rolled[1] == cuts
            and end >= self.slot_cut
            and (self.hour_cut == float("-inf") or self.hour_cut % HOUR_SECONDS == 0)
            and _midnights_on_hours(self.tz, int(end // DAY_SECONDS))
        ):
            # Same edges, same cuts: each window reads the same buckets as at the last
            # read, which hold what they held then plus the counts added since. A count
            # is in a window when its time is within the stretch the window's buckets
            # cover; one before the day cut was kept nowhere (sorted so by ``add``).
            kept: dict[str, list[int]] = {}
            for label, _, partial in since.partial:
                vec = kept[label] = [*map(add, rolled[2][label], since.everywhere)]
                _add(vec, partial)
            self._rolled = (end, cuts, kept)
            self._since = self._since_read(end)
            return {label: list(vec) for label, vec in kept.items()}
        out: dict[str, list[int]] = {}
        acc = zeros()
        prev_lo = end
        for label, length in sorted(WINDOWS.items(), key=lambda kv: kv[1]):
            lo = end - length
            self._total_into(acc, lo, prev_lo)
            out[label] = list(acc)
            prev_lo = lo
        self._rolled = (end, cuts, out)
        self._since = self._since_read(end)
        return {label: list(vec) for label, vec in out.items()}

    def _since_read(self, end: float) -> _Since:
        """Where the counts after a read of the windows ending at ``end`` go."""
        starts = [(label, self._region_start(end - length)) for label, length in WINDOWS.items()]
        return _Since(end, self.day_cut, starts)

    def _region_start(self, lo: float) -> float:
        """Where the buckets ``_total_into(lo, hi)`` reads begin: ``lo`` rounded up to the
        slot, hour or local day, as the resolution kept at ``lo`` is."""
        if lo >= self.slot_cut:
            return _ceil_div(lo, SLOT_SECONDS) * SLOT_SECONDS
        if lo >= self.hour_cut:
            return _ceil_div(lo, HOUR_SECONDS) * HOUR_SECONDS
        return self._midnight_of_ordinal(self._first_day_starting_at_or_after(lo))

    def _region_stop(self, hi: float) -> float:
        """Where the buckets ``_total_into(lo, hi)`` reads end: ``hi`` rounded up to the
        slot, hour or local day, as the resolution its last stretch is read from is."""
        if hi > self.slot_cut:
            return _ceil_div(hi, SLOT_SECONDS) * SLOT_SECONDS
        if hi > self.hour_cut:
            return _ceil_div(hi, HOUR_SECONDS) * HOUR_SECONDS
        return self._midnight_of_ordinal(self._first_day_starting_at_or_after(hi))

    def _total_into(self, out: list[int], lo: float, hi: float) -> None:
        if hi <= lo:
            return
        # Each stretch from the finest resolution kept there; the cuts are aligned to
        # hours and local days, so the stretches tile [lo, hi) without overlap.
        b = min(hi, self.hour_cut)
        if lo < b:
            self._days_into(out, lo, b)
        a, b = max(lo, self.hour_cut), min(hi, self.slot_cut)
        if a < b:
            self._hours_into(out, a, b)
        a = max(lo, self.slot_cut)
        if a < hi:
            self._slots_into(out, a, hi)

    def _days_into(self, out: list[int], lo: float, hi: float) -> None:
        first = self._first_day_starting_at_or_after(lo)
        last = self._first_day_starting_at_or_after(hi)
        _sum_into(out, self.days, first, last)

    def _hours_into(self, out: list[int], lo: float, hi: float) -> None:
        # Whole local days inside [lo, hi) from day buckets, the edges from hours.
        d0 = self._first_day_starting_at_or_after(lo)
        d1 = self._first_day_starting_at_or_after(hi)
        m0 = self._midnight_of_ordinal(d0)
        if d1 - 1 > d0 and m0 < hi:
            m1 = self._midnight_of_ordinal(d1 - 1)
            _sum_into(out, self.days, d0, d1 - 1)
            self.hours.sum_into(out, _ceil_div(lo, HOUR_SECONDS), _ceil_div(m0, HOUR_SECONDS))
            self.hours.sum_into(out, _ceil_div(m1, HOUR_SECONDS), _ceil_div(hi, HOUR_SECONDS))
        else:
            self.hours.sum_into(out, _ceil_div(lo, HOUR_SECONDS), _ceil_div(hi, HOUR_SECONDS))

    def _slots_into(self, out: list[int], lo: float, hi: float) -> None:
        # Whole hours (and days, through _hours_into) from coarser buckets, edges from slots.
        h0 = _ceil_div(lo, HOUR_SECONDS) * HOUR_SECONDS
        h1 = (hi // HOUR_SECONDS) * HOUR_SECONDS
        if h0 < h1:
            self._hours_into(out, h0, h1)
            self.slots.sum_into(out, _ceil_div(lo, SLOT_SECONDS), _ceil_div(h0, SLOT_SECONDS))
            self.slots.sum_into(out, _ceil_div(h1, SLOT_SECONDS), _ceil_div(hi, SLOT_SECONDS))
        else:
            self.slots.sum_into(out, _ceil_div(lo, SLOT_SECONDS), _ceil_div(hi, SLOT_SECONDS))

    def _midnight_of_ordinal(self, ordinal: int) -> float:
        return midnight_of_ordinal(self.tz, ordinal)

    def by_category(self, lo: float, hi: float) -> dict[int, dict[str, int]]:
        """Counts per measure and category, at one-day resolution (days starting in range).

        What a measure counted without a category (a step that came before its opening)
        is filed under ``unknown``; patrols have no categories and are left out.
        """
        first = self._first_day_starting_at_or_after(lo)
        last = self._first_day_starting_at_or_after(hi)
        out: dict[int, dict[str, int]] = {}
        for day, cats in self.categories.items():
            if first <= day < last:
                for ckey, n in cats.items():
                    m, cat = split_category_key(ckey)
                    per = out.setdefault(m, {})
                    per[cat] = per.get(cat, 0) + n
        totals = zeros()
        _sum_into(totals, self.days, first, last)
        for m in MEASURES:
            if m in UNCATEGORISED:
                continue
            unknown = totals[m] - sum(out.get(m, {}).values())
            if unknown:
                out.setdefault(m, {})[UNKNOWN_CATEGORY] = unknown
        return out

    def _first_day_starting_at_or_after(self, ts: float) -> int:
        return _first_day_starting_at_or_after(self.tz, ts)

    # -- snapshots -------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "s": self.slots.rows(),
            "h": self.hours.rows(),
            "d": [[k, v] for k, v in self.days.items()],
            "c": [
                [k, [[*split_category_key(ckey), n] for ckey, n in v.items()]]
                for k, v in self.categories.items()
            ],
            "cut": [_finite(self.slot_cut), _finite(self.hour_cut), _finite(self.day_cut)],
        }

    @classmethod
    def from_snapshot(cls, tz: ZoneInfo, snap: dict[str, Any]) -> Buckets:
        """The buckets of a snapshot (its rows of counts lack the measures added since it
        was written, if any were)."""
        b = cls(tz)
        b.slots.load(snap["s"])
        b.hours.load(snap["h"])
        # The decoded lists of days are fresh: kept as they are unless a measure is missing.
        width = N_MEASURES
        b.days = {int(k): v if len(v) == width else _widen(v) for k, v in snap["d"]}
        days = sorted(int(k) for k, _ in snap["c"])
        b._hot_days = days[-HOT_DAYS:]
        hot = set(b._hot_days)
        b.categories = {
            int(k): DayCategories.of(
                ((category_key(m, cat), n) for m, cat, n in v), frozen=int(k) not in hot
            )
            for k, v in snap["c"]
        }
        cuts = [float("-inf") if c is None else float(c) for c in snap["cut"]]
        b.slot_cut, b.hour_cut, b.day_cut = cuts
        return b


# Window edges are the same few instants for every district (the slot's end minus each
# window's length), and each time zone conversion costs microseconds: a scrape at 1,000
# districts made 70,000 of them. Pure functions of their arguments, so memoized.
@lru_cache(maxsize=4096)
def midnight_of_ordinal(tz: ZoneInfo, ordinal: int) -> float:
    return datetime.combine(date.fromordinal(ordinal), time(0), tz).timestamp()


@lru_cache(maxsize=4096)
def _first_day_starting_at_or_after(tz: ZoneInfo, ts: float) -> int:
    local = datetime.fromtimestamp(ts, tz)
    day = local.date().toordinal()
    midnight = datetime.combine(local.date(), time(0), tz).timestamp()
    return day if midnight >= ts else day + 1


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@lru_cache(maxsize=64)
def _midnights_on_hours(tz: ZoneInfo, utc_day: int) -> bool:
    """Whether every local midnight of the 40 days to ``utc_day`` falls on a UTC hour:
    only then do the hour and day buckets a window reads meet without gap or overlap
    (a zone such as +05:30 reads its windows by summing the buckets, never by adding on)."""
    first = _EPOCH_ORDINAL + utc_day - 40
    return all(
        midnight_of_ordinal(tz, ordinal) % HOUR_SECONDS == 0
        for ordinal in range(first, first + 42)
    )


def _widen(vec: list[int]) -> list[int]:
    # Snapshots written before a measure was added are shorter: pad with zeros.
    return vec + [0] * (N_MEASURES - len(vec)) if len(vec) < N_MEASURES else list(vec)


def _finite(x: float) -> float | None:
    return None if x == float("-inf") else x


def _floor(ts: float, unit: int) -> float:
    return (ts // unit) * unit


_V = TypeVar("_V")


def _compact(d: dict[int, _V]) -> dict[int, _V]:
    """A fresh dict of ``d``'s items, sized for them. Key by key: ``dict(d)`` may clone the
    table, holes and all (it does compiled: ``PyDict_Copy``)."""
    return {k: v for k, v in d.items()}


def _add(out: list[int], vec: list[int]) -> None:
    out[:] = map(add, out, vec)


def _ceil_div(x: float, unit: int) -> int:
    return int(-(-x // unit))


def _sum_into(out: list[int], buckets: dict[int, list[int]], first: int, last: int) -> None:
    if last - first <= len(buckets):
        for key in range(first, last):
            vec = buckets.get(key)
            if vec is not None:
                _add(out, vec)
    else:
        for key, vec in buckets.items():
            if first <= key < last:
                _add(out, vec)


def rolling_end(now: float) -> float:
    """Where rolling windows end: the end of the 5-minute slot holding ``now``."""
    return (now // SLOT_SECONDS + 1) * SLOT_SECONDS


def rolling_bounds(now: float) -> Iterator[tuple[str, float, float]]:
    """(label, lo, hi) of each rolling window ending with the current slot."""
    end = rolling_end(now)
    for label, length in WINDOWS.items():
        yield label, end - length, end


def sum_vectors(vectors: Iterable[list[int]]) -> list[int]:
    out = zeros()
    for vec in vectors:
        _add(out, vec)
    return out
