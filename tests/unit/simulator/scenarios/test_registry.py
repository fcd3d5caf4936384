"""Every scenario in the registry: its files are what its builder makes, and valid."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import orjson
import pytest

from streams.clock import FixedClock
from streams.reference import load_reference
from streams.simulator.files import (
    SCENARIO_DIR,
    load_city,
    load_expected,
    read_records,
    scenario_file,
    scenario_names,
)
from streams.simulator.lines import record_to_line
from streams.simulator.records import Intent
from streams.simulator.scenarios import SCENARIOS, build_scenario
from streams.validation import EventValidator

from .support import CITY_FILE


def test_every_scenario_has_files_and_a_readme() -> None:
    assert scenario_names() == sorted(SCENARIOS)
    for name in SCENARIOS:
        folder = SCENARIO_DIR / name
        assert (folder / "README.md").read_text(encoding="utf-8").strip()
        assert (folder / "expected.json").is_file()
        scenario_file(name)
    assert (SCENARIO_DIR / "README.md").is_file()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_files_are_what_the_builder_makes(name: str) -> None:
    # The committed files and the builder cannot drift apart: rebuild with
    # `watchfloor simulate scenario all --rebuild` after changing either.
    built = build_scenario(name, load_city(CITY_FILE))
    path = scenario_file(name)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    assert raw.splitlines() == [record_to_line(r) for r in built.records]
    assert load_expected(name) == orjson.loads(orjson.dumps(built.expected))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_records_are_valid_and_in_time_order(name: str) -> None:
    records = list(read_records(scenario_file(name)))
    assert records
    assert all(r.intent is Intent.VALID and r.reason is None for r in records)
    ats = [r.at for r in records]
    assert ats == sorted(ats)
    assert all(r.ts == r.at for r in records)
    expected = load_expected(name)
    assert expected["events"] == len(records)
    districts = set(expected.get("districts") or [expected["district"]])
    assert {r.key.decode() for r in records} == districts
    ids = [(orjson.loads(r.value)["source"], orjson.loads(r.value)["id"]) for r in records]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_record_passes_the_validator(name: str) -> None:
    validator = EventValidator(
        load_reference(CITY_FILE), clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    )
    for rec in read_records(scenario_file(name)):
        event = validator.validate(rec.value, rec.stream)
        assert event.kind is rec.kind and event.ts == rec.ts


def test_each_scenario_has_districts_of_its_own() -> None:
    owners: dict[str, str] = {}
    for name in SCENARIOS:
        expected = load_expected(name)
        for district in expected.get("districts") or [expected["district"]]:
            assert district not in owners, (district, owners.get(district), name)
            owners[district] = name
