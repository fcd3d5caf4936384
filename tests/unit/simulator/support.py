"""What the simulator's tests share: the seed city's file, the event contract, small readers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from streams.events import STREAM_OF_KIND, Kind, Stream
from streams.settings import PROJECT_ROOT
from streams.simulator.city import SimCity
from streams.simulator.config import SimConfig
from streams.simulator.generator import generate_events
from streams.simulator.records import SimRecord

CITY_FILE = PROJECT_ROOT / "seeds" / "reference" / "city.json"
DESIGN = PROJECT_ROOT / "docs" / "design.md"
DISTRICT_CODE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
IDENT = re.compile(r"^[!-~]{1,128}$")
OFFSET_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
EPOCH = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday, 08:00 in Asia/Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")

# docs/design.md, "Event types and their data": required fields, then optional ones.
DATA_FIELDS: dict[Kind, tuple[set[str], set[str]]] = {
    Kind.CASE_FILED: ({"category", "severity"}, {"community", "location"}),
    Kind.CASE_CLEARED: (set(), {"category", "community"}),
    Kind.DISPUTE_REPORTED: (
        {"category", "responsible_unit"},
        {"community", "people_involved"},
    ),
    Kind.DISPUTE_MEDIATION_STARTED: ({"responsible_unit"}, set()),
    Kind.DISPUTE_RESOLVED: (set(), {"responsible_unit"}),
    Kind.DISPUTE_ESCALATED: ({"escalated_to"}, set()),
    Kind.PATROL_COMPLETED: ({"team", "started_at", "ended_at", "area", "findings"}, set()),
    Kind.HAZARD_FOUND: (
        {"category", "major", "deadline", "responsible_unit"},
        {"community", "found_by"},
    ),
    Kind.HAZARD_RECTIFIED: (set(), {"responsible_unit"}),
    Kind.HAZARD_VERIFIED: ({"result"}, {"new_deadline"}),
    Kind.ACCIDENT_REPORTED: (
        {"category", "deaths", "serious_injuries", "direct_loss_yuan"},
        {"community"},
    ),
}

STREAM_KINDS = {s: {k for k, v in STREAM_OF_KIND.items() if v is s} for s in Stream}


def run(city: SimCity, **kw: object) -> list[SimRecord]:
    """Three days of the city at 0.2 records/s, unless ``kw`` says otherwise."""
    args: dict[str, object] = {"start": EPOCH, "end": EPOCH + timedelta(days=3), "rate": 0.2}
    args.update(kw)
    return list(generate_events(city, SimConfig(**args)))  # type: ignore[arg-type]


def doc(rec: SimRecord) -> dict[str, object]:
    value = orjson.loads(rec.value)
    assert isinstance(value, dict)
    return value


def ts_of(text: object) -> float:
    assert isinstance(text, str)
    return datetime.fromisoformat(text).timestamp()


def local_hour(ts: float) -> int:
    return datetime.fromtimestamp(ts, SHANGHAI).hour
