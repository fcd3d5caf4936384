"""The four lifecycles: a case, dispute, hazard or patrol starts and schedules what follows."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from ..events import Kind
from .agenda import Agenda
from .city import SimCity
from .ids import Subjects
from .models import (
    DISPUTE_CLOSED_WITHIN_DAYS,
    P_DIRECT_ESCALATION,
    P_HAZARD_LATE,
    P_HAZARD_ON_SPOT,
    P_HAZARD_ON_TIME,
    P_HAZARD_VERY_LATE,
    P_MEDIATION,
    P_RERECTIFY,
    P_VERIFY,
    P_VERIFY_FAILS,
    PATROL_FINDINGS_MEAN,
    DisputeModel,
    draw_community,
    draw_dispute,
    draw_found_by,
    draw_hazard,
    draw_incident,
    draw_location,
    draw_severity,
)
from .rhythms import DAY, HOUR, LocalTime


class Lifecycles:
    """Starts lifecycles at the times it is given and puts their events on the agenda.

    Each start draws its whole future at once (every later transition and its time):
    the agenda, not the lifecycle, keeps the order of publication.
    """

    def __init__(
        self,
        city: SimCity,
        local: LocalTime,
        rng: random.Random,
        subjects: Subjects,
        agenda: Agenda,
    ) -> None:
        self.districts = city.districts
        self.local = local
        self.rng = rng
        self.random = rng.random
        self.subjects = subjects
        self.agenda = agenda

    @property
    def starters(self) -> tuple[Callable[[int, int], None], ...]:
        """One start function per lifecycle, in the order of ``generator.LIFECYCLES``."""
        return (self.start_case, self.start_dispute, self.start_hazard, self.start_patrol)

    # -- helpers --------------------------------------------------------------------

    def emit(
        self,
        di: int,
        kind: Kind,
        subject: str,
        ts: int,
        data: dict[str, Any],
        not_before: float,
        suffix: str = "",
    ) -> float:
        """Schedule one valid event; return when it is published."""
        # Publishers sync within seconds, sometimes minutes (an app offline for a while):
        # an exponential delay, mean 20 s, at most 15 min. Inlined: this runs per event.
        at = ts - math.log(1.0 - self.random()) * 20.0
        if at > ts + 900.0:
            at = ts + 900.0
        if at < not_before + 1.0:
            at = not_before + 1.0
        self.agenda.schedule(at, di, kind, subject, ts, data, suffix)
        return at

    def office(self, ts: float) -> int:
        """Move a follow-up that falls at night into the next working morning, mostly."""
        h = self.local.hour(ts)
        if 8 <= h < 20 or self.rng.random() < 0.15:
            return int(ts)
        days = 1 if h >= 20 else 0
        return self.local.at_hour(ts, days, 8) + int(self.rng.random() * 2 * HOUR)

    def lognormal_hours(self, median_h: float, sigma: float) -> float:
        return min(self.rng.lognormvariate(math.log(median_h * HOUR), sigma), 120 * DAY)

    # -- cases ----------------------------------------------------------------------

    def start_case(self, di: int, t: int) -> None:
        rng = self.rng
        d = self.districts[di]
        m = draw_incident(rng)
        severity = draw_severity(m, rng)
        subject = self.subjects.new("cs", d.code)
        community = draw_community(d, rng)
        data = {
            "category": m.code,
            "severity": severity,
            "community": community,
            "location": draw_location(d.centre, rng),
        }
        at = self.emit(di, Kind.CASE_FILED, subject, t, data, t)
        if rng.random() < m.clear_p:
            tc = max(t + 60, int(t + self.lognormal_hours(m.clear_median_h, 1.2)))
            self.emit(
                di, Kind.CASE_CLEARED, subject, tc, {"category": m.code, "community": community}, at
            )

    # -- disputes -------------------------------------------------------------------

    def start_dispute(self, di: int, t: int) -> None:
        rng = self.rng
        d = self.districts[di]
        m = draw_dispute(rng)
        subject = self.subjects.new("dp", d.code)
        community = draw_community(d, rng)
        unit = d.dispute_units.get(m.code) or d.mediation[int(rng.random() * len(d.mediation))]
        mass = rng.random() < 0.03
        people = (
            int(10 + rng.expovariate(1 / 15)) if mass else 1 + int(rng.expovariate(1 / 1.5)) + 1
        )
        data = {
            "category": m.code,
            "responsible_unit": unit,
            "community": community,
            "people_involved": people,
        }
        at = self.emit(di, Kind.DISPUTE_REPORTED, subject, t, data, t)
        escalate_to = d.escalation[int(rng.random() * len(d.escalation))]
        closed_by = t + DISPUTE_CLOSED_WITHIN_DAYS * DAY
        if rng.random() < (0.3 if mass else P_DIRECT_ESCALATION):
            te = min(self.office(t + self.lognormal_hours(24, 0.8)), closed_by)
            self.emit(
                di,
                Kind.DISPUTE_ESCALATED,
                subject,
                max(te, t + 60),
                {"escalated_to": escalate_to},
                at,
            )
            return
        if rng.random() < P_MEDIATION:
            self._mediate(di, subject, m, unit, escalate_to, t, at)
            return
        # No mediation started: the street office hands it up within three weeks.
        te = min(self.office(t + (3 + 18 * rng.random()) * DAY), closed_by)
        self.emit(
            di, Kind.DISPUTE_ESCALATED, subject, max(te, t + 60), {"escalated_to": escalate_to}, at
        )

    def _mediate(
        self,
        di: int,
        subject: str,
        m: DisputeModel,
        unit: str,
        escalate_to: str,
        t: int,
        at: float,
    ) -> None:
        """Mediation starts within days; it resolves the dispute, or it is handed up, all
        within four weeks of the report."""
        closed_by = t + DISPUTE_CLOSED_WITHIN_DAYS * DAY
        tm = max(t + 60, min(self.office(t + self.lognormal_hours(4, 1.0)), t + 7 * DAY))
        at = self.emit(
            di, Kind.DISPUTE_MEDIATION_STARTED, subject, tm, {"responsible_unit": unit}, at
        )
        u = self.rng.random()
        if u < m.resolve_p:
            tr = max(tm + 60, min(self.office(tm + self.lognormal_hours(72, 1.0)), closed_by))
            self.emit(di, Kind.DISPUTE_RESOLVED, subject, tr, {"responsible_unit": unit}, at)
            return
        if u < m.resolve_p + m.escalate_p:
            te = self.office(tm + self.lognormal_hours(168, 0.8))
        else:  # mediation drags on and fails: handed up after two to three weeks
            te = self.office(tm + (14 + 7 * self.rng.random()) * DAY)
        te = max(tm + 60, min(te, closed_by))
        self.emit(di, Kind.DISPUTE_ESCALATED, subject, te, {"escalated_to": escalate_to}, at)

    # -- hazards --------------------------------------------------------------------

    def start_hazard(
        self, di: int, t: int, found_by: str | None = None, not_before: float = 0
    ) -> None:
        rng = self.rng
        d = self.districts[di]
        m = draw_hazard(rng)
        major = rng.random() < m.major_p
        deadline = self.local.at_hour(t, m.major_days if major else m.days, 18)
        if deadline <= t + HOUR:
            deadline += DAY
        if found_by is None:
            found_by = draw_found_by(rng)
        subject = self.subjects.new("hz", d.code)
        unit = d.hazard_units[m.code]
        data = {
            "category": m.code,
            "major": major,
            "deadline": self.local.format(deadline),
            "responsible_unit": unit,
            "community": draw_community(d, rng),
            "found_by": found_by,
        }
        at = self.emit(di, Kind.HAZARD_FOUND, subject, t, data, max(t, not_before))
        tr = self._rectification(t, deadline, major)
        if tr is None:
            return
        at = self.emit(di, Kind.HAZARD_RECTIFIED, subject, tr, {"responsible_unit": unit}, at)
        self._look_back(di, subject, unit, tr, at, major)

    def _rectification(self, t: int, deadline: int, major: bool = False) -> int | None:
        """When a hazard found at ``t`` is rectified: on the spot, in time, late, or never
        (a major one: on the spot or in time)."""
        rng = self.rng
        u = rng.random()
        if major:
            u *= P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME
        if u < P_HAZARD_ON_SPOT:
            tr = t + int(600 + rng.random() * 6600)
        elif u < P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME:
            tr = min(self.office(t + (deadline - t) * (0.1 + 0.85 * rng.random())), deadline - 60)
        elif u < P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME + P_HAZARD_LATE:
            tr = self.office(deadline + 60 + rng.expovariate(1 / (3 * DAY)))
        elif u < P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME + P_HAZARD_LATE + P_HAZARD_VERY_LATE:
            tr = self.office(deadline + (10 + 50 * rng.random()) * DAY)
        else:
            return None
        return max(tr, t + 60)

    def _look_back(
        self, di: int, subject: str, unit: str, tr: int, at: float, major: bool = False
    ) -> None:
        """The look-back visit (回头看) after a rectification, and a second round if it fails
        (always rectified again in time when the hazard is major)."""
        rng = self.rng
        if rng.random() >= P_VERIFY:
            return
        tv = max(tr + HOUR, self.office(tr + (1 + 9 * rng.random()) * DAY))
        if rng.random() >= P_VERIFY_FAILS:
            self.emit(di, Kind.HAZARD_VERIFIED, subject, tv, {"result": "confirmed"}, at)
            return
        new_deadline = self.local.at_hour(tv, 7, 18)
        verdict = {"result": "not_rectified", "new_deadline": self.local.format(new_deadline)}
        at = self.emit(di, Kind.HAZARD_VERIFIED, subject, tv, verdict, at)
        if rng.random() >= P_RERECTIFY and not major:
            return  # reopened, and it will go overdue at the new deadline
        tr2 = max(
            tv + 60, min(self.office(tv + (new_deadline - tv) * rng.random()), new_deadline - 60)
        )
        at = self.emit(
            di, Kind.HAZARD_RECTIFIED, subject, tr2, {"responsible_unit": unit}, at, "-2"
        )
        if rng.random() < P_VERIFY:
            tv2 = max(tr2 + HOUR, self.office(tr2 + (1 + 9 * rng.random()) * DAY))
            self.emit(di, Kind.HAZARD_VERIFIED, subject, tv2, {"result": "confirmed"}, at, "-2")

    # -- patrols --------------------------------------------------------------------

    def start_patrol(self, di: int, t: int) -> None:
        rng = self.rng
        d = self.districts[di]
        h = self.local.hour(t)
        night = h >= 20 or h < 8
        teams = d.night_teams if night else d.day_teams
        team = teams[int(rng.random() * len(teams))]
        duration = int((2 + 2 * rng.random() if night else 1.5 + 1.5 * rng.random()) * HOUR)
        end = t + duration
        subject = self.subjects.new("pr", d.code)
        findings = _poisson(PATROL_FINDINGS_MEAN, rng.random(), most=10)
        # Each hazard found on the way is reported when it is found.
        for _ in range(findings):
            self.start_hazard(di, t + int(duration * (0.05 + 0.9 * rng.random())), "patrol")
        te = end + int(rng.random() * 300)
        data = {
            "team": team,
            "started_at": self.local.format(t),
            "ended_at": self.local.format(end),
            "area": d.areas[int(rng.random() * len(d.areas))],
            "findings": findings,
        }
        # The completion follows the findings it counts.
        self.emit(di, Kind.PATROL_COMPLETED, subject, te, data, te)


def _poisson(mean: float, u: float, most: int) -> int:
    """The Poisson count whose cumulative probability first reaches ``u`` (at most ``most``)."""
    n = 0
    p = math.exp(-mean)
    acc = p
    while u > acc and n < most:
        n += 1
        p *= mean / n
        acc += p
    return n
