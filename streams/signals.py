"""What the alerts judge: a matured cohort, the surge baseline, the newest overdue major hazard."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from .state import DistrictState
from .windows import DAY_SECONDS, HOUR_SECONDS, Measure, midnight_of_ordinal, rolling_end

# The matured cohort: hazards found between 35 and 7 days before the current slot ends.
# Seven days old, most ordinary deadlines (2 to 15 days, a few 30) have passed; four
# weeks of finds, so that one bad day or a weekday rhythm does not decide the rate.
MATURED_FROM_SECONDS = 35 * DAY_SECONDS
MATURED_TO_SECONDS = 7 * DAY_SECONDS
# The surge baseline: the daily mean of cases filed over up to 28 days before the last
# 24 h (the current day is left out, so a surge cannot raise its own baseline), from the
# worker's own buckets. Fewer than 7 whole days of history give no baseline at all.
BASELINE_DAYS = 28
BASELINE_MIN_DAYS = 7
# "One problem, one responsible leader, one department, one plan": a dispute still open a
# month after it was reported has no plan that works.
DISPUTE_OPEN_SECONDS = 30 * DAY_SECONDS


@dataclass(frozen=True)
class Cohort:
    """Of the hazards found in a span, how many are rectified now."""

    found: int
    rectified: int

    @property
    def ratio(self) -> float | None:
        return self.rectified / self.found if self.found else None


@dataclass(frozen=True)
class Baseline:
    """Cases filed per day on average, and over how many days (7 to 28) that mean runs."""

    per_day: float
    days: float


def matured_cohort(st: DistrictState, now: float) -> Cohort:
    """Hazards found 35 to 7 days ago and how many of them are rectified now.

    Read from hour buckets (the near edge) and day buckets (past 30 days): the far edge
    is rounded up to the next local midnight, the near one up to the hour.
    """
    end = rolling_end(now)
    # Kept between scrapes: four weeks of buckets, read again every scrape until the slot ends.
    vec = st.counts(end - MATURED_FROM_SECONDS, end - MATURED_TO_SECONDS, keep=True)
    return Cohort(vec[Measure.HAZARDS_FOUND], vec[Measure.HAZARDS_FOUND_RECTIFIED])


def cases_filed_baseline(st: DistrictState, now: float) -> Baseline | None:
    """The daily mean of cases filed in the 28 days before the last 24 h; None with less
    than 7 whole days of history.

    History starts with the first whole local day after the first day the district has
    any count, so a district that began mid-day is not judged on a partial day. The span
    is read at hour precision (its far edge rounded up to the hour), and the mean divides
    by the span actually read.
    """
    first_day = st.buckets.first_day()
    if first_day is None:
        return None
    hi = rolling_end(now) - DAY_SECONDS
    history_starts = midnight_of_ordinal(st.tz, first_day + 1)
    lo = max(hi - BASELINE_DAYS * DAY_SECONDS, history_starts)
    lo = -(-lo // HOUR_SECONDS) * HOUR_SECONDS
    days = (hi - lo) / DAY_SECONDS
    if days < BASELINE_MIN_DAYS:
        return None
    return Baseline(st.counts(lo, hi, keep=True)[Measure.CASES_FILED] / days, days)


def newest_overdue_major_deadline(st: DistrictState) -> float | None:
    """The latest deadline among the district's overdue major hazards; None while none is.

    It moves forward each time another major hazard passes its deadline, and falls back
    (or goes) when the newest one is rectified or given a new deadline. It is derived from
    the state and the overdue timer alone, so a restarted worker exports the same value.
    """
    if not st.overdue_major:
        return None
    deadlines = [s.deadline for s in st.overdue.values() if s.major and s.deadline is not None]
    return max(deadlines) if deadlines else None


@dataclass(frozen=True)
class MonthOld:
    """Open disputes reported more than 30 days ago, and when the newest of them turned 30."""

    count: int
    newest_at: float | None


def disputes_open_a_month(times: list[float], now: float) -> MonthOld:
    """Of the open disputes reported at ``times`` (sorted), those open over 30 days at
    ``now``, and the moment the most recently reported of them reached 30 days."""
    n = bisect_right(times, now - DISPUTE_OPEN_SECONDS)
    return MonthOld(n, times[n - 1] + DISPUTE_OPEN_SECONDS if n else None)
