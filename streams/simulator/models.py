"""What happens in the city, how often, and how long it takes: the lifecycle models."""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from typing import NamedTuple

from .city import SimCity, SimDistrict
from .rhythms import DAY

# Starts per day per million inhabitants, at the natural scale. The seed district
# (about 1.6 M people) filed 1,538 cases in nine months, ~5.6 a day.
NATURAL_STARTS: dict[str, float] = {
    "case": 3.5,
    "dispute": 2.0,
    "hazard": 18.0,
    "patrol": 16.0,
}


class IncidentModel(NamedTuple):
    code: str
    weight: float
    clear_p: float  # share of cases ever cleared
    clear_median_h: float  # median hours from filing to clearance
    severity: tuple[float, float, float]  # minor, serious, major


INCIDENTS: tuple[IncidentModel, ...] = (
    IncidentModel("robbery", 3, 0.72, 72, (0.2, 0.6, 0.2)),
    IncidentModel("snatching", 4, 0.50, 96, (0.5, 0.45, 0.05)),
    IncidentModel("theft", 45, 0.26, 240, (0.8, 0.18, 0.02)),
    IncidentModel("fight", 15, 0.82, 10, (0.6, 0.35, 0.05)),
    IncidentModel("traffic_accident", 15, 0.80, 20, (0.6, 0.3, 0.1)),
    IncidentModel("fire", 4, 0.70, 48, (0.4, 0.4, 0.2)),
    IncidentModel("work_safety_accident", 3, 0.88, 120, (0.3, 0.4, 0.3)),
    IncidentModel("campus", 3, 0.80, 36, (0.6, 0.35, 0.05)),
    IncidentModel("other", 8, 0.45, 96, (0.7, 0.25, 0.05)),
)


class DisputeModel(NamedTuple):
    code: str
    weight: float
    resolve_p: float  # of the disputes in mediation
    escalate_p: float  # of the disputes in mediation


DISPUTES: tuple[DisputeModel, ...] = (
    DisputeModel("neighbourhood", 35, 0.92, 0.02),
    DisputeModel("unpaid_wages", 12, 0.85, 0.08),
    DisputeModel("demolition_compensation", 8, 0.70, 0.15),
    DisputeModel("environmental_pollution", 6, 0.75, 0.10),
    DisputeModel("social_security", 8, 0.85, 0.05),
    DisputeModel("enterprise_restructuring", 3, 0.70, 0.15),
    DisputeModel("rural_stability", 8, 0.80, 0.08),
    DisputeModel("school", 5, 0.90, 0.03),
    DisputeModel("other", 15, 0.85, 0.05),
)
P_MEDIATION = 0.95  # disputes that reach mediation (调处); the rest are handed up
P_DIRECT_ESCALATION = 0.02  # escalated without mediation (mass incidents mostly)
# The normal city closes every dispute within four weeks of its report: mediation resolves
# it, or it is handed up (一个问题,一个调处方案). One still open at 30 days is news: the
# alert, not the simulator's background.
DISPUTE_CLOSED_WITHIN_DAYS = 28


class HazardModel(NamedTuple):
    code: str
    weight: float
    days: int  # rectification deadline, days after it was found (限期整改)
    major_days: int  # deadline of a major hazard under listed supervision (挂牌督办)
    major_p: float


HAZARDS: tuple[HazardModel, ...] = (
    HazardModel("fire", 20, 3, 15, 0.03),
    HazardModel("road_traffic", 12, 7, 30, 0.03),
    HazardModel("hazardous_chemicals", 5, 7, 30, 0.15),
    HazardModel("construction", 15, 10, 45, 0.05),
    HazardModel("special_equipment", 7, 15, 30, 0.04),
    HazardModel("gas", 8, 3, 15, 0.05),
    HazardModel("mines_tailings", 2, 30, 90, 0.20),
    HazardModel("school", 5, 7, 30, 0.03),
    HazardModel("food_safety", 8, 3, 15, 0.02),
    HazardModel("road_collapse", 4, 2, 15, 0.05),
    HazardModel("dangerous_bridge", 2, 30, 90, 0.20),
    HazardModel("water_transport", 2, 7, 30, 0.08),
    HazardModel("fireworks", 3, 2, 7, 0.08),
    HazardModel("other", 7, 7, 30, 0.01),
)
# Outcomes of a hazard, in order: fixed on the spot (立查立改), before the deadline,
# after it, long after it, never within the simulation.
P_HAZARD_ON_SPOT = 0.10
P_HAZARD_ON_TIME = 0.72
P_HAZARD_LATE = 0.10
P_HAZARD_VERY_LATE = 0.03
# A major hazard (挂牌督办) of the normal city is rectified in time, on the spot or before
# its deadline, and again in time after a failed look-back visit: one past its deadline is
# news (the alert, and the demo's drill), not the simulator's background.
P_VERIFY = 0.60  # rectified hazards that get a look-back visit (回头看)
P_VERIFY_FAILS = 0.06  # look-back visits that find the rectification did not hold
P_RERECTIFY = 0.70  # failed ones rectified again before the new deadline (majors: all)
FOUND_BY = (("inspection", 0.45), ("grid_worker", 0.35), ("public_report", 0.20))
PATROL_FINDINGS_MEAN = 0.35

SEVERITIES = ("minor", "serious", "major")


def _expected_records_per_start() -> dict[str, float]:
    """Mean records a lifecycle of each kind emits; turns a rate into start rates."""
    w = sum(m.weight for m in INCIDENTS)
    case = 1 + sum(m.weight * m.clear_p for m in INCIDENTS) / w
    # Every dispute is reported and closed (resolved or escalated); most are mediated first.
    dispute = 2 + (1 - P_DIRECT_ESCALATION) * P_MEDIATION
    wh = sum(m.weight for m in HAZARDS)
    major = sum(m.weight * m.major_p for m in HAZARDS) / wh
    ordinary = P_HAZARD_ON_SPOT + P_HAZARD_ON_TIME + P_HAZARD_LATE + P_HAZARD_VERY_LATE
    rectified = (1 - major) * ordinary + major
    rerectify = (1 - major) * P_RERECTIFY + major
    verified = P_VERIFY * (1 + P_VERIFY_FAILS * rerectify * (1 + P_VERIFY))
    hazard = 1 + rectified * (1 + verified)
    patrol = 1 + PATROL_FINDINGS_MEAN * hazard
    return {"case": case, "dispute": dispute, "hazard": hazard, "patrol": patrol}


RECORDS_PER_START = _expected_records_per_start()


def natural_rate(city: SimCity) -> float:
    """Records per second the city produces at its natural scale (no bad records)."""
    weight = sum(d.weight for d in city.districts)
    per_day = sum(NATURAL_STARTS[k] * RECORDS_PER_START[k] for k in NATURAL_STARTS)
    return weight * per_day / DAY


def cumulative(weights: Sequence[float]) -> list[float]:
    """A table for drawing an index by weight: ``bisect(table, random())``."""
    total = float(sum(weights))
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc / total)
    out[-1] = 1.0 + 1e-12  # bisect on random() < 1 never falls off the end
    return out


INCIDENT_DRAW = cumulative([m.weight for m in INCIDENTS])
DISPUTE_DRAW = cumulative([m.weight for m in DISPUTES])
HAZARD_DRAW = cumulative([m.weight for m in HAZARDS])
FOUND_BY_DRAW = cumulative([w for _, w in FOUND_BY])


def draw_incident(rng: random.Random) -> IncidentModel:
    return INCIDENTS[bisect.bisect(INCIDENT_DRAW, rng.random())]


def draw_dispute(rng: random.Random) -> DisputeModel:
    return DISPUTES[bisect.bisect(DISPUTE_DRAW, rng.random())]


def draw_hazard(rng: random.Random) -> HazardModel:
    return HAZARDS[bisect.bisect(HAZARD_DRAW, rng.random())]


def draw_found_by(rng: random.Random) -> str:
    return FOUND_BY[bisect.bisect(FOUND_BY_DRAW, rng.random())][0]


def draw_severity(m: IncidentModel, rng: random.Random) -> str:
    u = rng.random()
    return SEVERITIES[0 if u < m.severity[0] else 1 if u < m.severity[0] + m.severity[1] else 2]


def draw_location(centre: tuple[float, float], rng: random.Random) -> dict[str, float]:
    """Where a case happened: scattered a few kilometres around the district's centre."""
    return {
        "lat": round(centre[0] + rng.gauss(0, 0.02), 3),
        "lon": round(centre[1] + rng.gauss(0, 0.025), 3),
    }


def draw_community(d: SimDistrict, rng: random.Random) -> str:
    return d.communities[int(rng.random() * len(d.communities))]
