"""Reference data: the city's districts, event categories and work-safety targets, loaded once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from .errors import ReferenceDataError

# The kinds of category the reference data and the schemas define, one list each.
CATEGORY_GROUPS = ("incident", "dispute", "hazard", "accident")


@dataclass(frozen=True)
class District:
    code: str
    name: str
    name_zh: str
    communities: tuple[str, ...]
    patrol_teams: tuple[str, ...]


@dataclass(frozen=True)
class DeathTarget:
    """An annual control target on work-safety deaths (死亡人数控制指标) and last year's figure."""

    deaths: int  # at most this many deaths in the year
    last_year: int  # the figure the issuing document compares it with

    @property
    def change(self) -> int:
        return self.deaths - self.last_year


@dataclass(frozen=True)
class WorkSafetyYear:
    """One year's death control targets: the city's, each district's, and the alert share."""

    year: int
    alert_share: float  # warn a district once its deaths reach this share of its target
    city: DeathTarget
    districts: Mapping[str, DeathTarget]


@dataclass(frozen=True)
class Reference:
    """Districts and categories; ``categories[kind]`` for each kind of CATEGORY_GROUPS."""

    city_code: str
    city_name: str
    timezone: ZoneInfo
    districts: dict[str, District]
    categories: dict[str, tuple[str, ...]]
    # "<kind>:<code>" -> (English name, Chinese name), for districts ("district:"),
    # communities, units and each kind of category ("hazard:fire"): what people read.
    names: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Work-safety death control targets by year (empty when the city sets none).
    work_safety: Mapping[int, WorkSafetyYear] = field(default_factory=dict)

    @property
    def district_codes(self) -> frozenset[str]:
        return frozenset(self.districts)

    def name(self, kind: str, code: str, lang: str = "en") -> str:
        """The name of a code for people (``lang`` "zh" or "en"); the code when unnamed."""
        en, zh = self.names.get(f"{kind}:{code}", ("", ""))
        return (zh or en or code) if lang == "zh" else (en or zh or code)


def load_reference(city_file: str | Path, categories_file: str | Path | None = None) -> Reference:
    """Load ``city.json`` and the ``categories.json`` beside it (or the one given)."""
    city_path = Path(city_file)
    cats_path = Path(categories_file) if categories_file else city_path.with_name("categories.json")
    city = _read(city_path)
    cats = _read(cats_path)
    try:
        tz_name = city["city"]["timezone"]
        timezone = ZoneInfo(tz_name)
    except (KeyError, TypeError) as exc:
        raise ReferenceDataError(f"{city_path} has no city.timezone.") from exc
    except ZoneInfoNotFoundError as exc:
        raise ReferenceDataError(f"{city_path}: unknown timezone {tz_name!r}.") from exc
    districts: dict[str, District] = {}
    names: dict[str, tuple[str, str]] = {}
    for raw in city.get("districts", []):
        try:
            code = raw["code"]
            communities = tuple(
                c["code"]
                for street in raw.get("streets", [])
                for c in street.get("communities", [])
            )
            teams = tuple(t["code"] for t in raw.get("patrol_teams", []))
            districts[code] = District(
                code, raw["name"], raw.get("name_zh", ""), communities, teams
            )
            names[f"district:{code}"] = (raw["name"], raw.get("name_zh", ""))
            for street in raw.get("streets", []):
                for c in street.get("communities", []):
                    names[f"community:{c['code']}"] = (c.get("name", ""), c.get("name_zh", ""))
            for unit in raw.get("units", []):
                names[f"unit:{unit['code']}"] = (unit.get("name", ""), unit.get("name_zh", ""))
        except (KeyError, TypeError) as exc:
            raise ReferenceDataError(f"{city_path}: a district lacks {exc}.") from exc
    if not districts:
        raise ReferenceDataError(f"{city_path} lists no districts.")
    categories = {
        kind: tuple(c["code"] for c in cats.get(kind, []))
        for kind in CATEGORY_GROUPS
    }
    city_info = city["city"]
    names[f"city:{city_info.get('code', '')}"] = (
        city_info.get("name", ""), city_info.get("name_zh", "")
    )
    for kind in CATEGORY_GROUPS:
        for c in cats.get(kind, []):
            names[f"{kind}:{c['code']}"] = (c.get("name", ""), c.get("name_zh", ""))
    return Reference(
        city_code=city["city"].get("code", ""),
        city_name=city["city"].get("name", ""),
        timezone=timezone,
        districts=districts,
        categories=categories,
        names=names,
        work_safety=load_work_safety(city.get("work_safety"), districts, city_path),
    )


def load_work_safety(
    raw: Any, districts: Mapping[str, District], where: Path | str
) -> dict[int, WorkSafetyYear]:
    """The ``work_safety.targets`` of city.json, checked: known districts, whole numbers,
    a share in (0, 1], one entry per year, district targets within the city's."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not isinstance(raw.get("targets"), list):
        raise ReferenceDataError(f"{where}: work_safety must hold a list of targets.")
    out: dict[int, WorkSafetyYear] = {}
    for entry in raw["targets"]:
        if not isinstance(entry, dict):
            raise ReferenceDataError(f"{where}: each work-safety target must be an object.")
        year = entry.get("year")
        if not _whole(year) or not 2000 <= year <= 2100:
            raise ReferenceDataError(
                f"{where}: a work-safety target's year must be a year, not {year!r}."
            )
        if year in out:
            raise ReferenceDataError(f"{where}: the work-safety targets list {year} twice.")
        share = entry.get("alert_share")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise ReferenceDataError(
                f"{where}: the {year} alert_share must be a share above 0 and at most 1, "
                f"not {share!r}."
            )
        city = _death_target(entry.get("city"), f"{where}: the city's {year} target")
        raw_districts = entry.get("districts", {})
        if not isinstance(raw_districts, dict):
            raise ReferenceDataError(f"{where}: the {year} district targets must be an object.")
        targets: dict[str, DeathTarget] = {}
        for code, value in raw_districts.items():
            if code not in districts:
                raise ReferenceDataError(
                    f"{where}: the {year} targets name {code!r}, which is not a district."
                )
            targets[code] = _death_target(value, f"{where}: {code}'s {year} target")
        total = sum(t.deaths for t in targets.values())
        if total > city.deaths:
            raise ReferenceDataError(
                f"{where}: the {year} district targets add up to {total} deaths, more than "
                f"the city's {city.deaths}."
            )
        out[year] = WorkSafetyYear(year, float(share), city, targets)
    return out


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _death_target(raw: Any, what: str) -> DeathTarget:
    if not isinstance(raw, dict):
        raise ReferenceDataError(f"{what} must be an object with deaths and last_year.")
    deaths, last_year = raw.get("deaths"), raw.get("last_year")
    if not _whole(deaths) or deaths < 0 or not _whole(last_year) or last_year < 0:
        raise ReferenceDataError(
            f"{what} needs whole numbers of deaths and last_year (0 or more), not "
            f"{deaths!r} and {last_year!r}."
        )
    return DeathTarget(deaths, last_year)


def _read(path: Path) -> dict:  # type: ignore[type-arg]
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ReferenceDataError(f"Reference file {path} does not exist.") from None
    except orjson.JSONDecodeError as exc:
        raise ReferenceDataError(f"Reference file {path} is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ReferenceDataError(f"Reference file {path} must hold a JSON object.")
    return data
