"""数字城管, one district, April to June 2025: hazards found and not rectified, per month."""

from __future__ import annotations

import bisect
from typing import Any

from ..city import SimCity
from ..models import cumulative
from ..rhythms import DAY, HOUR
from .builder import Builder, Scenario, invariant, percent

NAME = "city-management-2025q2"
DISTRICT = "jinshui"
# month: (found, not rectified by the end, rectified in the same month, in the next, in
# the one after). Rectified by the end = found - not rectified.
PLAN = {
    4: (465, 25, 370, 60, 10),
    5: (1325, 336, 860, 129, 0),
    6: (2084, 248, 1836, 0, 0),
}
QUOTED = {4: 94, 5: 73, 6: 82}  # the rate the speech gave, in percent
CATEGORIES = (
    ("other", 40),
    ("construction", 20),
    ("fire", 15),
    ("road_traffic", 10),
    ("road_collapse", 10),
    ("gas", 5),
)
CATEGORY_DRAW = cumulative([w for _, w in CATEGORIES])


def build(city: SimCity) -> Scenario:
    b = Builder(NAME, city, 20250401, (DISTRICT,))
    local, rng = b.local, b.rng
    month_start = {m: b.month_start(2025, m) for m in (4, 5, 6, 7)}
    end = month_start[7]
    found_month: dict[str, int] = {}
    rectified_at: dict[str, int] = {}
    deadlines: dict[str, int] = {}
    n = 0
    for month, (found, not_rectified, same, nxt, after) in PLAN.items():
        invariant(found - not_rectified == same + nxt + after, f"month {month} adds up")
        lo, hi = month_start[month], month_start[month + 1]
        days = (hi - lo) // DAY
        subjects = []
        for _ in range(found):
            n += 1
            subject = f"hz-{DISTRICT}-2025q2-{n:05d}"
            t = b.office_time(lo + int(rng.random() * days) * DAY)
            category = CATEGORIES[bisect.bisect(CATEGORY_DRAW, rng.random())][0]
            deadline = local.at_hour(t, (3, 5, 7, 10)[int(rng.random() * 4)], 18)
            unit = b.hazard_found(
                DISTRICT,
                subject,
                t,
                category,
                major=False,
                deadline=deadline,
                found_by=_found_by,
            )
            found_month[subject] = month
            deadlines[subject] = deadline
            subjects.append((subject, t, unit))
        # Same-month rectifications need time left in the month.
        early = [s for s in subjects if s[1] < hi - 2 * DAY]
        same_month = rng.sample(early, same)
        taken = {s[0] for s in same_month}
        rest = [s for s in subjects if s[0] not in taken]
        later = rng.sample(rest, nxt + after)
        for subject, t, unit in same_month:
            tr = t + 600 + int(min(rng.expovariate(1 / (2 * DAY)), hi - t - HOUR - 600))
            rectified_at[subject] = tr
            b.hazard_rectified(DISTRICT, subject, tr, unit)
        for i, (subject, _t, unit) in enumerate(later):
            target = month + 1 if i < nxt else month + 2
            tr = b.office_time(month_start[target] + int(rng.random() * 25) * DAY)
            rectified_at[subject] = tr
            b.hazard_rectified(DISTRICT, subject, tr, unit)
    open_at_end = [s for s in found_month if s not in rectified_at]
    return b.finish(
        {
            "end": local.format(end),
            "definition": "cohort: of the hazards FOUND in a month, how many have a "
            "watchfloor.hazard.rectified.v1 event by the end of the scenario",
            "months": _months(b, month_start, found_month, rectified_at),
            "open_at_end": len(open_at_end),
            "overdue_at_end": sum(1 for s in open_at_end if deadlines[s] < end),
        }
    )


def _found_by(u: float) -> str:
    return "grid_worker" if u < 0.8 else "public_report"


def _months(
    b: Builder,
    month_start: dict[int, int],
    found_month: dict[str, int],
    rectified_at: dict[str, int],
) -> list[dict[str, Any]]:
    """Each month's cohort: found, rectified by the end of each later month, and the rate."""
    months = []
    for month, (found, not_rectified, *_rest) in PLAN.items():
        rectified = found - not_rectified
        as_of = {}
        for end_month in (4, 5, 6):
            if end_month < month:
                continue
            cut = month_start[end_month + 1]
            as_of[f"end of 2025-{end_month:02d}"] = sum(
                1 for s, m in found_month.items() if m == month and rectified_at.get(s, cut) < cut
            )
        months.append(
            {
                "month": f"2025-{month:02d}",
                "from": b.local.format(month_start[month]),
                "to": b.local.format(month_start[month + 1]),
                "found": found,
                "rectified": rectified,
                "not_rectified": not_rectified,
                "rectification_rate_percent": percent(rectified, found),
                "rectification_rate": f"{rectified}/{found}",
                "rate_quoted_in_speech_percent": QUOTED[month],
                "rectified_by": as_of,
                "rectified_events_in_month": sum(
                    1
                    for t in rectified_at.values()
                    if month_start[month] <= t < month_start[month + 1]
                ),
            }
        )
    return months
