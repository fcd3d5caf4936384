"""The city as the simulator sees it: districts with their people, teams, units and areas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import ReferenceDataError, SettingsError
from ..reference import Reference

# Conventional unit codes (``<district>-<suffix>``) for districts whose reference entry
# lists no units, as synthetic cities do. Kept in step with seeds/reference/city.json.
DEFAULT_HAZARD_UNITS: dict[str, str] = {
    "fire": "fire-brigade",
    "road_traffic": "traffic-police",
    "hazardous_chemicals": "work-safety-bureau",
    "construction": "housing-bureau",
    "special_equipment": "market-supervision",
    "gas": "urban-management",
    "mines_tailings": "work-safety-bureau",
    "school": "education-bureau",
    "food_safety": "market-supervision",
    "road_collapse": "urban-management",
    "dangerous_bridge": "transport-bureau",
    "water_transport": "transport-bureau",
    "fireworks": "work-safety-bureau",
    "other": "urban-management",
}
DEFAULT_DISPUTE_UNITS: dict[str, str] = {
    "enterprise_restructuring": "hrss-bureau",
    "social_security": "hrss-bureau",
    "rural_stability": "agriculture-office",
    "demolition_compensation": "housing-bureau",
    "environmental_pollution": "ecology-bureau",
    "unpaid_wages": "hrss-bureau",
    "school": "education-bureau",
}
DEFAULT_ESCALATION_UNITS: tuple[str, ...] = ("stability-office", "petition-office", "people-court")
DEFAULT_CENTRE = (34.75, 113.65)


@dataclass(frozen=True, slots=True)
class SimDistrict:
    code: str
    key: bytes
    weight: float
    communities: tuple[str, ...]
    day_teams: tuple[str, ...]  # teams on duty 08:00-20:00 local
    night_teams: tuple[str, ...]  # teams on duty 20:00-08:00 local
    areas: tuple[str, ...]  # patrol areas: key areas, then communities
    hazard_units: Mapping[str, str]  # hazard category -> responsible unit
    dispute_units: Mapping[str, str]  # dispute category -> department (else a mediation committee)
    mediation: tuple[str, ...]  # mediation committees (调委会)
    escalation: tuple[str, ...]
    centre: tuple[float, float]


@dataclass(frozen=True)
class SimCity:
    code: str
    timezone: ZoneInfo
    districts: tuple[SimDistrict, ...]
    categories: Mapping[str, tuple[str, ...]]

    def district(self, code: str) -> SimDistrict:
        for d in self.districts:
            if d.code == code:
                return d
        raise ReferenceDataError(f"District {code!r} is not in the reference data.")

    def subset(self, count: int) -> SimCity:
        """The first ``count`` districts (the order of the reference file)."""
        if count < 1 or count > len(self.districts):
            raise SettingsError(
                f"The reference data has {len(self.districts)} districts; cannot simulate "
                f"{count}. Write a synthetic city with `watchfloor simulate reference "
                f"--districts {count} --output DIR/city.json` and point "
                "WATCHFLOOR_REFERENCE_FILE at it."
            )
        return SimCity(self.code, self.timezone, self.districts[:count], self.categories)


def city_from_reference(reference: Reference, document: Mapping[str, Any]) -> SimCity:
    """Combine the loaded reference with the extra fields of its ``city.json`` document.

    ``reference`` gives the codes the engine accepts; ``document`` (the same file,
    parsed) adds what only the simulator reads: population, units, committees, areas.
    """
    raw_by_code = {
        raw.get("code"): raw for raw in document.get("districts", []) if isinstance(raw, dict)
    }
    districts = []
    for code, ref in reference.districts.items():
        raw = raw_by_code.get(code, {})
        if not ref.communities:
            raise ReferenceDataError(f"District {code!r} lists no communities.")
        teams = raw.get("patrol_teams") or [{"code": t, "shift": "both"} for t in ref.patrol_teams]
        if not teams:
            teams = [{"code": f"{code}-pt01", "shift": "both"}]
        day = tuple(t["code"] for t in teams if t.get("shift", "both") in ("day", "both"))
        night = tuple(t["code"] for t in teams if t.get("shift", "both") in ("night", "both"))
        all_teams = tuple(t["code"] for t in teams)
        hazard_units = {c: f"{code}-{s}" for c, s in DEFAULT_HAZARD_UNITS.items()}
        dispute_units = {c: f"{code}-{s}" for c, s in DEFAULT_DISPUTE_UNITS.items()}
        escalation = tuple(f"{code}-{s}" for s in DEFAULT_ESCALATION_UNITS)
        units = raw.get("units")
        if units:
            hazard_units, dispute_units, escalation = {}, {}, ()
            for unit in units:
                handles = unit.get("handles", {})
                for c in handles.get("hazard", []):
                    hazard_units.setdefault(c, unit["code"])
                for c in handles.get("dispute", []):
                    dispute_units.setdefault(c, unit["code"])
                if unit.get("role") == "escalation":
                    escalation += (unit["code"],)
            missing = set(reference.categories.get("hazard", ())) - set(hazard_units)
            if missing:
                raise ReferenceDataError(
                    f"District {code!r}: no unit handles hazard categories {sorted(missing)}."
                )
            if not escalation:
                raise ReferenceDataError(f"District {code!r} has no escalation unit.")
        mediation = tuple(m["code"] for m in raw.get("mediation_committees", ())) or tuple(
            f"{c}-mc" for c in ref.communities
        )
        areas = tuple(a["code"] for a in raw.get("key_areas", ())) + ref.communities
        centre_raw = raw.get("centre") or {}
        centre = (
            float(centre_raw.get("lat", DEFAULT_CENTRE[0])),
            float(centre_raw.get("lon", DEFAULT_CENTRE[1])),
        )
        districts.append(
            SimDistrict(
                code=code,
                key=code.encode(),
                weight=float(raw.get("population", 500_000)) / 1e6,
                communities=ref.communities,
                day_teams=day or all_teams,
                night_teams=night or all_teams,
                areas=areas,
                hazard_units=hazard_units,
                dispute_units=dispute_units,
                mediation=mediation,
                escalation=escalation,
                centre=centre,
            )
        )
    return SimCity(reference.city_code, reference.timezone, tuple(districts), reference.categories)


def synthetic_city_document(
    districts: int, *, timezone: str = "Asia/Shanghai", communities: int = 4
) -> dict[str, Any]:
    """A city of ``districts`` equal districts ``d0001``... for benchmarks.

    Each has one street office, ``communities`` communities, a day and a night patrol
    team, and no unit list (the simulator uses the conventional unit codes).
    """
    if not 1 <= districts <= 999_999:
        raise SettingsError(f"A synthetic city needs 1 to 999999 districts, not {districts}.")
    width = max(4, len(str(districts)))
    out = []
    for i in range(1, districts + 1):
        code = f"d{i:0{width}d}"
        street = f"{code}-s1"
        out.append(
            {
                "code": code,
                "name": f"District {i}",
                "name_zh": f"第{i}区",
                "kind": "district",
                "population": 500_000,
                "streets": [
                    {
                        "code": street,
                        "name": "Street office 1",
                        "communities": [
                            {"code": f"{street}-c{j:02d}", "name": f"Community {j}"}
                            for j in range(1, communities + 1)
                        ],
                    }
                ],
                "patrol_teams": [
                    {"code": f"{code}-pt01", "shift": "day"},
                    {"code": f"{code}-pt02", "shift": "night"},
                ],
            }
        )
    return {
        "city": {
            "code": f"synthetic-{districts}",
            "name": f"Synthetic city of {districts} districts",
            "name_zh": "合成城市",
            "timezone": timezone,
        },
        "districts": out,
    }
