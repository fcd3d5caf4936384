"""What the scenario tests share: a scenario file's events, and the engine's count of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from streams.clock import FixedClock
from streams.reference import load_reference
from streams.settings import PROJECT_ROOT
from streams.simulator.files import read_records, scenario_file
from streams.state import DistrictState, Outcome
from streams.validation import EventValidator

CITY_FILE = PROJECT_ROOT / "seeds" / "reference" / "city.json"
TZ = ZoneInfo("Asia/Shanghai")


def events(name: str) -> list[dict[str, Any]]:
    """The scenario's events, each the parsed CloudEvent plus its record's facts."""
    out = []
    for rec in read_records(scenario_file(name)):
        doc = orjson.loads(rec.value)
        doc["_ts"] = datetime.fromisoformat(doc["time"]).timestamp()
        doc["_kind"] = rec.kind
        doc["_key"] = rec.key.decode()
        out.append(doc)
    return out


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, TZ).strftime("%Y-%m")


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def counted_states(name: str) -> dict[str, DistrictState]:
    """The engine's district states after the validator and state have read every event."""
    validator = EventValidator(
        load_reference(CITY_FILE), clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    )
    states: dict[str, DistrictState] = {}
    for rec in read_records(scenario_file(name)):
        event = validator.validate(rec.value, rec.stream)
        state = states.setdefault(event.district, DistrictState(event.district, TZ))
        assert state.apply(event) is Outcome.COUNTED
    return states
