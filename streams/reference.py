"""Reference data: the city's districts and the event categories, loaded once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
    )


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
