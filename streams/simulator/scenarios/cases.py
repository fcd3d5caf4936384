"""1,538 criminal cases filed from January to September 2025, 778 cleared: 50.6 %."""

from __future__ import annotations

import bisect
import math
from typing import Any

from ...events import Kind
from ..city import SimCity
from ..models import IncidentModel, cumulative, draw_incident, draw_location, draw_severity
from ..rhythms import DAY, HOUR, RHYTHM_INCIDENTS
from .builder import Builder, Scenario, percent

NAME = "cases-2025-jan-sep"
DISTRICT = "erqi"
FILED, CLEARED = 1538, 778
HOUR_DRAW = cumulative(RHYTHM_INCIDENTS)


def build(city: SimCity) -> Scenario:
    b = Builder(NAME, city, 20250930, (DISTRICT,))
    local, rng = b.local, b.rng
    d = city.district(DISTRICT)
    start, end = b.month_start(2025, 1), b.month_start(2025, 10)
    days = (end - start) // DAY
    cases: list[tuple[str, int, IncidentModel, str]] = []
    for n in range(1, FILED + 1):
        m = draw_incident(rng)
        hour = bisect.bisect(HOUR_DRAW, rng.random())
        t = start + int(rng.random() * days) * DAY + hour * HOUR + int(rng.random() * HOUR)
        subject = f"cs-{DISTRICT}-2025-{n:05d}"
        severity = draw_severity(m, rng)
        community = b.community(d)
        data = {
            "category": m.code,
            "severity": severity,
            "community": community,
            "location": draw_location(d.centre, rng),
        }
        b.add(DISTRICT, Kind.CASE_FILED, subject, t, data)
        cases.append((subject, t, m, community))
    # Which cases are cleared: weighted by their category's clearance odds, exactly 778.
    pool = list(cases)
    cleared: dict[str, int] = {}
    while len(cleared) < CLEARED:
        weights = [c[2].clear_p for c in pool]
        pick = rng.choices(range(len(pool)), weights=weights)[0]
        subject, t, m, community = pool.pop(pick)
        delay = rng.lognormvariate(math.log(m.clear_median_h * HOUR), 1.2)
        if t + delay >= end - HOUR:
            delay = (end - HOUR - t) * (0.2 + 0.7 * rng.random())
        tc = t + max(600, int(delay))
        cleared[subject] = tc
        data = {"category": m.code, "community": community}
        b.add(DISTRICT, Kind.CASE_CLEARED, subject, tc, data)
    by_category = _by_category(cases, cleared)
    return b.finish(
        {
            "from": local.format(start),
            "to": local.format(end),
            "filed": FILED,
            "cleared": CLEARED,
            "clearance_rate_percent": percent(CLEARED, FILED),
            "clearance_rate": f"{CLEARED}/{FILED}",
            "open_at_end": FILED - CLEARED,
            "months": _months(b, cases, cleared),
            "by_category": by_category,
            "two_robberies_one_theft": {
                k: sum(by_category.get(c, {}).get(k, 0) for c in ("robbery", "snatching", "theft"))
                for k in ("filed", "cleared")
            },
        }
    )


def _months(
    b: Builder, cases: list[tuple[str, int, IncidentModel, str]], cleared: dict[str, int]
) -> list[dict[str, Any]]:
    months = []
    for month in range(1, 10):
        lo, hi = b.month_start(2025, month), b.month_start(2025, month + 1)
        months.append(
            {
                "month": f"2025-{month:02d}",
                "filed": sum(1 for c in cases if lo <= c[1] < hi),
                "cleared": sum(1 for t in cleared.values() if lo <= t < hi),
            }
        )
    return months


def _by_category(
    cases: list[tuple[str, int, IncidentModel, str]], cleared: dict[str, int]
) -> dict[str, dict[str, int]]:
    by_category: dict[str, dict[str, int]] = {}
    for subject, _t, m, _c in cases:
        row = by_category.setdefault(m.code, {"filed": 0, "cleared": 0})
        row["filed"] += 1
        row["cleared"] += subject in cleared
    return dict(sorted(by_category.items()))
