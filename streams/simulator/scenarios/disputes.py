"""42 destabilising disputes found in 2025; 35 resolved (83.3 %), 3 escalated, 4 open."""

from __future__ import annotations

from ...events import Kind
from ..city import SimCity, SimDistrict
from ..rhythms import DAY
from .builder import Builder, Scenario, invariant, percent

NAME = "disputes-2025"
DISTRICT = "zhongyuan"
COUNTS = {
    "enterprise_restructuring": 5,
    "social_security": 6,
    "rural_stability": 8,
    "demolition_compensation": 9,
    "environmental_pollution": 6,
    "unpaid_wages": 8,
}
OUTCOMES = {"resolved": 35, "escalated": 3, "open": 4}


def build(city: SimCity) -> Scenario:
    b = Builder(NAME, city, 20251201, (DISTRICT,))
    local, rng = b.local, b.rng
    d = city.district(DISTRICT)
    outcomes = [o for o, k in OUTCOMES.items() for _ in range(k)]
    rng.shuffle(outcomes)
    categories = [c for c, k in COUNTS.items() for _ in range(k)]
    rng.shuffle(categories)
    start, end = b.month_start(2025, 1), b.month_start(2025, 12)
    last_report = b.month_start(2025, 11) - 30 * DAY
    rows = []
    for n, (category, outcome) in enumerate(zip(categories, outcomes, strict=True), 1):
        subject = f"dp-{DISTRICT}-2025-{n:03d}"
        t = b.office_time(start + int(rng.random() * ((last_report - start) // DAY)) * DAY)
        people = _dispute(b, d, n, subject, t, category, outcome, end)
        rows.append((subject, category, outcome, people))
    return b.finish(
        {
            "from": local.format(start),
            "to": local.format(end),
            "reported": len(rows),
            "mediation_started": len(rows),
            "resolved": outcomes.count("resolved"),
            "escalated": outcomes.count("escalated"),
            "open_at_end": outcomes.count("open"),
            "resolution_rate_percent": percent(outcomes.count("resolved"), len(rows)),
            "resolution_rate": f"{outcomes.count('resolved')}/{len(rows)}",
            "mass_disputes_10_or_more_people": sum(1 for r in rows if r[3] >= 10),
            "by_category": _by_category(rows),
        }
    )


def _dispute(
    b: Builder,
    d: SimDistrict,
    n: int,
    subject: str,
    t: int,
    category: str,
    outcome: str,
    end: int,
) -> int:
    """Add one dispute's events, reported at ``t``; return how many people it involves."""
    rng, local = b.rng, b.local
    unit = d.dispute_units[category]
    people = int(10 + rng.random() * 40) if rng.random() < 0.3 else int(3 + rng.random() * 6)
    data = {
        "category": category,
        "responsible_unit": unit,
        "community": b.community(d),
        "people_involved": people,
    }
    b.add(DISTRICT, Kind.DISPUTE_REPORTED, subject, t, data)
    # Mediation first (调处), within a few days, by the one responsible department.
    tm = b.office_time(local.midnight(t) + (1 + int(rng.random() * 3)) * DAY)
    b.add(DISTRICT, Kind.DISPUTE_MEDIATION_STARTED, subject, tm, {"responsible_unit": unit})
    closed = None
    if outcome == "resolved":
        closed = b.office_time(local.midnight(tm) + (3 + int(rng.random() * 30)) * DAY)
        b.add(DISTRICT, Kind.DISPUTE_RESOLVED, subject, closed, {"responsible_unit": unit})
    elif outcome == "escalated":
        closed = b.office_time(local.midnight(tm) + (10 + int(rng.random() * 20)) * DAY)
        data = {"escalated_to": d.escalation[n % len(d.escalation)]}
        b.add(DISTRICT, Kind.DISPUTE_ESCALATED, subject, closed, data)
    invariant(closed is None or closed < end, f"{subject} closes within the year")
    return people


def _by_category(rows: list[tuple[str, str, str, int]]) -> dict[str, dict[str, int]]:
    by_category: dict[str, dict[str, int]] = {}
    for _s, category, outcome, _p in rows:
        row = by_category.setdefault(
            category, {"reported": 0, "resolved": 0, "escalated": 0, "open": 0}
        )
        row["reported"] += 1
        row[outcome] += 1
    return dict(sorted(by_category.items()))
