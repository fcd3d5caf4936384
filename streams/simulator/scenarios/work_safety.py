"""Work safety, 2024 to June 2025: the four indicators down, and the 103-death control target."""

from __future__ import annotations

import bisect
import math
from typing import Any

from ...events import Kind
from ..city import SimCity
from ..models import cumulative
from ..rhythms import DAY, HOUR
from .builder import Builder, Scenario, invariant

NAME = "work-safety-2025h1"
# The city's zones and counties, where most work-safety accidents happen; the five urban
# districts hold the other scenarios (their accidents are not in this file).
DISTRICTS = ("gaoxin", "jingkai", "xinzheng", "qingshan", "baihe")
# "今年,*市政府下达我市的安全生产事故死亡人数控制指标为103人,比上年减少了21人": the city's
# 2025 target, and the share at which a district is warned (seeds/reference/city.json).
CITY_TARGET, CITY_LAST_YEAR, ALERT_SHARE = 103, 124, 0.8
# Per district: the 2025 death target and last year's deaths (the reference data's), and
# the deaths of the three half-years: H1 2024, H2 2024, H1 2025. Last year's deaths are
# H1 + H2 2024. The city's deaths fall from H1 2024 to H1 2025 (上半年...四项指标全面下降);
# baihe's rise, and take it past 80 % of its target in June.
PLAN: dict[str, tuple[int, int, tuple[int, int, int]]] = {
    "gaoxin": (5, 6, (3, 3, 1)),
    "jingkai": (6, 7, (4, 3, 2)),
    "xinzheng": (16, 19, (10, 9, 6)),
    "qingshan": (15, 18, (9, 9, 5)),
    "baihe": (13, 16, (9, 7, 11)),
}
# Accidents per death, about: most accidents kill no one (a serious injury, a loss).
ACCIDENTS_PER_DEATH = 1.4
CATEGORIES = (
    ("construction", 25),
    ("road_traffic", 20),
    ("industrial", 18),
    ("mining", 8),
    ("hazardous_chemicals", 6),
    ("special_equipment", 6),
    ("fire", 6),
    ("water_transport", 4),
    ("fireworks", 3),
    ("other", 4),
)
CATEGORY_DRAW = cumulative([w for _, w in CATEGORIES])
# The district whose eleventh death of 2025 (80 % of 13) comes with a revision in June.
CROSSING_DISTRICT = "baihe"


def build(city: SimCity) -> Scenario:
    b = Builder(NAME, city, 20250630, DISTRICTS)
    local = b.local
    halves = (
        (b.month_start(2024, 1), b.month_start(2024, 7)),
        (b.month_start(2024, 7), b.month_start(2025, 1)),
        (b.month_start(2025, 1), b.month_start(2025, 7)),
    )
    start, end = halves[0][0], halves[2][1]
    accidents: list[dict[str, Any]] = []
    for district, (_, _, deaths) in PLAN.items():
        for half, (lo, hi) in enumerate(halves):
            crossing = district == CROSSING_DISTRICT and half == 2
            accidents.extend(_half_year(b, district, lo, hi, deaths[half], crossing))
    n_revised = 0
    for n, acc in enumerate(sorted(accidents, key=lambda a: (a["time"], a["district"])), 1):
        acc["subject"] = f"ac-{acc['district']}-{n:04d}"
        final = acc["final"]
        first = acc.get("first", final)
        community = b.community(city.district(acc["district"]))
        data = {"category": acc["category"], **first, "community": community}
        b.add(acc["district"], Kind.ACCIDENT_REPORTED, acc["subject"], acc["time"], data, "-1")
        if "revised" in acc:
            n_revised += 1
            b.add(acc["district"], Kind.ACCIDENT_REPORTED, acc["subject"], acc["revised"],
                  {**data, **final}, "-2")  # fmt: skip
    figures = _figures(b, accidents, halves)
    return b.finish(
        {
            "from": local.format(start),
            "to": local.format(end),
            "period": {"from": local.format(halves[2][0]), "to": local.format(end)},
            "previous_period": {
                "from": local.format(halves[0][0]),
                "to": local.format(halves[0][1]),
            },
            "accidents": len(accidents),
            "revised": n_revised,
            **figures,
        }
    )


def _half_year(
    b: Builder, district: str, lo: int, hi: int, deaths: int, crossing: bool
) -> list[dict[str, Any]]:
    """Accidents of one district in one half-year, together killing ``deaths`` people.

    With ``crossing``, the last death comes from an accident 20 days before the end,
    first reported with two seriously injured and revised eight days later when one of
    them died; every other accident and revision is over before it, so that revision is
    the report that takes the district's deaths of the year to its alert share.
    """
    rng = b.rng
    own = deaths - 1 if crossing else deaths
    until = hi - 30 * DAY if crossing else hi
    n = max(1, round(own * ACCIDENTS_PER_DEATH))
    # Spread the deaths over the accidents, at most 3 each (a 较大事故 has 3 or more).
    per = [0] * n
    for _ in range(own):
        candidates = [i for i in range(n) if per[i] < 3]
        per[candidates[int(rng.random() * len(candidates))]] += 1
    days = (until - lo) // DAY
    out = []
    for k in range(n):
        t = lo + int(rng.random() * days) * DAY + int(rng.random() * 24 * HOUR)
        category = CATEGORIES[bisect.bisect(CATEGORY_DRAW, rng.random())][0]
        injuries = int(rng.random() * 4)
        loss = 1000 * round(math.exp(11 + 1.5 * rng.random() + per[k] * 0.6) / 1000)
        acc: dict[str, Any] = {
            "district": district,
            "time": t,
            "category": category,
            "final": {"deaths": per[k], "serious_injuries": injuries, "direct_loss_yuan": loss},
        }
        # One accident in four with a death was first reported with that person among the
        # seriously injured; the figures were revised one to ten days later, in the half.
        revised = t + int((1 + 9 * rng.random()) * DAY)
        if per[k] and rng.random() < 0.25 and revised < until:
            acc["first"] = _before_revision(acc["final"])
            acc["revised"] = revised
        out.append(acc)
    if crossing:
        t = b.local.at_hour(hi - 20 * DAY, 0, 10)
        final = {"deaths": 1, "serious_injuries": 1, "direct_loss_yuan": 1_860_000}
        out.append(
            {
                "district": district,
                "time": t,
                "category": "construction",
                "final": final,
                "first": _before_revision(final),
                "revised": t + 8 * DAY,
                "crossing": True,
            }
        )
    invariant(sum(a["final"]["deaths"] for a in out) == deaths, f"{district}'s deaths add up")
    return out


def _before_revision(final: dict[str, int]) -> dict[str, int]:
    """The first report of an accident whose revision added one death: that person was
    counted among the seriously injured, and the loss was assessed lower."""
    return {
        "deaths": final["deaths"] - 1,
        "serious_injuries": final["serious_injuries"] + 1,
        "direct_loss_yuan": round(final["direct_loss_yuan"] * 0.8),
    }


INDICATORS = ("accidents", "deaths", "serious_injuries", "direct_loss_yuan")


def _sums(accidents: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "accidents": len(accidents),
        "deaths": sum(a["final"]["deaths"] for a in accidents),
        "serious_injuries": sum(a["final"]["serious_injuries"] for a in accidents),
        "direct_loss_yuan": sum(a["final"]["direct_loss_yuan"] for a in accidents),
    }


def _figures(
    b: Builder, accidents: list[dict[str, Any]], halves: tuple[tuple[int, int], ...]
) -> dict[str, Any]:
    """The expected figures: H1 2025 against H1 2024, 2024 whole, and the targets."""
    (h1_24, _), (_, end_24), (h1_25, end) = halves[0], halves[1], halves[2]

    def within(lo: int, hi: int, district: str | None = None) -> list[dict[str, Any]]:
        return [
            a
            for a in accidents
            if lo <= a["time"] < hi and (district is None or a["district"] == district)
        ]

    districts: dict[str, Any] = {}
    for district, (target, last_year, _) in PLAN.items():
        year_2024 = _sums(within(h1_24, end_24, district))
        invariant(year_2024["deaths"] == last_year, f"{district}'s 2024 deaths are its figure")
        current = _sums(within(h1_25, end, district))
        threshold = max(1, math.ceil(ALERT_SHARE * target - 1e-9))
        reached_at = None
        # Forward through the reports: each accident's deaths from its latest report.
        known = 0
        for a in sorted(within(h1_25, end, district), key=lambda a: a.get("revised", a["time"])):
            known += a["final"]["deaths"]
            if known >= threshold:
                reached_at = a.get("revised", a["time"])
                invariant(a.get("crossing", False), f"{district} crosses with the planned report")
                break
        districts[district] = {
            "current": current,
            "previous": _sums(within(h1_24, halves[0][1], district)),
            "year_2024": year_2024,
            "target": target,
            "last_year": last_year,
            "used": current["deaths"],
            "alert_threshold": threshold,
            "alert_share_reached_at": None if reached_at is None else b.local.format(reached_at),
        }
    city_current = _sums(within(h1_25, end))
    city_previous = _sums(within(h1_24, halves[0][1]))
    invariant(
        all(city_current[k] < city_previous[k] for k in INDICATORS),
        "the city's four indicators are all down on the year before",
    )
    invariant(
        sum(t for t, _, _ in PLAN.values()) <= CITY_TARGET, "the districts' targets fit the city's"
    )
    return {
        "city": {
            "target": CITY_TARGET,
            "last_year": CITY_LAST_YEAR,
            "change_from_last_year": CITY_TARGET - CITY_LAST_YEAR,
            "alert_share": ALERT_SHARE,
            "current": city_current,
            "previous": city_previous,
            "year_2024": _sums(within(h1_24, end_24)),
            "used": city_current["deaths"],
        },
        "by_district": districts,
    }
