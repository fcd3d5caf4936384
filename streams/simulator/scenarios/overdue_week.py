"""A week of hazards in two districts; a known set goes overdue at known times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...events import Kind
from ..city import SimCity
from ..models import HAZARDS
from ..rhythms import DAY, HOUR
from .builder import Builder, Scenario, invariant

NAME = "overdue-week"
DISTRICTS = ("guancheng", "huiji")
CATEGORIES = [m.code for m in HAZARDS]
FOUND_BY = ("patrol", "inspection", "grid_worker")
# Seconds after the first event at which the expected overdue counts are given.
CHECKPOINTS = (
    DAY,
    3 * DAY,
    5 * DAY,
    6 * DAY + 12 * HOUR,
    7 * DAY,
    7 * DAY + 180,
    7 * DAY + 300,
    7 * DAY + 540,
    7 * DAY + 780,
    7 * DAY + 960,
    7 * DAY + 1260,
    7 * DAY + 3600,
)


@dataclass
class Hazard:
    subject: str
    district: str
    group: str
    major: bool
    found: int
    deadline: int  # the current one: a failed look-back visit sets a new one
    first_deadline: int
    unit: str
    rectified: int | None = None
    reopened: int | None = None

    def overdue_at(self, t: int) -> bool:
        if self.found > t:
            return False
        if self.reopened is not None and self.reopened <= t:
            return self.deadline < t  # the look-back visit's new deadline
        if self.rectified is not None and self.rectified <= t:
            return False
        return self.first_deadline < t


def _found_by(u: float) -> str:
    return FOUND_BY[int(u * 3)]


class _Week:
    """The week's plan: which hazards each group holds, and when each is found and fixed."""

    def __init__(self, city: SimCity) -> None:
        self.b = Builder(NAME, city, 20250303, DISTRICTS)
        self.t0 = int(datetime(2025, 3, 3, 8, 0, tzinfo=city.timezone).timestamp())
        self.t_end = self.t0 + 7 * DAY
        self.hazards: list[Hazard] = []
        self.counter = dict.fromkeys(DISTRICTS, 0)

    def found(
        self, district: str, group: str, t: int, deadline: int, major: bool = False
    ) -> Hazard:
        self.counter[district] += 1
        subject = f"hz-{district}-wk-{self.counter[district]:03d}"
        category = CATEGORIES[int(self.b.rng.random() * len(CATEGORIES))]
        unit = self.b.hazard_found(
            district,
            subject,
            t,
            category,
            major=major,
            deadline=deadline,
            found_by=_found_by,
        )
        h = Hazard(subject, district, group, major, t, deadline, deadline, unit)
        self.hazards.append(h)
        return h

    def rectify(self, h: Hazard, t: int) -> None:
        h.rectified = t
        self.b.hazard_rectified(h.district, h.subject, t, h.unit)

    def day_time(self, day: int) -> int:
        return self.b.office_time(self.t0 + day * DAY - 8 * HOUR)

    def plant(self, k: int, district: str) -> None:
        """Groups A, B, C, E and F of one district (``k``: its place in ``DISTRICTS``)."""
        rng, local, t_end = self.b.rng, self.b.local, self.t_end
        for j in range(30):  # A: rectified before the deadline, never overdue
            t = self.day_time(int(rng.random() * 5))
            if k == 0 and j == 0:
                t = self.t0  # the first event opens the week
            h = self.found(district, "on_time", t, local.at_hour(t, 2 + int(rng.random() * 5), 18))
            fix = t + int((h.deadline - t) * (0.1 + 0.8 * rng.random()))
            self.rectify(h, min(fix, t_end - HOUR))
        for _ in range(5):  # B: overdue for a while, rectified late within the week
            t = self.day_time(int(rng.random() * 3))
            h = self.found(district, "late", t, local.at_hour(t, 1 + int(rng.random() * 2), 18))
            fix = h.deadline + HOUR + int(rng.random() * (t_end - h.deadline - 2 * HOUR))
            self.rectify(h, fix)
        for j in range(4):  # C: overdue from the deadline on, still overdue at the end
            t = self.day_time(int(rng.random() * 3))
            self.found(district, "overdue_open", t, local.at_hour(t, 1 + j % 3, 18), major=j == 0)
        # E: rectified in time, then the look-back visit (回头看) finds it not done and sets
        # a new deadline just after the end of the week.
        t = self.day_time(0)
        h = self.found(district, "reopened", t, local.at_hour(t, 3, 18))
        self.rectify(h, local.at_hour(t, 2, 10))
        h.reopened = self.day_time(6)
        h.deadline = t_end + (15 + 5 * k) * 60
        verdict = {"result": "not_rectified", "new_deadline": local.format(h.deadline)}
        self.b.add(district, Kind.HAZARD_VERIFIED, h.subject, h.reopened, verdict)
        for _ in range(10):  # F: open, deadline far ahead
            t = self.day_time(int(rng.random() * 7))
            self.found(district, "open_far", t, local.at_hour(t, 30 + int(rng.random() * 30), 18))

    def plant_drill(self) -> None:
        """D: found on the last day, never rectified, deadlines 2, 4, ... 12 minutes after
        the end of the week, alternating between the districts; the first of each is major."""
        t_end = self.t_end
        for drill in range(1, 7):
            district = DISTRICTS[(drill - 1) % 2]
            t = t_end - (7 - drill) * 20 * 60 if drill < 6 else t_end
            self.found(
                district, "goes_overdue_after_replay", t, t_end + drill * 120, major=drill in (1, 4)
            )


def build(city: SimCity) -> Scenario:
    week = _Week(city)
    for k, district in enumerate(DISTRICTS):
        week.plant(k, district)
    week.plant_drill()
    b, t0, t_end = week.b, week.t0, week.t_end
    first, last = min(r[0] for r in b.rows), max(r[0] for r in b.rows)
    invariant(first == t0 and last == t_end, "the week runs from its first to its last event")
    groups: dict[str, int] = {}
    for h in week.hazards:
        groups[h.group] = groups.get(h.group, 0) + 1
    return b.finish(
        {
            "first_event": b.local.format(t0),
            "last_event": b.local.format(t_end),
            "definition": "overdue at t: found by t, not rectified by t (or reopened by a "
            "not_rectified look-back visit by t), and its current deadline before t",
            "groups": dict(sorted(groups.items())),
            "overdue_hazards": _overdue_hazards(week),
            "never_overdue": sorted(
                h.subject for h in week.hazards if h.group in ("on_time", "open_far")
            ),
            "checkpoints": _checkpoints(week),
        }
    )


def _overdue_hazards(week: _Week) -> list[dict[str, Any]]:
    """Every hazard that goes overdue: from when, and until when if it is then rectified."""
    listed = []
    for h in week.hazards:
        if h.group in ("on_time", "open_far"):
            continue
        until = h.rectified if h.group == "late" else None
        listed.append(
            {
                "subject": h.subject,
                "district": h.district,
                "group": h.group,
                "major": h.major,
                "deadline": week.b.local.format(h.deadline),
                "overdue_from_offset_seconds": h.deadline - week.t0,
                "overdue_until_offset_seconds": until - week.t0 if until is not None else None,
            }
        )
    listed.sort(key=lambda x: (x["overdue_from_offset_seconds"], x["subject"]))
    return listed


def _checkpoints(week: _Week) -> list[dict[str, Any]]:
    """Overdue hazards per district at each checkpoint."""
    checkpoints = []
    for offset in CHECKPOINTS:
        t = week.t0 + offset
        row: dict[str, Any] = {"offset_seconds": offset, "time": week.b.local.format(t)}
        for district in DISTRICTS:
            mine = [h for h in week.hazards if h.district == district and h.overdue_at(t)]
            row[district] = {
                "overdue": len(mine),
                "overdue_major": sum(1 for h in mine if h.major),
            }
        checkpoints.append(row)
    return checkpoints
