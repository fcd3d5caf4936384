"""Simulator files: a synthetic reference city written and loaded back."""

from __future__ import annotations

from pathlib import Path

from streams.reference import load_reference
from streams.simulator.files import load_city, write_reference

from .support import CITY_FILE, DISTRICT_CODE


def test_synthetic_city_has_n_districts_and_loads(tmp_path: Path) -> None:
    path = write_reference(tmp_path / "city.json", 1000)
    reference = load_reference(path)
    assert len(reference.districts) == 1000
    assert sorted(reference.districts)[:2] == ["d0001", "d0002"]
    assert "d1000" in reference.districts
    assert all(DISTRICT_CODE.match(c) for c in reference.districts)
    assert reference.categories == load_reference(CITY_FILE).categories
    city = load_city(path)
    assert len(city.districts) == 1000
    # Districts without units fall back to conventional unit codes.
    assert city.district("d0007").hazard_units["fire"] == "d0007-fire-brigade"
