"""The overdue drill: hazards whose deadlines pass minutes after they are found, never fixed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from .city import SimCity
from .config import SimConfig
from .ids import id_tag
from .rhythms import LocalTime

CATEGORIES = ("fire", "gas", "hazardous_chemicals", "construction")


class DrillHazard(NamedTuple):
    n: int  # 0, 1, ... in the order they are found
    district: int  # index into the city's districts
    subject: str
    found: int  # POSIX seconds
    deadline: int


def drill_hazards(city: SimCity, config: SimConfig) -> list[DrillHazard]:
    """The drill's hazards: one every 20 s from ``drill_at`` (default: the start), the most
    populous districts first, each deadline a minute further out than the one before."""
    if not config.overdue_drill:
        return []
    t0 = int((config.drill_at or config.start).timestamp())
    tag = id_tag(config.tag)
    order = sorted(range(len(city.districts)), key=lambda i: -city.districts[i].weight)
    out = []
    for n in range(config.overdue_drill):
        di = order[n % len(order)]
        found = t0 + 20 * n
        subject = f"hz-{city.districts[di].code}-{tag}drill{n + 1:03d}"
        out.append(DrillHazard(n, di, subject, found, found + 120 + 60 * n))
    return out


def drill_events(
    city: SimCity, config: SimConfig, local: LocalTime
) -> Iterator[tuple[DrillHazard, dict[str, Any]]]:
    """Each drill hazard with the data of its ``hazard.found`` event."""
    for h in drill_hazards(city, config):
        d = city.districts[h.district]
        category = CATEGORIES[h.n % len(CATEGORIES)]
        yield (
            h,
            {
                "category": category,
                "major": h.n % 3 == 0,
                "deadline": local.format(h.deadline),
                "responsible_unit": d.hazard_units[category],
                "community": d.communities[h.n % len(d.communities)],
                "found_by": "inspection",
            },
        )


def drill_deadlines(city: SimCity, config: SimConfig) -> list[tuple[str, str, float]]:
    """(district, subject, deadline) of the overdue drill's hazards, as scheduled."""
    return [
        (city.districts[h.district].code, h.subject, float(h.deadline))
        for h in drill_hazards(city, config)
    ]
